// CUDA emulation on the CPU, for running the real __global__ kernels of csrc/cuda/*.cuh under CTest
// on machines without a GPU (CI). Include this before a kernel header. One host thread per CUDA
// thread; the blocks of a launch run one after another, so `__shared__` (static storage, shared by
// all threads of the running block) and the dynamic shared buffer behave as on the device.
//   __syncthreads()      a std::barrier over the block's threads
//   __shfl_down_sync     an exchange through a per-block buffer between two barriers (so every
//                        thread of the block must call it, as in the kernels' block reductions)
//   MFK_EXTERN_SHARED    the dynamic shared memory of the launch (poisoned with 0xCD bytes)
// `launch(..., order)` starts the block's threads in ascending or descending order: a kernel whose
// result depends on the order (a missing barrier) gives different outputs for the two.
// What it cannot show: races inside a warp between barriers that hardware would serialise
// differently, memory-model effects (compiler reuse of a value across a barrier, e.g. through
// __restrict__), and speed.
#pragma once

#include <algorithm>
#include <barrier>
#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>

struct dim3 {
  unsigned x, y, z;
  dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

namespace mfk_emu {

inline thread_local dim3 thread_idx;
inline thread_local dim3 block_idx;
inline dim3 block_dim;
inline dim3 grid_dim;
inline thread_local std::barrier<>* block_barrier = nullptr;
inline std::vector<unsigned char> dynamic_shared;
inline std::vector<std::uint64_t> shuffle_slots;  // one 8-byte slot per thread of the block

enum class Order { kAscending, kDescending };

inline unsigned linear_thread() { return thread_idx.x + block_dim.x * (thread_idx.y + block_dim.y * thread_idx.z); }

// Runs kernel(args...) on a grid of blocks, one host thread per CUDA thread, blocks in sequence.
template <typename Kernel, typename... Args>
void launch(dim3 grid, dim3 block, std::size_t shared_bytes, Order order, Kernel kernel, Args... args) {
  grid_dim = grid;
  block_dim = block;
  const unsigned nthreads = block.x * block.y * block.z;
  for (unsigned bz = 0; bz < grid.z; ++bz)
    for (unsigned by = 0; by < grid.y; ++by)
      for (unsigned bx = 0; bx < grid.x; ++bx) {
        dynamic_shared.assign(shared_bytes, 0xCD);
        shuffle_slots.assign(nthreads, 0);
        std::barrier<> barrier(static_cast<std::ptrdiff_t>(nthreads));
        std::vector<std::thread> threads;
        threads.reserve(nthreads);
        for (unsigned i = 0; i < nthreads; ++i) {
          const unsigned t = order == Order::kAscending ? i : nthreads - 1 - i;
          threads.emplace_back([&, t] {
            thread_idx = dim3(t % block.x, (t / block.x) % block.y, t / (block.x * block.y));
            block_idx = dim3(bx, by, bz);
            block_barrier = &barrier;
            kernel(args...);
            barrier.arrive_and_drop();  // a finished thread no longer holds the others at a barrier
          });
        }
        for (auto& th : threads) th.join();
      }
}

}  // namespace mfk_emu

#define threadIdx (::mfk_emu::thread_idx)
#define blockIdx (::mfk_emu::block_idx)
#define blockDim (::mfk_emu::block_dim)
#define gridDim (::mfk_emu::grid_dim)
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static
#define MFK_EXTERN_SHARED(type, name) type* name = reinterpret_cast<type*>(::mfk_emu::dynamic_shared.data())

inline void __syncthreads() { ::mfk_emu::block_barrier->arrive_and_wait(); }

template <typename T>
T __shfl_down_sync(unsigned /*mask*/, T value, unsigned offset) {
  static_assert(sizeof(T) <= sizeof(std::uint64_t), "shuffle of a value wider than 8 bytes");
  const unsigned t = ::mfk_emu::linear_thread();
  std::memcpy(&::mfk_emu::shuffle_slots[t], &value, sizeof(T));
  __syncthreads();
  T out = value;  // a source lane past the warp's end returns the caller's own value, as on the device
  if ((t % 32) + offset < 32 && t + offset < ::mfk_emu::shuffle_slots.size())
    std::memcpy(&out, &::mfk_emu::shuffle_slots[t + offset], sizeof(T));
  __syncthreads();
  return out;
}

using std::max;
using std::min;

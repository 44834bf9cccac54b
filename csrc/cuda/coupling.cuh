// The __global__ kernels of the affine coupling family and their launch configuration, on raw pointers
// (no ATen): included by coupling_cuda.cu, which launches them, and by csrc/tests/test_cuda_emulation_coupling.cpp,
// which runs them on the CPU under csrc/tests/cuda_emulation.h (CTest). Math in math/coupling.h.
#pragma once

#include "../math/coupling.h"
#include "device_compat.cuh"

#include <algorithm>
#include <cstdint>

namespace mfk {
namespace coupling {
namespace device {

constexpr int kThreads = 256;

// Sum of v over the block, returned to every thread. Safe to call repeatedly in one kernel.
__device__ double block_sum(double v) {
  __shared__ double warp_sums[kThreads / 32];
  __shared__ double total;
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_down_sync(0xffffffffu, v, offset);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  __syncthreads();  // earlier readers of warp_sums/total are done
  if (lane == 0) warp_sums[warp] = v;
  __syncthreads();
  if (threadIdx.x == 0) {
    double s = 0;
    for (int w = 0; w < (blockDim.x + 31) / 32; ++w) s += warp_sums[w];
    total = s;
  }
  __syncthreads();
  return total;
}

template <typename T>
__device__ T block_row_mean(const T* v, int64_t n, int mode) {
  if (mode != kVolumePreserving) return T(0);
  return static_cast<T>(block_sum(partial_sum(v, n, threadIdx.x, blockDim.x)) / static_cast<double>(n));
}

template <int kMode, typename T>
__global__ void forward_kernel(const T* __restrict__ x, const T* __restrict__ t, const T* __restrict__ s,
                               T* __restrict__ out, T* __restrict__ logabsdet, int64_t n, T clamp, bool inverse) {
  const int64_t r = static_cast<int64_t>(blockIdx.x) * n;
  const T mean = block_row_mean(s + r, n, kMode);
  const double sum_a =
      block_sum(affine_forward<kMode>(x + r, t + r, s + r, out + r, n, clamp, mean, inverse, threadIdx.x, blockDim.x));
  if (threadIdx.x == 0) logabsdet[blockIdx.x] = row_logabsdet<T>(sum_a, kMode, inverse);
}

template <int kMode, typename T>
__global__ void backward_kernel(const T* __restrict__ g, const T* __restrict__ gl, const T* __restrict__ x,
                                const T* __restrict__ t, const T* __restrict__ s, T* __restrict__ gx,
                                T* __restrict__ gt, T* __restrict__ gs, int64_t n, T clamp, bool inverse) {
  const int64_t r = static_cast<int64_t>(blockIdx.x) * n;
  const T mean = block_row_mean(s + r, n, kMode);
  const double sum_gs = block_sum(affine_backward<kMode>(g + r, gl[blockIdx.x], x + r, t + r, s + r, gx + r, gt + r,
                                                         gs + r, n, clamp, mean, inverse, threadIdx.x, blockDim.x));
  if (kMode == kVolumePreserving)
    subtract_mean(gs + r, n, static_cast<T>(sum_gs / static_cast<double>(n)), threadIdx.x, blockDim.x);
}

template <int kMode, typename T>
__global__ void jvp_kernel(const T* __restrict__ x, const T* __restrict__ t, const T* __restrict__ s,
                           const T* __restrict__ x_dot, const T* __restrict__ t_dot, const T* __restrict__ s_dot,
                           T* __restrict__ out_dot, T* __restrict__ logabsdet_dot, int64_t n, T clamp, bool inverse) {
  const int64_t r = static_cast<int64_t>(blockIdx.x) * n;
  const T mean = block_row_mean(s + r, n, kMode);
  const T dot_mean = block_row_mean(s_dot + r, n, kMode);
  const double sum = block_sum(affine_jvp<kMode>(x + r, t + r, s + r, x_dot + r, t_dot + r, s_dot + r, out_dot + r, n,
                                                 clamp, mean, dot_mean, inverse, threadIdx.x, blockDim.x));
  if (threadIdx.x == 0) logabsdet_dot[blockIdx.x] = row_logabsdet<T>(sum, kMode, inverse);
}

// Second order: the backward row pass in dual numbers (T = Dual<scalar_t>); the row means of s and its
// tangent come in per row, and volume_preserving's final mean subtraction is left to the driver.
template <int kMode, typename T>
__global__ void backward_dual_kernel(const T* __restrict__ g, const T* __restrict__ gl, const T* __restrict__ x,
                                     const T* __restrict__ t, const T* __restrict__ s, const T* __restrict__ mean,
                                     T* __restrict__ gx, T* __restrict__ gt, T* __restrict__ gs, int64_t n, T clamp,
                                     bool inverse) {
  const int64_t r = static_cast<int64_t>(blockIdx.x) * n;
  affine_backward<kMode>(g + r, gl[blockIdx.x], x + r, t + r, s + r, gx + r, gt + r, gs + r, n, clamp, mean[blockIdx.x],
                         inverse, threadIdx.x, blockDim.x);
}

inline int threads_for(int64_t n) {
  return static_cast<int>(std::min<int64_t>(kThreads, std::max<int64_t>(32, (n + 31) / 32 * 32)));
}

}  // namespace device
}  // namespace coupling
}  // namespace mfk

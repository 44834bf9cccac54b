// The __global__ kernels of the Gram log-determinant family and their launch configuration, on raw pointers
// (no ATen): included by gram_cuda.cu, which launches them, and by csrc/tests/test_cuda_emulation_gram.cpp,
// which runs them on the CPU under csrc/tests/cuda_emulation.h (CTest). Math in math/gram.h.
#pragma once

#include "../math/gram.h"
#include "device_compat.cuh"

#include <algorithm>
#include <cstddef>
#include <cstdint>

namespace mfk {
namespace gram {
namespace device {

constexpr int kFusedMaxD = 64;
constexpr int kTileRows = 16;
constexpr int kMaxThreads = 256;

// Dynamic shared memory of scaled_inverse_kernel: the permutation check's d bytes.
inline size_t inverse_shared_bytes(int d) { return static_cast<size_t>(d); }

// Enough threads to own every lower-triangle entry at small d, whole warps, at most kMaxThreads.
inline int threads_for(int d) {
  const int entries = d * (d + 1) / 2;
  return std::min(kMaxThreads, std::max(32, (entries + 31) / 32 * 32));
}

// Block-cooperative pivoted Cholesky of A (lower, in place) from the steps of math/gram.h: thread 0
// chooses each pivot, the block shares swaps, column scaling and trailing update between barriers.
template <typename T>
__device__ FactorStatus cholesky_pivoted_block(T* A, int lda, int d, T rtol, int64_t* perm, T* half_logdet) {
  __shared__ int status;
  __shared__ int pivot_index;
  __shared__ double tol_and_acc[2];
  const int tid = threadIdx.x, nt = blockDim.x;
  for (int j = tid; j < d; j += nt) perm[j] = j;
  __syncthreads();
  if (tid == 0) {
    const T scale = max_diagonal(A, lda, d);
    status = is_nan_(scale) ? kFactorNonFinite : kFactorOk;
    tol_and_acc[0] = static_cast<double>(rtol * scale);
    tol_and_acc[1] = 0.0;
  }
  __syncthreads();
  for (int j = 0; j < d; ++j) {
    if (tid == 0 && status == kFactorOk) {
      int k = j;
      status = cholesky_choose_pivot(A, lda, d, j, static_cast<T>(tol_and_acc[0]), perm, &k);
      pivot_index = k;
    }
    __syncthreads();
    if (status != kFactorOk) break;
    cholesky_swap(A, lda, d, j, pivot_index, tid, nt);
    __syncthreads();
    if (tid == 0) {
      cholesky_take_root(A, lda, j);
      tol_and_acc[1] += static_cast<double>(log_(A[j * lda + j]));
    }
    __syncthreads();
    cholesky_scale_column(A, lda, d, j, tid, nt);
    __syncthreads();
    cholesky_update_trailing(A, lda, d, j, tid, nt);
    __syncthreads();
  }
  *half_logdet = static_cast<T>(tol_and_acc[1]);
  return static_cast<FactorStatus>(status);
}

template <typename T>
__global__ void factor_fused_kernel(const T* __restrict__ J, int D, int d, T* __restrict__ L,
                                    int64_t* __restrict__ perm, T* __restrict__ out, T rtol) {
  MFK_EXTERN_SHARED(unsigned char, smem);
  T* G = reinterpret_cast<T*>(smem);
  T* tile = G + d * d;
  const int tid = threadIdx.x, nt = blockDim.x;
  const int64_t b = blockIdx.x;
  const T* Jb = J + b * D * d;
  for (int q = tid; q < d * d; q += nt) G[q] = T(0);
  for (int r0 = 0; r0 < D; r0 += kTileRows) {
    const int rows = min(kTileRows, D - r0);
    __syncthreads();
    for (int q = tid; q < rows * d; q += nt) tile[q] = Jb[static_cast<int64_t>(r0) * d + q];
    __syncthreads();
    gram_accumulate_rows(tile, d, 0, rows, d, G, d, tid, nt);
  }
  __syncthreads();
  T half_logdet;
  const FactorStatus s = cholesky_pivoted_block(G, d, d, rtol, perm + b * d, &half_logdet);
  finalize_factor(G, d, d, s, tid, nt);
  __syncthreads();
  T* Lb = L + b * d * d;
  for (int q = tid; q < d * d; q += nt) Lb[q] = G[q];
  if (tid == 0) out[b] = half_logdet_output(s, half_logdet);
}

// No __restrict__ on L or X below: the threads of a block hand entries of these global buffers to
// each other across __syncthreads(), and restrict licenses nvcc to reuse a value a thread loaded
// before the barrier (it did: every thread but 0 scaled column j by the pivot *before* its square
// root, a wrong factor for every d > 64 on the first GPU run).
template <typename T>
__global__ void factor_inplace_kernel(T* L, int d, int64_t* perm, T* __restrict__ out, T rtol) {
  T* A = L + static_cast<int64_t>(blockIdx.x) * d * d;
  T half_logdet;
  const FactorStatus s =
      cholesky_pivoted_block(A, d, d, rtol, perm + static_cast<int64_t>(blockIdx.x) * d, &half_logdet);
  finalize_factor(A, d, d, s, threadIdx.x, blockDim.x);
  if (threadIdx.x == 0) out[blockIdx.x] = half_logdet_output(s, half_logdet);
}

template <typename T>
__global__ void scaled_inverse_kernel(const T* __restrict__ L, const int64_t* __restrict__ perm,
                                      const T* __restrict__ scale, int d, T* X, T* __restrict__ W) {
  const int64_t off = static_cast<int64_t>(blockIdx.x) * d * d;
  const T s = scale[blockIdx.x];
  // a perm that is not a permutation (reachable through torch.ops) gives NaN, not a wild write:
  // refusing it with an error would cost a device synchronisation on every backward
  MFK_EXTERN_SHARED(unsigned char, seen);  // d bytes (the launch's dynamic shared memory)
  __shared__ int usable;
  if (threadIdx.x == 0)
    usable = factor_is_valid(L + off) && is_permutation(perm + static_cast<int64_t>(blockIdx.x) * d, d, seen);
  __syncthreads();
  if (!usable) {
    fill_invalid_inverse(d, s, W + off, d, threadIdx.x, blockDim.x);
    return;
  }
  lower_inverse_columns(L + off, d, d, X + off, d, threadIdx.x, blockDim.x);
  __syncthreads();
  scaled_inverse_from_lower_inverse(X + off, d, d, perm + static_cast<int64_t>(blockIdx.x) * d, s, W + off, d,
                                    threadIdx.x, blockDim.x);
}

}  // namespace device
}  // namespace gram
}  // namespace mfk

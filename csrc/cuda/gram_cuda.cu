// CUDA kernels of the Gram log-determinant family (math in math/gram.h; drivers in ops/gram.cpp).
//
// Fused path (d <= kFusedMaxD): one thread block per batch element streams J through shared memory
// in row tiles, accumulates G = J^T J in shared memory and factors it there; only the factor L
// (needed by backward) and the log-determinant reach global memory. Larger d: G comes from one
// batched cuBLAS product (through ATen) and the same block-cooperative factorisation runs in place.
#include "../math/gram.h"
#include "../ops/gram_kernels.h"

#include <ATen/Dispatch.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/matmul.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <algorithm>

namespace mfk {
namespace gram {
namespace {

constexpr int kFusedMaxD = 64;
constexpr int kTileRows = 16;
constexpr int kMaxThreads = 256;

// Enough threads to own every lower-triangle entry at small d, whole warps, at most kMaxThreads.
int threads_for(int d) {
  const int entries = d * (d + 1) / 2;
  return std::min(kMaxThreads, std::max(32, (entries + 31) / 32 * 32));
}

// Block-cooperative pivoted Cholesky of A (lower, in place) from the steps of math/gram.h: thread 0
// chooses each pivot, the block shares swaps, column scaling and trailing update between barriers.
template <typename T>
__device__ FactorStatus cholesky_pivoted_block(T* A, int lda, int d, T rtol, int64_t* perm,
                                               T* half_logdet) {
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
  extern __shared__ unsigned char smem[];
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
  if (!factor_is_valid(L + off)) {
    fill_invalid_inverse(d, s, W + off, d, threadIdx.x, blockDim.x);
    return;
  }
  lower_inverse_columns(L + off, d, d, X + off, d, threadIdx.x, blockDim.x);
  __syncthreads();
  scaled_inverse_from_lower_inverse(X + off, d, d, perm + static_cast<int64_t>(blockIdx.x) * d, s,
                                    W + off, d, threadIdx.x, blockDim.x);
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor> factor_cuda(const at::Tensor& J, double rtol) {
  const c10::cuda::CUDAGuard guard(J.device());
  const int64_t B = J.size(0);
  const int D = static_cast<int>(J.size(1));
  const int d = static_cast<int>(J.size(2));
  const bool fused = d <= kFusedMaxD;
  at::Tensor L = fused ? at::empty({B, d, d}, J.options()) : at::matmul(J.mT(), J).contiguous();
  at::Tensor out = at::empty({B}, J.options());
  at::Tensor perm = at::empty({B, d}, J.options().dtype(at::kLong));
  if (B == 0) return {out, L, perm};
  TORCH_CHECK(B <= 0x7fffffff, "mfkernels.gram_logdet: batch of ", B, " matrices exceeds the CUDA grid");
  const auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(J.scalar_type(), "mfkernels::gram_logdet (cuda)", [&] {
    const int threads = threads_for(d);
    const scalar_t tol = static_cast<scalar_t>(rtol);
    if (fused) {
      const size_t smem = sizeof(scalar_t) * (size_t(d) * d + size_t(kTileRows) * d);
      factor_fused_kernel<scalar_t><<<B, threads, smem, stream>>>(
          J.const_data_ptr<scalar_t>(), D, d, L.mutable_data_ptr<scalar_t>(),
          perm.mutable_data_ptr<int64_t>(), out.mutable_data_ptr<scalar_t>(), tol);
    } else {
      factor_inplace_kernel<scalar_t><<<B, threads, 0, stream>>>(
          L.mutable_data_ptr<scalar_t>(), d, perm.mutable_data_ptr<int64_t>(),
          out.mutable_data_ptr<scalar_t>(), tol);
    }
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {out, L, perm};
}

// W = scale * G^{-1} per element from the factor, then J W in one batched cuBLAS product.
at::Tensor jacobian_times_inverse_cuda(const at::Tensor& J, const at::Tensor& L, const at::Tensor& perm,
                                       const at::Tensor& scale) {
  const c10::cuda::CUDAGuard guard(L.device());
  const int64_t B = L.size(0);
  const int d = static_cast<int>(L.size(1));
  at::Tensor W = at::empty({B, d, d}, L.options());
  if (B == 0) return at::empty({B, J.size(1), J.size(2)}, J.options());
  at::Tensor X = at::empty({B, d, d}, L.options());
  const auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(L.scalar_type(), "mfkernels::gram_logdet_backward (cuda)", [&] {
    scaled_inverse_kernel<scalar_t><<<B, threads_for(d), 0, stream>>>(
        L.const_data_ptr<scalar_t>(), perm.const_data_ptr<int64_t>(), scale.const_data_ptr<scalar_t>(), d,
        X.mutable_data_ptr<scalar_t>(), W.mutable_data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return at::matmul(J, W);
}

// The compiler's own record of the architectures this file was built for (nvcc defines it on the
// host pass too), so `mfkernels info` reports what was compiled, not what was asked for.
#define MFK_STR2(x) #x
#define MFK_STR(x) MFK_STR2(x)
const char* cuda_arch_list() {
#ifdef __CUDA_ARCH_LIST__
  return MFK_STR(__CUDA_ARCH_LIST__);
#else
  return "unknown";
#endif
}

}  // namespace gram
}  // namespace mfk

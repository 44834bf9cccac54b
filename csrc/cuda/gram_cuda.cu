// CUDA kernels of the Gram log-determinant family (math in math/gram.h; drivers in ops/gram.cpp).
//
// Fused path (d <= kFusedMaxD): one thread block per batch element streams J through shared memory
// in row tiles, accumulates G = J^T J in shared memory and factors it there; only the factor L
// (needed by backward) and the log-determinant reach global memory. Larger d: G comes from one
// batched cuBLAS product (through ATen) and the same block-cooperative factorisation runs in place.
#include "../math/gram.h"
#include "gram.cuh"
#include "../ops/gram.h"

#include <ATen/Dispatch.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/matmul.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <algorithm>

namespace mfk {
namespace gram {
using namespace device;

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
      factor_fused_kernel<scalar_t>
          <<<B, threads, smem, stream>>>(J.const_data_ptr<scalar_t>(), D, d, L.mutable_data_ptr<scalar_t>(),
                                         perm.mutable_data_ptr<int64_t>(), out.mutable_data_ptr<scalar_t>(), tol);
    } else {
      factor_inplace_kernel<scalar_t><<<B, threads, 0, stream>>>(
          L.mutable_data_ptr<scalar_t>(), d, perm.mutable_data_ptr<int64_t>(), out.mutable_data_ptr<scalar_t>(), tol);
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
    scaled_inverse_kernel<scalar_t><<<B, threads_for(d), inverse_shared_bytes(d), stream>>>(
        L.const_data_ptr<scalar_t>(), perm.const_data_ptr<int64_t>(), scale.const_data_ptr<scalar_t>(), d,
        X.mutable_data_ptr<scalar_t>(), W.mutable_data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return at::matmul(J, W);
}

const Kernels kCudaKernels{factor_cuda, jacobian_times_inverse_cuda};

}  // namespace gram
}  // namespace mfk

TORCH_LIBRARY_IMPL(mfkernels, CUDA, m) { mfk::gram::register_drivers<mfk::gram::kCudaKernels>(m); }

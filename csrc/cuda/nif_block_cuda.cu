// CUDA kernels of the fused block NIF op (math in math/nif_block.h; driver and checks in ops/nif_block.cpp),
// the same functions the CPU runs: one thread per block for the c x c factorisations, one thread per
// sample for the forward (summing its blocks' terms), one thread per block for the backward (summing
// over the batch). Simple, not tuned: UNVERIFIED on hardware (no GPU was available when written).
#include "../math/nif_block.h"
#include "nif_block.cuh"
#include "../ops/nif_block.h"

#include <ATen/Dispatch.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <cmath>

namespace mfk {
namespace nif_block {
using namespace device;

ForwardOutputs fused_forward_cuda(const at::Tensor& x, const at::Tensor& A, const at::Tensor& b,
                                  const at::Tensor& inv_var, const at::Tensor& sum_log_sigma) {
  const c10::cuda::CUDAGuard guard(x.device());
  const int64_t B = x.size(0), P = A.size(0);
  const int r = static_cast<int>(A.size(1)), c = static_cast<int>(A.size(2));
  ForwardBuffers out(x, A);
  at::Tensor &log_px = out.log_px, &manifold = out.manifold, &z_mean = out.z_mean, &z_point = out.z_point, &t = out.t,
             &u = out.u, &K1 = out.K1, &K0 = out.K0, &logdets = out.logdets;
  const auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "mfkernels::nif_block (cuda)", [&] {
    if (P > 0) {
      setup_kernel<scalar_t><<<blocks_for(P), kThreads, 0, stream>>>(
          P, A.const_data_ptr<scalar_t>(), inv_var.const_data_ptr<scalar_t>(), r, c, K1.mutable_data_ptr<scalar_t>(),
          K0.mutable_data_ptr<scalar_t>(), logdets.mutable_data_ptr<scalar_t>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
    if (B > 0) {
      forward_kernel<scalar_t><<<blocks_for(B), kThreads, 0, stream>>>(
          B, P, x.const_data_ptr<scalar_t>(), b.const_data_ptr<scalar_t>(), b.stride(0), A.const_data_ptr<scalar_t>(),
          inv_var.const_data_ptr<scalar_t>(), sum_log_sigma.const_data_ptr<scalar_t>(), K1.const_data_ptr<scalar_t>(),
          K0.const_data_ptr<scalar_t>(), logdets.const_data_ptr<scalar_t>(), r, c, t.mutable_data_ptr<scalar_t>(),
          u.mutable_data_ptr<scalar_t>(), z_mean.mutable_data_ptr<scalar_t>(), z_point.mutable_data_ptr<scalar_t>(),
          log_px.mutable_data_ptr<scalar_t>(), manifold.mutable_data_ptr<scalar_t>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
  });
  return out.outputs();
}

BackwardOutputs fused_backward_cuda(const at::Tensor& g_log_px, const at::Tensor& g_manifold,
                                    const at::Tensor& g_z_mean, const at::Tensor& g_z_point, const at::Tensor& A,
                                    const at::Tensor& inv_var, const at::Tensor& t, const at::Tensor& z_mean,
                                    const at::Tensor& z_point, const at::Tensor& K1, const at::Tensor& K0) {
  const c10::cuda::CUDAGuard guard(t.device());
  const int64_t B = t.size(0), P = A.size(0);
  const int r = static_cast<int>(A.size(1)), c = static_cast<int>(A.size(2));
  at::Tensor grad_x = at::empty_like(t), grad_A = at::empty_like(A), grad_log_sigma = at::empty_like(inv_var);
  const auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(t.scalar_type(), "mfkernels::nif_block_backward (cuda)", [&] {
    if (P > 0) {
      backward_kernel<scalar_t><<<blocks_for(P), kThreads, 0, stream>>>(
          B, P, g_log_px.const_data_ptr<scalar_t>(), g_manifold.const_data_ptr<scalar_t>(),
          g_z_mean.const_data_ptr<scalar_t>(), g_z_point.const_data_ptr<scalar_t>(), A.const_data_ptr<scalar_t>(),
          inv_var.const_data_ptr<scalar_t>(), t.const_data_ptr<scalar_t>(), z_mean.const_data_ptr<scalar_t>(),
          z_point.const_data_ptr<scalar_t>(), K1.const_data_ptr<scalar_t>(), K0.const_data_ptr<scalar_t>(), r, c,
          grad_x.mutable_data_ptr<scalar_t>(), grad_A.mutable_data_ptr<scalar_t>(),
          grad_log_sigma.mutable_data_ptr<scalar_t>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
  });
  return {grad_x, grad_A, grad_log_sigma};
}

const Kernels kCudaKernels{fused_forward_cuda, fused_backward_cuda};

}  // namespace nif_block
}  // namespace mfk

TORCH_LIBRARY_IMPL(mfkernels, CUDA, m) { mfk::nif_block::register_drivers<mfk::nif_block::kCudaKernels>(m); }

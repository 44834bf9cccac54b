// CUDA kernels of the fused block NIF op (math in math/nif_block.h; driver and checks in ops/nif_block.cpp),
// the same functions the CPU runs: one thread per block for the c x c factorisations, one thread per
// sample for the forward (summing its blocks' terms), one thread per block for the backward (summing
// over the batch). Simple, not tuned: UNVERIFIED on hardware (no GPU was available when written).
#include "../math/nif_block.h"
#include "../ops/nif_block_kernels.h"

#include <ATen/Dispatch.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <cmath>

namespace mfk {
namespace nif {
namespace {

constexpr int kThreads = 128;

int blocks_for(int64_t n) { return static_cast<int>((n + kThreads - 1) / kThreads); }

template <typename T>
__global__ void setup_kernel(int64_t P, const T* A, const T* inv_var, int r, int c, T* K1, T* K0, T* logdets) {
  const int64_t p = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (p >= P) return;
  block_setup(A + p * r * c, inv_var + p * r, r, c, K1 + p * c * c, K0 + p * c * c, logdets + 2 * p);
}

template <typename T>
__global__ void forward_kernel(int64_t B, int64_t P, const T* x, const T* b, int64_t b_stride, const T* A,
                               const T* inv_var,
                               const T* sum_log_sigma, const T* K1, const T* K0, const T* logdets, int r, int c,
                               T* t, T* u, T* z_mean, T* z_point, T* log_px, T* manifold) {
  const int64_t n = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (n >= B) return;
  const T log_2pi = T(1.8378770664093454835606594728112);
  T lp = T(0), mf = T(0);
  for (int64_t p = 0; p < P; ++p) {
    const int64_t row = n * P + p;
    T quad, u_zm, u_zp;
    sample_forward(x + row * r, b + n * b_stride + p * r, A + p * r * c, inv_var + p * r, K1 + p * c * c, K0 + p * c * c, r, c,
                   t + row * r, u + row * c, z_mean + row * c, z_point + row * c, quad, u_zm, u_zp);
    const T log_zx = T(0.5) * (quad + T(2) * sum_log_sigma[p] + T(r) * log_2pi);
    lp += T(0.5) * (u_zm - logdets[2 * p]) - log_zx;
    mf += T(0.5) * (u_zp - logdets[2 * p + 1] + T(c) * log_2pi) - log_zx;
  }
  log_px[n] = lp;
  manifold[n] = mf;
}

template <typename T>
__global__ void backward_kernel(int64_t B, int64_t P, const T* g1, const T* g2, const T* gm, const T* gp, const T* A,
                                const T* inv_var, const T* t, const T* z_mean, const T* z_point, const T* K1,
                                const T* K0, int r, int c, T* grad_x, T* grad_A, T* grad_log_sigma) {
  const int64_t p = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (p >= P) return;
  block_backward(B, g1, g2, gm + p * c, gp + p * c, A + p * r * c, inv_var + p * r, t + p * r, z_mean + p * c,
                 z_point + p * c, K1 + p * c * c, K0 + p * c * c, r, c, P * r, P * c, grad_x + p * r,
                 grad_A + p * r * c, grad_log_sigma + p * r);
}

}  // namespace

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

}  // namespace nif
}  // namespace mfk

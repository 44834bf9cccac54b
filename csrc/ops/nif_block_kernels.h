// Device kernels of the fused block NIF op (math in math/nif_block.h), as seen by ops/nif_block.cpp, which
// checks the inputs and calls these for c <= nif::kMaxLatent (the ATen driver there handles larger c).
// Inputs contiguous, except b (B, P, r): contiguous rows, batch stride 0 (broadcast) or P r; inv_var =
// exp(-2 log_sigma) (P, r) and sum_log_sigma (P,) precomputed by the driver.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>

#include <tuple>

namespace mfk {
namespace nif {

// -> (log_px (B,), manifold_term (B,), z_mean, z_point (B, P, c), t (B, P, r), u (B, P, c), K1, K0 (P, c, c))
using ForwardOutputs = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor,
                                  at::Tensor, at::Tensor>;
// -> (grad_x (B, P, r), grad_A (P, r, c), grad_log_sigma (P, r))
using BackwardOutputs = std::tuple<at::Tensor, at::Tensor, at::Tensor>;

// The forward's outputs, uninitialised, plus its per-block log-determinants (P, 2), for either device.
struct ForwardBuffers {
  at::Tensor log_px, manifold, z_mean, z_point, t, u, K1, K0, logdets;

  ForwardBuffers(const at::Tensor& x, const at::Tensor& A) {
    const int64_t B = x.size(0), P = A.size(0), r = A.size(1), c = A.size(2);
    auto o = x.options();
    log_px = at::empty({B}, o);
    manifold = at::empty({B}, o);
    z_mean = at::empty({B, P, c}, o);
    z_point = at::empty({B, P, c}, o);
    u = at::empty({B, P, c}, o);
    t = at::empty({B, P, r}, o);
    K1 = at::empty({P, c, c}, o);
    K0 = at::empty({P, c, c}, o);
    logdets = at::empty({P, 2}, o);
  }
  ForwardOutputs outputs() const { return {log_px, manifold, z_mean, z_point, t, u, K1, K0}; }
};

ForwardOutputs fused_forward_cpu(const at::Tensor& x, const at::Tensor& A, const at::Tensor& b,
                                 const at::Tensor& inv_var, const at::Tensor& sum_log_sigma);
BackwardOutputs fused_backward_cpu(const at::Tensor& g_log_px, const at::Tensor& g_manifold,
                                   const at::Tensor& g_z_mean, const at::Tensor& g_z_point, const at::Tensor& A,
                                   const at::Tensor& inv_var, const at::Tensor& t, const at::Tensor& z_mean,
                                   const at::Tensor& z_point, const at::Tensor& K1, const at::Tensor& K0);
#ifdef MFK_WITH_CUDA
ForwardOutputs fused_forward_cuda(const at::Tensor& x, const at::Tensor& A, const at::Tensor& b,
                                  const at::Tensor& inv_var, const at::Tensor& sum_log_sigma);
BackwardOutputs fused_backward_cuda(const at::Tensor& g_log_px, const at::Tensor& g_manifold,
                                    const at::Tensor& g_z_mean, const at::Tensor& g_z_point, const at::Tensor& A,
                                    const at::Tensor& inv_var, const at::Tensor& t, const at::Tensor& z_mean,
                                    const at::Tensor& z_point, const at::Tensor& K1, const at::Tensor& K0);
#endif

}  // namespace nif
}  // namespace mfk

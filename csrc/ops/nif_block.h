// The block NIF family between its Torch-facing drivers (ops/nif_block.cpp) and its device files
// (cpu/nif_block_cpu.cpp, cuda/nif_block_cuda.cu): the fused kernels each device provides (math in
// math/nif_block.h), which the drivers call for c <= nif_block::kMaxLatent (an ATen route in the drivers
// handles larger c, and the tangent). Kernel inputs are contiguous, except b (B, P, r): contiguous rows,
// batch stride 0 (broadcast) or P r; inv_var = exp(-2 log_sigma) (P, r) and sum_log_sigma (P,) are
// precomputed by the driver.
#pragma once

#include "registration.h"

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <tuple>

namespace mfk {
namespace nif_block {

// -> (log_px (B,), manifold_term (B,), z_mean, z_point (B, P, c), t (B, P, r), u (B, P, c), K1, K0 (P, c, c))
using ForwardOutputs =
    std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>;
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

struct Kernels {
  ForwardOutputs (*fused_forward)(const at::Tensor& x, const at::Tensor& A, const at::Tensor& b,
                                  const at::Tensor& inv_var, const at::Tensor& sum_log_sigma);
  BackwardOutputs (*fused_backward)(const at::Tensor& g_log_px, const at::Tensor& g_manifold,
                                    const at::Tensor& g_z_mean, const at::Tensor& g_z_point, const at::Tensor& A,
                                    const at::Tensor& inv_var, const at::Tensor& t, const at::Tensor& z_mean,
                                    const at::Tensor& z_point, const at::Tensor& K1, const at::Tensor& K0);
};

ForwardOutputs nif_block_forward(const Kernels& device, const at::Tensor& x, const at::Tensor& A, const at::Tensor& b,
                                 const at::Tensor& log_sigma);
BackwardOutputs nif_block_backward(const Kernels& device, const at::Tensor& g_log_px, const at::Tensor& g_manifold,
                                   const at::Tensor& g_z_mean, const at::Tensor& g_z_point, const at::Tensor& A,
                                   const at::Tensor& log_sigma, const at::Tensor& t, const at::Tensor& u,
                                   const at::Tensor& z_mean, const at::Tensor& z_point, const at::Tensor& K1,
                                   const at::Tensor& K0);
// The tangent is batched BLAS through ATen on every device (no device kernels).
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> nif_block_jvp(
    const at::Tensor& dx, const at::Tensor& dA, const at::Tensor& db, const at::Tensor& dlog_sigma, const at::Tensor& A,
    const at::Tensor& log_sigma, const at::Tensor& t, const at::Tensor& z_mean, const at::Tensor& z_point,
    const at::Tensor& K1, const at::Tensor& K0);

template <const Kernels& kKernels>
void register_drivers(torch::Library& m) {
  m.impl("nif_block_forward", on_device<kKernels, nif_block_forward>);
  m.impl("nif_block_backward", on_device<kKernels, nif_block_backward>);
  m.impl("nif_block_jvp", nif_block_jvp);
}

}  // namespace nif_block
}  // namespace mfk

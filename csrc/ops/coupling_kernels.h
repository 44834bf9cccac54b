// Device kernels of the affine coupling family, as seen by the drivers in ops/coupling.cpp. All
// tensors are contiguous rows: (B, n) for elementwise data, (B,) for per-row log-determinants.
#pragma once

#include <ATen/core/Tensor.h>

#include <tuple>

namespace mfk {
namespace coupling {

struct AffineOptions {
  int mode;      // AffineMode of math/coupling.h
  double clamp;  // softclamp's c (unused otherwise)
  bool inverse;
};

// Returns (out (B, n), logabsdet (B,)).
std::tuple<at::Tensor, at::Tensor> affine_forward_cpu(const at::Tensor& x, const at::Tensor& t,
                                                      const at::Tensor& s, AffineOptions o);
// Returns (grad_x, grad_t, grad_s), each (B, n), from grad_out (B, n) and grad_logabsdet (B,).
std::tuple<at::Tensor, at::Tensor, at::Tensor> affine_backward_cpu(const at::Tensor& grad_out,
                                                                   const at::Tensor& grad_logabsdet,
                                                                   const at::Tensor& x, const at::Tensor& t,
                                                                   const at::Tensor& s, AffineOptions o);
// Returns (out_dot (B, n), logabsdet_dot (B,)).
std::tuple<at::Tensor, at::Tensor> affine_jvp_cpu(const at::Tensor& x, const at::Tensor& t,
                                                      const at::Tensor& s, const at::Tensor& x_dot,
                                                      const at::Tensor& t_dot, const at::Tensor& s_dot,
                                                      AffineOptions o);

// Second order: every tensor holds dual numbers (common/dual.h), values and tangents stacked in a
// last dim of 2: rows (B, n, 2), per-row (B, 2); `mean` is volume_preserving's row mean of s (zeros
// otherwise). Returns the dual (grad_x, grad_t, grad_s) *before* volume_preserving's mean subtraction.
std::tuple<at::Tensor, at::Tensor, at::Tensor> affine_backward_dual_cpu(const at::Tensor& grad_out,
                                                                        const at::Tensor& grad_logabsdet,
                                                                        const at::Tensor& x, const at::Tensor& t,
                                                                        const at::Tensor& s, const at::Tensor& mean,
                                                                        AffineOptions o);

#ifdef MFK_WITH_CUDA
std::tuple<at::Tensor, at::Tensor> affine_forward_cuda(const at::Tensor& x, const at::Tensor& t,
                                                       const at::Tensor& s, AffineOptions o);
std::tuple<at::Tensor, at::Tensor, at::Tensor> affine_backward_cuda(const at::Tensor& grad_out,
                                                                    const at::Tensor& grad_logabsdet,
                                                                    const at::Tensor& x, const at::Tensor& t,
                                                                    const at::Tensor& s, AffineOptions o);
std::tuple<at::Tensor, at::Tensor> affine_jvp_cuda(const at::Tensor& x, const at::Tensor& t,
                                                       const at::Tensor& s, const at::Tensor& x_dot,
                                                       const at::Tensor& t_dot, const at::Tensor& s_dot,
                                                       AffineOptions o);
std::tuple<at::Tensor, at::Tensor, at::Tensor> affine_backward_dual_cuda(const at::Tensor& grad_out,
                                                                         const at::Tensor& grad_logabsdet,
                                                                         const at::Tensor& x, const at::Tensor& t,
                                                                         const at::Tensor& s, const at::Tensor& mean,
                                                                         AffineOptions o);
#endif

}  // namespace coupling
}  // namespace mfk

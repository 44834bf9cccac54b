// Device kernels of the rational-quadratic spline op, as seen by the drivers in ops/rq_spline.cpp.
// Tensors are contiguous and flattened: inputs (N,), widths/heights (N, K), derivatives (N, Kd).
#pragma once

#include <ATen/core/Tensor.h>

#include <tuple>

namespace mfk {
namespace spline {

struct SplineOptions {
  bool inverse;
  bool linear_tails;  // tails="linear"; otherwise bounded (tails=None)
  double tail_bound;
  double min_bin_width;
  double min_bin_height;
  double min_derivative;
};

// Returns (outputs (N,), logabsdet (N,)).
std::tuple<at::Tensor, at::Tensor> rq_forward_cpu(const at::Tensor& inputs, const at::Tensor& uw,
                                                  const at::Tensor& uh, const at::Tensor& ud, SplineOptions o);
// Returns (grad_inputs, grad_widths, grad_heights, grad_derivatives).
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> rq_backward_cpu(
    const at::Tensor& grad_out, const at::Tensor& grad_logabsdet, const at::Tensor& inputs, const at::Tensor& uw,
    const at::Tensor& uh, const at::Tensor& ud, SplineOptions o);
// Returns (outputs_dot (N,), logabsdet_dot (N,)).
std::tuple<at::Tensor, at::Tensor> rq_jvp_cpu(const at::Tensor& inputs, const at::Tensor& uw,
                                                  const at::Tensor& uh, const at::Tensor& ud,
                                                  const at::Tensor& inputs_dot, const at::Tensor& uw_dot,
                                                  const at::Tensor& uh_dot, const at::Tensor& ud_dot,
                                                  SplineOptions o);

// Tangent of the backward: every argument is a (..., 2) tensor of values and tangents (dual numbers,
// common/dual.h); returns the four gradients in that form.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> rq_backward_dual_cpu(
    const at::Tensor& grad_out, const at::Tensor& grad_logabsdet, const at::Tensor& inputs, const at::Tensor& uw,
    const at::Tensor& uh, const at::Tensor& ud, SplineOptions o);

#ifdef MFK_WITH_CUDA
std::tuple<at::Tensor, at::Tensor> rq_forward_cuda(const at::Tensor& inputs, const at::Tensor& uw,
                                                   const at::Tensor& uh, const at::Tensor& ud, SplineOptions o);
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> rq_backward_cuda(
    const at::Tensor& grad_out, const at::Tensor& grad_logabsdet, const at::Tensor& inputs, const at::Tensor& uw,
    const at::Tensor& uh, const at::Tensor& ud, SplineOptions o);
std::tuple<at::Tensor, at::Tensor> rq_jvp_cuda(const at::Tensor& inputs, const at::Tensor& uw,
                                                   const at::Tensor& uh, const at::Tensor& ud,
                                                   const at::Tensor& inputs_dot, const at::Tensor& uw_dot,
                                                   const at::Tensor& uh_dot, const at::Tensor& ud_dot,
                                                   SplineOptions o);
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> rq_backward_dual_cuda(
    const at::Tensor& grad_out, const at::Tensor& grad_logabsdet, const at::Tensor& inputs, const at::Tensor& uw,
    const at::Tensor& uh, const at::Tensor& ud, SplineOptions o);
#endif

}  // namespace spline
}  // namespace mfk

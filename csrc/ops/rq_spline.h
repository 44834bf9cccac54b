// The rational-quadratic spline family between its Torch-facing drivers (ops/rq_spline.cpp) and its
// device files (cpu/rq_spline_cpu.cpp, cuda/rq_spline_cuda.cu): the kernels table each device fills, and
// the drivers that check, lay out and call it. Kernels see contiguous, flattened tensors: inputs (N,),
// widths/heights (N, K), derivatives (N, Kd).
#pragma once

#include "../math/rq_spline_config.h"
#include "registration.h"

#include <ATen/core/Tensor.h>
#include <c10/util/string_view.h>
#include <torch/library.h>

#include <optional>
#include <tuple>

namespace mfk {
namespace rq_spline {

using at::Tensor;
using Gradients = std::tuple<Tensor, Tensor, Tensor, Tensor>;  // inputs, widths, heights, derivatives

struct Kernels {
  // -> (outputs (N,), logabsdet (N,))
  std::tuple<Tensor, Tensor> (*forward)(const Tensor& inputs, const Tensor& uw, const Tensor& uh, const Tensor& ud,
                                        SplineOptions o);
  Gradients (*backward)(const Tensor& grad_out, const Tensor& grad_logabsdet, const Tensor& inputs, const Tensor& uw,
                        const Tensor& uh, const Tensor& ud, SplineOptions o);
  // -> (outputs_dot (N,), logabsdet_dot (N,))
  std::tuple<Tensor, Tensor> (*jvp)(const Tensor& inputs, const Tensor& uw, const Tensor& uh, const Tensor& ud,
                                    const Tensor& inputs_dot, const Tensor& uw_dot, const Tensor& uh_dot,
                                    const Tensor& ud_dot, SplineOptions o);
  // The backward on dual numbers (common/dual.h): every argument and result a (..., 2) tensor of values
  // and tangents.
  Gradients (*backward_dual)(const Tensor& grad_out, const Tensor& grad_logabsdet, const Tensor& inputs,
                             const Tensor& uw, const Tensor& uh, const Tensor& ud, SplineOptions o);
};

// The schema's trailing options, in its order.
#define MFK_SPLINE_OPTION_PARAMS                                                                                       \
  bool inverse, std::optional<c10::string_view> tails, double tail_bound, double min_bin_width, double min_bin_height, \
      double min_derivative

std::tuple<Tensor, Tensor> rq_spline_forward(const Kernels& device, const Tensor& inputs, const Tensor& w,
                                             const Tensor& h, const Tensor& d, MFK_SPLINE_OPTION_PARAMS);
Gradients rq_spline_backward(const Kernels& device, const Tensor& grad_outputs, const Tensor& grad_logabsdet,
                             const Tensor& inputs, const Tensor& w, const Tensor& h, const Tensor& d,
                             MFK_SPLINE_OPTION_PARAMS);
std::tuple<Tensor, Tensor> rq_spline_jvp(const Kernels& device, const Tensor& inputs, const Tensor& w, const Tensor& h,
                                         const Tensor& d, const Tensor& inputs_dot, const Tensor& w_dot,
                                         const Tensor& h_dot, const Tensor& d_dot, MFK_SPLINE_OPTION_PARAMS);
Gradients rq_spline_backward_jvp(const Kernels& device, const Tensor& grad_outputs, const Tensor& grad_logabsdet,
                                 const Tensor& inputs, const Tensor& w, const Tensor& h, const Tensor& d,
                                 const Tensor& grad_outputs_dot, const Tensor& grad_logabsdet_dot,
                                 const Tensor& inputs_dot, const Tensor& w_dot, const Tensor& h_dot,
                                 const Tensor& d_dot, MFK_SPLINE_OPTION_PARAMS);

template <const Kernels& kKernels>
void register_drivers(torch::Library& m) {
  m.impl("rq_spline_forward", on_device<kKernels, rq_spline_forward>);
  m.impl("rq_spline_backward", on_device<kKernels, rq_spline_backward>);
  m.impl("rq_spline_jvp", on_device<kKernels, rq_spline_jvp>);
  m.impl("rq_spline_backward_jvp", on_device<kKernels, rq_spline_backward_jvp>);
}

}  // namespace rq_spline
}  // namespace mfk

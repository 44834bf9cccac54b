// Torch-facing layer of the rational-quadratic spline op: schemas, input checks, the device-generic
// drivers (ops/rq_spline.h; each device file registers them on its kernels) and Meta kernels. Shapes as nflows: inputs
// (...), widths and heights (..., K), derivatives (..., K - 1) with linear tails or (..., K + 1) bounded; outputs and
// logabsdet have the inputs' shape. The Python layer (mfkernels.ops.rq_spline) adds broadcasting and wires autograd,
// jvp and vmap.
//
//   rq_spline_forward(inputs, w, h, d, inverse, tails, tail_bound, min_*)               -> (outputs, logabsdet)
//   rq_spline_backward(grad_outputs, grad_logabsdet, inputs, w, h, d, ...)              -> (grad_inputs, grad_w,
//   grad_h, grad_d) rq_spline_jvp(inputs, w, h, d, inputs_dot, w_dot, h_dot, d_dot, ...)                ->
//   (outputs_dot, logabsdet_dot) rq_spline_backward_jvp(grads, inputs, w, h, d, grads_dot, inputs_dot, w_dot, ...)   ->
//   tangents of the 4 gradients
#include "rq_spline.h"
#include "checks.h"
#include "dual_tensors.h"

#include <ATen/ops/empty.h>
#include <c10/core/SymInt.h>
#include <torch/library.h>

#include <optional>
#include <string>
#include <vector>

namespace mfk {
namespace rq_spline {
namespace {

using at::Tensor;

SplineOptions parse_options(bool inverse, std::optional<c10::string_view> tails, double tail_bound,
                            double min_bin_width, double min_bin_height, double min_derivative, const char* op) {
  TORCH_CHECK(!tails.has_value() || *tails == "linear", op, ": argument 'tails' must be 'linear' or None, got '",
              std::string(*tails), "'");
  TORCH_CHECK(tail_bound > 0.0, op, ": argument 'tail_bound' must be positive, got ", tail_bound);
  TORCH_CHECK(min_bin_width > 0.0, op, ": argument 'min_bin_width' must be positive, got ", min_bin_width);
  TORCH_CHECK(min_bin_height > 0.0, op, ": argument 'min_bin_height' must be positive, got ", min_bin_height);
  TORCH_CHECK(min_derivative > 0.0 && min_derivative < 1.0, op, ": argument 'min_derivative' must be in (0, 1), got ",
              min_derivative);
  return SplineOptions{inverse, tails.has_value(), tail_bound, min_bin_width, min_bin_height, min_derivative};
}

// inputs-shaped tensors share `inputs`' shape; parameter tensors are inputs.shape + (count,).
void check_args(const Tensor& inputs, std::initializer_list<std::pair<const Tensor*, const char*>> like_inputs,
                const Tensor& w, const Tensor& h, const Tensor& d,
                std::initializer_list<std::pair<const Tensor*, int>> param_tangents, const SplineOptions& o,
                const char* op) {
  check_floating(op, "inputs", inputs);
  for (const auto& [t, name] : like_inputs) check_like(op, name, *t, "inputs", inputs);
  const char* names[] = {"unnormalized_widths", "unnormalized_heights", "unnormalized_derivatives"};
  const char* tangent_names[] = {"widths_dot", "heights_dot", "derivatives_dot"};  // the schema's
  const Tensor* params[] = {&w, &h, &d};
  for (int i = 0; i < 3; ++i) {
    check_same_device_dtype(op, names[i], *params[i], "inputs", inputs);
    const Tensor& t = *params[i];
    TORCH_CHECK(t.dim() == inputs.dim() + 1 && t.sym_sizes().slice(0, inputs.dim()) == inputs.sym_sizes(), op,
                ": argument '", names[i], "' must have shape inputs.shape + (bins,) = ", inputs.sym_sizes(),
                " + (...,), got ", t.sym_sizes());
  }
  // The bin count fixes the kernels' loop bounds, so a traced graph may specialise on it.
  const int64_t K = w.sym_size(-1).guard_int(__FILE__, __LINE__);
  TORCH_CHECK(K >= 1, op, ": need at least one bin, got unnormalized_widths of shape ", w.sym_sizes());
  TORCH_CHECK(h.sym_size(-1) == K, op, ": argument 'unnormalized_heights' must have ", K,
              " bins like 'unnormalized_widths', got ", h.sym_size(-1));
  const int64_t Kd = o.linear_tails ? K - 1 : K + 1;
  TORCH_CHECK(d.sym_size(-1) == Kd, op, ": argument 'unnormalized_derivatives' must have ", Kd, " values (num_bins ",
              o.linear_tails ? "- 1 with tails='linear'" : "+ 1 with tails=None", "), got ", d.sym_size(-1));
  TORCH_CHECK(o.min_bin_width * static_cast<double>(K) <= 1.0, op, ": min_bin_width * num_bins = ", o.min_bin_width,
              " * ", K, " exceeds 1 (minimal bin width too large for the number of bins)");
  TORCH_CHECK(o.min_bin_height * static_cast<double>(K) <= 1.0, op, ": min_bin_height * num_bins = ", o.min_bin_height,
              " * ", K, " exceeds 1 (minimal bin height too large for the number of bins)");
  for (const auto& [t, which] : param_tangents) {
    check_like(op, tangent_names[which], *t, names[which], *params[which]);
  }
}

}  // namespace

#define MFK_SPLINE_OPTION_ARGS inverse, tails, tail_bound, min_bin_width, min_bin_height, min_derivative

std::tuple<Tensor, Tensor> rq_spline_forward(const Kernels& device, const Tensor& inputs, const Tensor& w,
                                             const Tensor& h, const Tensor& d, MFK_SPLINE_OPTION_PARAMS) {
  const char* op = "mfkernels.rq_spline";
  const SplineOptions o = parse_options(MFK_SPLINE_OPTION_ARGS, op);
  check_args(inputs, {}, w, h, d, {}, o, op);
  const Tensor ic = inputs.contiguous(), wc = w.contiguous(), hc = h.contiguous(), dc = d.contiguous();
  return device.forward(ic, wc, hc, dc, o);
}

Gradients rq_spline_backward(const Kernels& device, const Tensor& grad_outputs, const Tensor& grad_logabsdet,
                             const Tensor& inputs, const Tensor& w, const Tensor& h, const Tensor& d,
                             MFK_SPLINE_OPTION_PARAMS) {
  const char* op = "mfkernels.rq_spline_backward";
  const SplineOptions o = parse_options(MFK_SPLINE_OPTION_ARGS, op);
  check_args(inputs, {{&grad_outputs, "grad_outputs"}, {&grad_logabsdet, "grad_logabsdet"}}, w, h, d, {}, o, op);
  const Tensor go = grad_outputs.contiguous(), gl = grad_logabsdet.contiguous();
  const Tensor ic = inputs.contiguous(), wc = w.contiguous(), hc = h.contiguous(), dc = d.contiguous();
  return device.backward(go, gl, ic, wc, hc, dc, o);
}

std::tuple<Tensor, Tensor> rq_spline_jvp(const Kernels& device, const Tensor& inputs, const Tensor& w, const Tensor& h,
                                         const Tensor& d, const Tensor& inputs_dot, const Tensor& w_dot,
                                         const Tensor& h_dot, const Tensor& d_dot, MFK_SPLINE_OPTION_PARAMS) {
  const char* op = "mfkernels.rq_spline_jvp";
  const SplineOptions o = parse_options(MFK_SPLINE_OPTION_ARGS, op);
  check_args(inputs, {{&inputs_dot, "inputs_dot"}}, w, h, d, {{&w_dot, 0}, {&h_dot, 1}, {&d_dot, 2}}, o, op);
  const Tensor ic = inputs.contiguous(), wc = w.contiguous(), hc = h.contiguous(), dc = d.contiguous();
  const Tensor id = inputs_dot.contiguous(), wd = w_dot.contiguous(), hd = h_dot.contiguous(), dd = d_dot.contiguous();
  return device.jvp(ic, wc, hc, dc, id, wd, hd, dd, o);
}

// Tangent of rq_spline_backward along every one of its inputs: the backward kernel run in dual numbers
// (common/dual.h) on values and tangents stacked as (..., 2). With it the jvp and backward primitives
// are differentiable once more (mfkernels/ops/_second_order.py): reverse over forward, double backward.
Gradients rq_spline_backward_jvp(const Kernels& device, const Tensor& grad_outputs, const Tensor& grad_logabsdet,
                                 const Tensor& inputs, const Tensor& w, const Tensor& h, const Tensor& d,
                                 const Tensor& grad_outputs_dot, const Tensor& grad_logabsdet_dot,
                                 const Tensor& inputs_dot, const Tensor& w_dot, const Tensor& h_dot,
                                 const Tensor& d_dot, MFK_SPLINE_OPTION_PARAMS) {
  const char* op = "mfkernels.rq_spline_backward_jvp";
  const SplineOptions o = parse_options(MFK_SPLINE_OPTION_ARGS, op);
  check_args(inputs,
             {{&grad_outputs, "grad_outputs"},
              {&grad_logabsdet, "grad_logabsdet"},
              {&grad_outputs_dot, "grad_outputs_dot"},
              {&grad_logabsdet_dot, "grad_logabsdet_dot"},
              {&inputs_dot, "inputs_dot"}},
             w, h, d, {{&w_dot, 0}, {&h_dot, 1}, {&d_dot, 2}}, o, op);
  const Tensor go = dual_tensor(grad_outputs, grad_outputs_dot), gl = dual_tensor(grad_logabsdet, grad_logabsdet_dot);
  const Tensor in = dual_tensor(inputs, inputs_dot), wd = dual_tensor(w, w_dot), hd = dual_tensor(h, h_dot),
               dd = dual_tensor(d, d_dot);
  const Gradients grads = device.backward_dual(go, gl, in, wd, hd, dd, o);
  return {tangent_part(std::get<0>(grads)), tangent_part(std::get<1>(grads)), tangent_part(std::get<2>(grads)),
          tangent_part(std::get<3>(grads))};
}

// ---- Meta kernels ----

namespace {

Tensor like(const Tensor& t) { return at::empty_symint(t.sym_sizes(), t.options()); }

std::tuple<Tensor, Tensor> rq_spline_forward_meta(const Tensor& inputs, const Tensor& w, const Tensor& h,
                                                  const Tensor& d, MFK_SPLINE_OPTION_PARAMS) {
  const char* op = "mfkernels.rq_spline";
  check_args(inputs, {}, w, h, d, {}, parse_options(MFK_SPLINE_OPTION_ARGS, op), op);
  return {like(inputs), like(inputs)};
}

std::tuple<Tensor, Tensor, Tensor, Tensor> rq_spline_backward_meta(const Tensor& grad_outputs,
                                                                   const Tensor& grad_logabsdet, const Tensor& inputs,
                                                                   const Tensor& w, const Tensor& h, const Tensor& d,
                                                                   MFK_SPLINE_OPTION_PARAMS) {
  const char* op = "mfkernels.rq_spline_backward";
  check_args(inputs, {{&grad_outputs, "grad_outputs"}, {&grad_logabsdet, "grad_logabsdet"}}, w, h, d, {},
             parse_options(MFK_SPLINE_OPTION_ARGS, op), op);
  return {like(inputs), like(w), like(h), like(d)};
}

std::tuple<Tensor, Tensor> rq_spline_jvp_meta(const Tensor& inputs, const Tensor& w, const Tensor& h, const Tensor& d,
                                              const Tensor& inputs_dot, const Tensor& w_dot, const Tensor& h_dot,
                                              const Tensor& d_dot, MFK_SPLINE_OPTION_PARAMS) {
  const char* op = "mfkernels.rq_spline_jvp";
  check_args(inputs, {{&inputs_dot, "inputs_dot"}}, w, h, d, {{&w_dot, 0}, {&h_dot, 1}, {&d_dot, 2}},
             parse_options(MFK_SPLINE_OPTION_ARGS, op), op);
  return {like(inputs), like(inputs)};
}

std::tuple<Tensor, Tensor, Tensor, Tensor> rq_spline_backward_jvp_meta(
    const Tensor& grad_outputs, const Tensor& grad_logabsdet, const Tensor& inputs, const Tensor& w, const Tensor& h,
    const Tensor& d, const Tensor& grad_outputs_dot, const Tensor& grad_logabsdet_dot, const Tensor& inputs_dot,
    const Tensor& w_dot, const Tensor& h_dot, const Tensor& d_dot, MFK_SPLINE_OPTION_PARAMS) {
  const char* op = "mfkernels.rq_spline_backward_jvp";
  check_args(inputs,
             {{&grad_outputs, "grad_outputs"},
              {&grad_logabsdet, "grad_logabsdet"},
              {&grad_outputs_dot, "grad_outputs_dot"},
              {&grad_logabsdet_dot, "grad_logabsdet_dot"},
              {&inputs_dot, "inputs_dot"}},
             w, h, d, {{&w_dot, 0}, {&h_dot, 1}, {&d_dot, 2}}, parse_options(MFK_SPLINE_OPTION_ARGS, op), op);
  return {like(inputs), like(w), like(h), like(d)};
}

}  // namespace
}  // namespace rq_spline
}  // namespace mfk

#define MFK_SPLINE_OPTION_SCHEMA                                                               \
  "bool inverse=False, str? tails=\"linear\", float tail_bound=1., float min_bin_width=1e-3, " \
  "float min_bin_height=1e-3, float min_derivative=1e-3"

TORCH_LIBRARY_FRAGMENT(mfkernels, m) {
  m.def(
      "rq_spline_forward(Tensor inputs, Tensor unnormalized_widths, Tensor unnormalized_heights, "
      "Tensor unnormalized_derivatives, " MFK_SPLINE_OPTION_SCHEMA ") -> (Tensor outputs, Tensor logabsdet)");
  m.def(
      "rq_spline_backward(Tensor grad_outputs, Tensor grad_logabsdet, Tensor inputs, Tensor unnormalized_widths, "
      "Tensor unnormalized_heights, Tensor unnormalized_derivatives, " MFK_SPLINE_OPTION_SCHEMA
      ") -> (Tensor grad_inputs, Tensor grad_widths, Tensor grad_heights, Tensor grad_derivatives)");
  m.def(
      "rq_spline_jvp(Tensor inputs, Tensor unnormalized_widths, Tensor unnormalized_heights, "
      "Tensor unnormalized_derivatives, Tensor inputs_dot, Tensor widths_dot, Tensor heights_dot, "
      "Tensor derivatives_dot, " MFK_SPLINE_OPTION_SCHEMA ") -> (Tensor outputs_dot, Tensor logabsdet_dot)");
  m.def(
      "rq_spline_backward_jvp(Tensor grad_outputs, Tensor grad_logabsdet, Tensor inputs, Tensor unnormalized_widths, "
      "Tensor unnormalized_heights, Tensor unnormalized_derivatives, Tensor grad_outputs_dot, "
      "Tensor grad_logabsdet_dot, Tensor inputs_dot, Tensor widths_dot, Tensor heights_dot, Tensor "
      "derivatives_dot, " MFK_SPLINE_OPTION_SCHEMA
      ") -> (Tensor grad_inputs_dot, Tensor grad_widths_dot, Tensor grad_heights_dot, "
      "Tensor grad_derivatives_dot)");
}

TORCH_LIBRARY_IMPL(mfkernels, Meta, m) {
  m.impl("rq_spline_forward", mfk::rq_spline::rq_spline_forward_meta);
  m.impl("rq_spline_backward", mfk::rq_spline::rq_spline_backward_meta);
  m.impl("rq_spline_jvp", mfk::rq_spline::rq_spline_jvp_meta);
  m.impl("rq_spline_backward_jvp", mfk::rq_spline::rq_spline_backward_jvp_meta);
}

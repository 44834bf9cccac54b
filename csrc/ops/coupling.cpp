// Torch-facing layer of the affine coupling family: schemas, input checks, the device-generic drivers
// (ops/coupling.h; each device file registers them on its kernels) and Meta kernels. Tensors are rows (B, n); the
// Python layer (mfkernels.ops.affine_coupling) broadcasts and flattens, and wires autograd, jvp and vmap.
//
//   affine_coupling_forward(x, shift, scale, mode, clamp, inverse)              -> (y, logabsdet)
//   affine_coupling_backward(grad_y, grad_logabsdet, x, shift, scale, ...)      -> (grad_x, grad_shift, grad_scale)
//   affine_coupling_jvp(x, shift, scale, x_dot, shift_dot, scale_dot, ...)      -> (y_dot, logabsdet_dot)
//   affine_coupling_backward_jvp(grads, x, shift, scale, grads_dot, x_dot, ...) -> tangents of the 3 gradients
#include "coupling.h"
#include "checks.h"
#include "dual_tensors.h"

#include "../math/coupling.h"

#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/core/SymInt.h>
#include <torch/library.h>

#include <string>

namespace mfk {
namespace coupling {
namespace {

using at::Tensor;

AffineOptions parse_options(c10::string_view mode, std::optional<double> clamp, bool inverse, const char* op) {
  AffineOptions o{kExp, 0.0, inverse};
  if (mode == "exp") {
    o.mode = kExp;
  } else if (mode == "softclamp") {
    o.mode = kSoftclamp;
  } else if (mode == "sigmoid") {
    o.mode = kSigmoid;
  } else if (mode == "volume_preserving") {
    o.mode = kVolumePreserving;
  } else {
    TORCH_CHECK(false, op, ": argument 'mode' must be one of 'exp', 'softclamp', 'sigmoid', 'volume_preserving', got '",
                std::string(mode), "'");
  }
  if (o.mode == kSoftclamp) {
    TORCH_CHECK(clamp.has_value() && *clamp > 0.0, op,
                ": argument 'clamp' must be a positive float with mode='softclamp', got ",
                clamp.has_value() ? std::to_string(*clamp) : std::string("None"));
    o.clamp = *clamp;
  }
  return o;
}

// Every argument is a (B, n) row tensor of `ref`'s shape, dtype and device.
void check_rows(const Tensor& ref, const char* ref_name,
                std::initializer_list<std::pair<const Tensor*, const char*>> others, const char* op) {
  check_floating(op, ref_name, ref);
  TORCH_CHECK(ref.dim() == 2, op, ": argument '", ref_name, "' must be rows of shape (B, n), got ", ref.sym_sizes());
  for (const auto& [t, name] : others) check_like(op, name, *t, ref_name, ref);
}

void check_per_row(const Tensor& ref, const Tensor& t, const char* name, const char* op) {
  check_same_device_dtype(op, name, t, "x", ref);
  check_shape(op, name, t, {ref.sym_size(0)}, "(B,)");
}

// The arguments of affine_coupling_backward_jvp: rows like x, and two per-row log-determinant gradients.
void check_backward_jvp_args(const Tensor& grad_y, const Tensor& grad_logabsdet, const Tensor& x, const Tensor& shift,
                             const Tensor& scale, const Tensor& grad_y_dot, const Tensor& grad_logabsdet_dot,
                             const Tensor& x_dot, const Tensor& shift_dot, const Tensor& scale_dot, const char* op) {
  check_rows(x, "x",
             {{&shift, "shift"},
              {&scale, "scale"},
              {&grad_y, "grad_y"},
              {&grad_y_dot, "grad_y_dot"},
              {&x_dot, "x_dot"},
              {&shift_dot, "shift_dot"},
              {&scale_dot, "scale_dot"}},
             op);
  check_per_row(x, grad_logabsdet, "grad_logabsdet", op);
  check_per_row(x, grad_logabsdet_dot, "grad_logabsdet_dot", op);
}

}  // namespace

std::tuple<Tensor, Tensor> affine_coupling_forward(const Kernels& device, const Tensor& x, const Tensor& shift,
                                                   const Tensor& scale, c10::string_view mode,
                                                   std::optional<double> clamp, bool inverse) {
  const char* op = "mfkernels.affine_coupling";
  check_rows(x, "x", {{&shift, "shift"}, {&scale, "scale"}}, op);
  const AffineOptions o = parse_options(mode, clamp, inverse, op);
  const Tensor xc = x.contiguous(), tc = shift.contiguous(), sc = scale.contiguous();
  return device.forward(xc, tc, sc, o);
}

std::tuple<Tensor, Tensor, Tensor> affine_coupling_backward(const Kernels& device, const Tensor& grad_y,
                                                            const Tensor& grad_logabsdet, const Tensor& x,
                                                            const Tensor& shift, const Tensor& scale,
                                                            c10::string_view mode, std::optional<double> clamp,
                                                            bool inverse) {
  const char* op = "mfkernels.affine_coupling_backward";
  check_rows(x, "x", {{&shift, "shift"}, {&scale, "scale"}, {&grad_y, "grad_y"}}, op);
  check_per_row(x, grad_logabsdet, "grad_logabsdet", op);
  const AffineOptions o = parse_options(mode, clamp, inverse, op);
  // grad_y goes as it is: the kernels lay it out (the CPU reads a row-constant one without a copy)
  const Tensor xc = x.contiguous(), tc = shift.contiguous(), sc = scale.contiguous();
  return device.backward(grad_y, grad_logabsdet.contiguous(), xc, tc, sc, o);
}

std::tuple<Tensor, Tensor> affine_coupling_jvp(const Kernels& device, const Tensor& x, const Tensor& shift,
                                               const Tensor& scale, const Tensor& x_dot, const Tensor& shift_dot,
                                               const Tensor& scale_dot, c10::string_view mode,
                                               std::optional<double> clamp, bool inverse) {
  const char* op = "mfkernels.affine_coupling_jvp";
  check_rows(
      x, "x",
      {{&shift, "shift"}, {&scale, "scale"}, {&x_dot, "x_dot"}, {&shift_dot, "shift_dot"}, {&scale_dot, "scale_dot"}},
      op);
  const AffineOptions o = parse_options(mode, clamp, inverse, op);
  const Tensor xc = x.contiguous(), tc = shift.contiguous(), sc = scale.contiguous();
  const Tensor xd = x_dot.contiguous(), td = shift_dot.contiguous(), sd = scale_dot.contiguous();
  return device.jvp(xc, tc, sc, xd, td, sd, o);
}

// Tangent of affine_coupling_backward along every one of its inputs: the backward row pass run in dual
// numbers (common/dual.h) on values and tangents stacked as (..., 2), so the jvp and backward
// primitives are differentiable once more (mfkernels/ops/_second_order.py).
std::tuple<Tensor, Tensor, Tensor> affine_coupling_backward_jvp(
    const Kernels& device, const Tensor& grad_y, const Tensor& grad_logabsdet, const Tensor& x, const Tensor& shift,
    const Tensor& scale, const Tensor& grad_y_dot, const Tensor& grad_logabsdet_dot, const Tensor& x_dot,
    const Tensor& shift_dot, const Tensor& scale_dot, c10::string_view mode, std::optional<double> clamp,
    bool inverse) {
  const char* op = "mfkernels.affine_coupling_backward_jvp";
  check_backward_jvp_args(grad_y, grad_logabsdet, x, shift, scale, grad_y_dot, grad_logabsdet_dot, x_dot, shift_dot,
                          scale_dot, op);
  const AffineOptions o = parse_options(mode, clamp, inverse, op);
  const Tensor g = dual_tensor(grad_y, grad_y_dot), gl = dual_tensor(grad_logabsdet, grad_logabsdet_dot);
  const Tensor xd = dual_tensor(x, x_dot), td = dual_tensor(shift, shift_dot), sd = dual_tensor(scale, scale_dot);
  const bool vp = o.mode == kVolumePreserving;
  const Tensor mean = vp ? sd.mean(1) : at::zeros({x.size(0), 2}, x.options());
  const auto grads = device.backward_dual(g, gl, xd, td, sd, mean, o);
  Tensor gs_dot = tangent_part(std::get<2>(grads));
  if (vp) gs_dot.sub_(gs_dot.mean(1, /*keepdim=*/true));  // d/ds of a = s - mean(s) is I - 11ᵀ/n
  return {tangent_part(std::get<0>(grads)), tangent_part(std::get<1>(grads)), gs_dot};
}

// ---- Meta kernels ----

namespace {

std::tuple<Tensor, Tensor> affine_coupling_forward_meta(const Tensor& x, const Tensor& shift, const Tensor& scale,
                                                        c10::string_view mode, std::optional<double> clamp,
                                                        bool inverse) {
  const char* op = "mfkernels.affine_coupling";
  check_rows(x, "x", {{&shift, "shift"}, {&scale, "scale"}}, op);
  parse_options(mode, clamp, inverse, op);
  return {at::empty_symint(x.sym_sizes(), x.options()), at::empty_symint({x.sym_size(0)}, x.options())};
}

std::tuple<Tensor, Tensor, Tensor> affine_coupling_backward_meta(const Tensor& grad_y, const Tensor& grad_logabsdet,
                                                                 const Tensor& x, const Tensor& shift,
                                                                 const Tensor& scale, c10::string_view mode,
                                                                 std::optional<double> clamp, bool inverse) {
  const char* op = "mfkernels.affine_coupling_backward";
  check_rows(x, "x", {{&shift, "shift"}, {&scale, "scale"}, {&grad_y, "grad_y"}}, op);
  check_per_row(x, grad_logabsdet, "grad_logabsdet", op);
  parse_options(mode, clamp, inverse, op);
  return {at::empty_symint(x.sym_sizes(), x.options()), at::empty_symint(x.sym_sizes(), x.options()),
          at::empty_symint(x.sym_sizes(), x.options())};
}

std::tuple<Tensor, Tensor> affine_coupling_jvp_meta(const Tensor& x, const Tensor& shift, const Tensor& scale,
                                                    const Tensor& x_dot, const Tensor& shift_dot,
                                                    const Tensor& scale_dot, c10::string_view mode,
                                                    std::optional<double> clamp, bool inverse) {
  const char* op = "mfkernels.affine_coupling_jvp";
  check_rows(
      x, "x",
      {{&shift, "shift"}, {&scale, "scale"}, {&x_dot, "x_dot"}, {&shift_dot, "shift_dot"}, {&scale_dot, "scale_dot"}},
      op);
  parse_options(mode, clamp, inverse, op);
  return {at::empty_symint(x.sym_sizes(), x.options()), at::empty_symint({x.sym_size(0)}, x.options())};
}

std::tuple<Tensor, Tensor, Tensor> affine_coupling_backward_jvp_meta(
    const Tensor& grad_y, const Tensor& grad_logabsdet, const Tensor& x, const Tensor& shift, const Tensor& scale,
    const Tensor& grad_y_dot, const Tensor& grad_logabsdet_dot, const Tensor& x_dot, const Tensor& shift_dot,
    const Tensor& scale_dot, c10::string_view mode, std::optional<double> clamp, bool inverse) {
  const char* op = "mfkernels.affine_coupling_backward_jvp";
  check_backward_jvp_args(grad_y, grad_logabsdet, x, shift, scale, grad_y_dot, grad_logabsdet_dot, x_dot, shift_dot,
                          scale_dot, op);
  parse_options(mode, clamp, inverse, op);
  return {at::empty_symint(x.sym_sizes(), x.options()), at::empty_symint(x.sym_sizes(), x.options()),
          at::empty_symint(x.sym_sizes(), x.options())};
}

}  // namespace
}  // namespace coupling
}  // namespace mfk

TORCH_LIBRARY_FRAGMENT(mfkernels, m) {
  m.def(
      "affine_coupling_forward(Tensor x, Tensor shift, Tensor scale, str mode=\"exp\", float? clamp=None, "
      "bool inverse=False) -> (Tensor y, Tensor logabsdet)");
  m.def(
      "affine_coupling_backward(Tensor grad_y, Tensor grad_logabsdet, Tensor x, Tensor shift, Tensor scale, "
      "str mode=\"exp\", float? clamp=None, bool inverse=False) -> (Tensor grad_x, Tensor grad_shift, Tensor "
      "grad_scale)");
  m.def(
      "affine_coupling_jvp(Tensor x, Tensor shift, Tensor scale, Tensor x_dot, Tensor shift_dot, Tensor scale_dot, "
      "str mode=\"exp\", float? clamp=None, bool inverse=False) -> (Tensor y_dot, Tensor logabsdet_dot)");
  m.def(
      "affine_coupling_backward_jvp(Tensor grad_y, Tensor grad_logabsdet, Tensor x, Tensor shift, Tensor scale, "
      "Tensor grad_y_dot, Tensor grad_logabsdet_dot, Tensor x_dot, Tensor shift_dot, Tensor scale_dot, "
      "str mode=\"exp\", float? clamp=None, bool inverse=False) "
      "-> (Tensor grad_x_dot, Tensor grad_shift_dot, Tensor grad_scale_dot)");
}

TORCH_LIBRARY_IMPL(mfkernels, Meta, m) {
  m.impl("affine_coupling_forward", mfk::coupling::affine_coupling_forward_meta);
  m.impl("affine_coupling_backward", mfk::coupling::affine_coupling_backward_meta);
  m.impl("affine_coupling_jvp", mfk::coupling::affine_coupling_jvp_meta);
  m.impl("affine_coupling_backward_jvp", mfk::coupling::affine_coupling_backward_jvp_meta);
}

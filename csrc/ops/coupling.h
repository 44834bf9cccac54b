// The affine coupling family between its Torch-facing drivers (ops/coupling.cpp) and its device files
// (cpu/coupling_cpu.cpp, cuda/coupling_cuda.cu): the kernels table each device fills, and the drivers
// that check, lay out and call it. Kernels see contiguous rows: (B, n) for elementwise data, (B,) for
// per-row log-determinants.
#pragma once

#include "registration.h"

#include <ATen/core/Tensor.h>
#include <c10/util/string_view.h>
#include <torch/library.h>

#include <optional>
#include <tuple>

namespace mfk {
namespace coupling {

using at::Tensor;

struct AffineOptions {
  int mode;      // AffineMode of math/coupling.h
  double clamp;  // softclamp's c (unused otherwise)
  bool inverse;
};

struct Kernels {
  // (x, t, s) -> (out (B, n), logabsdet (B,))
  std::tuple<Tensor, Tensor> (*forward)(const Tensor& x, const Tensor& t, const Tensor& s, AffineOptions o);
  // (grad_out (B, n), grad_logabsdet (B,), x, t, s) -> (grad_x, grad_t, grad_s), each (B, n); grad_out in any
  // layout (the kernel makes it contiguous or reads it as it is)
  std::tuple<Tensor, Tensor, Tensor> (*backward)(const Tensor& grad_out, const Tensor& grad_logabsdet, const Tensor& x,
                                                 const Tensor& t, const Tensor& s, AffineOptions o);
  // (x, t, s, x_dot, t_dot, s_dot) -> (out_dot (B, n), logabsdet_dot (B,))
  std::tuple<Tensor, Tensor> (*jvp)(const Tensor& x, const Tensor& t, const Tensor& s, const Tensor& x_dot,
                                    const Tensor& t_dot, const Tensor& s_dot, AffineOptions o);
  // The backward on dual numbers (common/dual.h): values and tangents stacked in a last dim of 2, rows
  // (B, n, 2), per-row (B, 2); `mean` is volume_preserving's row mean of s (zeros otherwise). Returns the
  // dual (grad_x, grad_t, grad_s) *before* volume_preserving's mean subtraction.
  std::tuple<Tensor, Tensor, Tensor> (*backward_dual)(const Tensor& grad_out, const Tensor& grad_logabsdet,
                                                      const Tensor& x, const Tensor& t, const Tensor& s,
                                                      const Tensor& mean, AffineOptions o);
};

std::tuple<Tensor, Tensor> affine_coupling_forward(const Kernels& device, const Tensor& x, const Tensor& shift,
                                                   const Tensor& scale, c10::string_view mode,
                                                   std::optional<double> clamp, bool inverse);
std::tuple<Tensor, Tensor, Tensor> affine_coupling_backward(const Kernels& device, const Tensor& grad_y,
                                                            const Tensor& grad_logabsdet, const Tensor& x,
                                                            const Tensor& shift, const Tensor& scale,
                                                            c10::string_view mode, std::optional<double> clamp,
                                                            bool inverse);
std::tuple<Tensor, Tensor> affine_coupling_jvp(const Kernels& device, const Tensor& x, const Tensor& shift,
                                               const Tensor& scale, const Tensor& x_dot, const Tensor& shift_dot,
                                               const Tensor& scale_dot, c10::string_view mode,
                                               std::optional<double> clamp, bool inverse);
std::tuple<Tensor, Tensor, Tensor> affine_coupling_backward_jvp(
    const Kernels& device, const Tensor& grad_y, const Tensor& grad_logabsdet, const Tensor& x, const Tensor& shift,
    const Tensor& scale, const Tensor& grad_y_dot, const Tensor& grad_logabsdet_dot, const Tensor& x_dot,
    const Tensor& shift_dot, const Tensor& scale_dot, c10::string_view mode, std::optional<double> clamp, bool inverse);

template <const Kernels& kKernels>
void register_drivers(torch::Library& m) {
  m.impl("affine_coupling_forward", on_device<kKernels, affine_coupling_forward>);
  m.impl("affine_coupling_backward", on_device<kKernels, affine_coupling_backward>);
  m.impl("affine_coupling_jvp", on_device<kKernels, affine_coupling_jvp>);
  m.impl("affine_coupling_backward_jvp", on_device<kKernels, affine_coupling_backward_jvp>);
}

}  // namespace coupling
}  // namespace mfk

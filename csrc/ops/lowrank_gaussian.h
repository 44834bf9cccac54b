// The low-rank Gaussian family between its Torch-facing drivers (ops/lowrank_gaussian.cpp) and its device
// files (cpu/lowrank_gaussian_cpu.cpp, cuda/lowrank_gaussian_cuda.cu). The work is GEMMs and a K x K
// Cholesky through ATen on every device; the one device kernel is the backward's pass over the (N, D)
// residuals, fused on CPU (where the temporaries, not the GEMMs, set the time) and two ATen ops on CUDA.
#pragma once

#include "registration.h"

#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include <tuple>

namespace mfk {
namespace lowrank_gaussian {

using at::Tensor;

struct Kernels {
  // alpha (N, D) row-major -> -g alpha in place; returns sum_n g_n alpha_n^2 (D,).
  Tensor (*residual_grad_)(Tensor& alpha, const Tensor& grad);
};

std::tuple<Tensor, Tensor, Tensor, Tensor> lowrank_gaussian_log_prob_forward(const Tensor& x, const Tensor& loc,
                                                                             const Tensor& W, const Tensor& diag);
std::tuple<Tensor, Tensor, Tensor> lowrank_gaussian_log_prob_backward(const Kernels& device, const Tensor& grad,
                                                                      const Tensor& W, const Tensor& diag,
                                                                      const Tensor& s, const Tensor& v,
                                                                      const Tensor& cinv);
Tensor lowrank_gaussian_log_prob_jvp(const Tensor& W, const Tensor& diag, const Tensor& s, const Tensor& v,
                                     const Tensor& cinv, const Tensor& r_dot, const Tensor& W_dot,
                                     const Tensor& diag_dot);

template <const Kernels& kKernels>
void register_drivers(torch::Library& m) {
  m.impl("lowrank_gaussian_log_prob_forward", lowrank_gaussian_log_prob_forward);
  m.impl("lowrank_gaussian_log_prob_backward", on_device<kKernels, lowrank_gaussian_log_prob_backward>);
  m.impl("lowrank_gaussian_log_prob_jvp", lowrank_gaussian_log_prob_jvp);
}

}  // namespace lowrank_gaussian
}  // namespace mfk

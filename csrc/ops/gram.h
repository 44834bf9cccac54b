// The Gram log-determinant family between its Torch-facing drivers (ops/gram.cpp) and its device files
// (cpu/gram_cpu.cpp, cuda/gram_cuda.cu): the kernels table each device fills, and the drivers that
// check, lay out and call it. Kernels see flat, contiguous batches.
#pragma once

#include "registration.h"

#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include <optional>
#include <tuple>

namespace mfk {
namespace gram {

using at::Tensor;

struct Kernels {
  // J (B, D, d) -> (half_logdet (B,), L (B, d, d), perm (B, d) int64): the pivoted Cholesky factorisation
  // P^T (J^T J) P = L L^T, perm[a] the original index of position a. L has a zero upper triangle;
  // L[0][0] = 0 marks a singular row and an all-NaN L a non-finite one.
  std::tuple<Tensor, Tensor, Tensor> (*factor)(const Tensor& J, double rtol);
  // J (B, D, d), L and perm from factor, scale (B,) -> scale_b * J_b (J_b^T J_b)^{-1}, (B, D, d): the
  // gradient of 0.5 log det(J^T J) times scale. Rows whose factor is marked invalid get 0 where
  // scale_b == 0 and NaN otherwise.
  Tensor (*jacobian_times_inverse)(const Tensor& J, const Tensor& L, const Tensor& perm, const Tensor& scale);
};

Tensor gram_logdet(const Kernels& device, const Tensor& J, std::optional<double> rtol);
std::tuple<Tensor, Tensor, Tensor> gram_logdet_forward(const Kernels& device, const Tensor& J,
                                                       std::optional<double> rtol);
Tensor gram_logdet_backward(const Kernels& device, const Tensor& grad, const Tensor& J, const Tensor& L,
                            const Tensor& perm);
Tensor gram_logdet_jvp(const Kernels& device, const Tensor& J, const Tensor& L, const Tensor& perm,
                       const Tensor& J_dot);

template <const Kernels& kKernels>
void register_drivers(torch::Library& m) {
  m.impl("gram_logdet", on_device<kKernels, gram_logdet>);
  m.impl("gram_logdet_forward", on_device<kKernels, gram_logdet_forward>);
  m.impl("gram_logdet_backward", on_device<kKernels, gram_logdet_backward>);
  m.impl("gram_logdet_jvp", on_device<kKernels, gram_logdet_jvp>);
}

}  // namespace gram
}  // namespace mfk

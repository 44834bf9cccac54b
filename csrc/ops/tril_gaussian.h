// The lower-triangular Gaussian family between its Torch-facing drivers (ops/tril_gaussian.cpp) and its
// device files (cpu/tril_gaussian_cpu.cpp, cuda/tril_gaussian_cuda.cu). Its work is blocked LAPACK/BLAS
// through ATen, so the drivers are device-generic and there is no kernels table: each device file
// registers these same drivers under its own key.
#pragma once

#include <ATen/core/Tensor.h>
#include <torch/library.h>

#include <tuple>

namespace mfk {
namespace tril_gaussian {

using at::Tensor;

std::tuple<Tensor, Tensor, Tensor, Tensor> tril_gaussian_noisy_forward(const Tensor& z, const Tensor& A,
                                                                       const Tensor& sigma);
std::tuple<Tensor, Tensor, Tensor> tril_gaussian_noisy_backward(const Tensor& grad, const Tensor& A,
                                                                const Tensor& sigma, const Tensor& C, const Tensor& w,
                                                                const Tensor& C_block_inv, bool sigma_grad);
std::tuple<Tensor, Tensor> tril_gaussian_triangular_forward(const Tensor& z, const Tensor& A);
std::tuple<Tensor, Tensor> tril_gaussian_triangular_backward(const Tensor& grad, const Tensor& A, const Tensor& w);
Tensor tril_gaussian_noisy_jvp(const Tensor& z_dot, const Tensor& A_dot, const Tensor& sigma_dot, const Tensor& A,
                               const Tensor& sigma, const Tensor& C, const Tensor& w);
Tensor tril_gaussian_triangular_jvp(const Tensor& z_dot, const Tensor& A_dot, const Tensor& A, const Tensor& w);

inline void register_drivers(torch::Library& m) {
  m.impl("tril_gaussian_noisy_forward", tril_gaussian_noisy_forward);
  m.impl("tril_gaussian_noisy_backward", tril_gaussian_noisy_backward);
  m.impl("tril_gaussian_triangular_forward", tril_gaussian_triangular_forward);
  m.impl("tril_gaussian_triangular_backward", tril_gaussian_triangular_backward);
  m.impl("tril_gaussian_noisy_jvp", tril_gaussian_noisy_jvp);
  m.impl("tril_gaussian_triangular_jvp", tril_gaussian_triangular_jvp);
}

}  // namespace tril_gaussian
}  // namespace mfk

// CUDA kernel of the low-rank Gaussian family and its CUDA registration. The backward's pass over the
// (N, D) residuals is two ATen ops here: the caching allocator makes the (N, D) temporary cheap, which
// is what the CPU's fused sweep (cpu/lowrank_gaussian_cpu.cpp) avoids.
#include "../ops/lowrank_gaussian.h"

#include <ATen/ops/mv.h>

namespace mfk {
namespace lowrank_gaussian {
namespace {

Tensor residual_grad_cuda_(Tensor& alpha, const Tensor& grad) {
  Tensor weighted_squares = at::mv(alpha.square().t(), grad);
  alpha.mul_(grad.neg().unsqueeze(1));
  return weighted_squares;
}

}  // namespace

const Kernels kCudaKernels{residual_grad_cuda_};

}  // namespace lowrank_gaussian
}  // namespace mfk

TORCH_LIBRARY_IMPL(mfkernels, CUDA, m) {
  mfk::lowrank_gaussian::register_drivers<mfk::lowrank_gaussian::kCudaKernels>(m);
}

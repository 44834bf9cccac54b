// CPU kernel of the low-rank Gaussian family (math in math/lowrank_gaussian.h) and the family's CPU
// registration: the backward's pass over the (N, D) residuals in one fused sweep, threads owning column
// blocks, because a fresh (N, D) temporary here costs page faults comparable to the arithmetic.
#include "../math/lowrank_gaussian.h"
#include "../ops/lowrank_gaussian.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/zeros.h>

#include <algorithm>

namespace mfk {
namespace lowrank_gaussian {
namespace {

Tensor residual_grad_cpu_(Tensor& alpha, const Tensor& grad) {
  TORCH_INTERNAL_ASSERT(alpha.is_contiguous(), "lowrank backward: alpha must be row-major");
  const int64_t N = alpha.size(0), D = alpha.size(1);
  Tensor weighted_squares = at::zeros({D}, alpha.options());
  Tensor g = grad.contiguous();
  AT_DISPATCH_FLOATING_TYPES(alpha.scalar_type(), "mfkernels::lowrank_gaussian_log_prob_backward (cpu)", [&] {
    scalar_t* a = alpha.mutable_data_ptr<scalar_t>();
    scalar_t* acc = weighted_squares.mutable_data_ptr<scalar_t>();
    const scalar_t* gp = g.const_data_ptr<scalar_t>();
    constexpr int64_t kColumns = 512;  // a block of accumulators stays in L1 while the rows stream by
    at::parallel_for(0, (D + kColumns - 1) / kColumns, 1, [&](int64_t b0, int64_t b1) {
      for (int64_t blk = b0; blk < b1; ++blk) {
        const int64_t d0 = blk * kColumns, len = std::min(kColumns, D - d0);
        for (int64_t n = 0; n < N; ++n) residual_grad_segment(a + n * D + d0, gp[n], acc + d0, len);
      }
    });
  });
  return weighted_squares;
}

}  // namespace

const Kernels kCpuKernels{residual_grad_cpu_};

}  // namespace lowrank_gaussian
}  // namespace mfk

TORCH_LIBRARY_IMPL(mfkernels, CPU, m) {
  mfk::lowrank_gaussian::register_drivers<mfk::lowrank_gaussian::kCpuKernels>(m);
}

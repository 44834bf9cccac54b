// CPU kernels of the Gram log-determinant family (math in math/gram.h), parallel over the batch.
//
// Small Jacobians are accumulated and factored in one pass per batch element; when D * d^2 is large
// the Gram matrix comes from one batched BLAS product instead, because a tuned GEMM beats any
// hand-written accumulation there, and only the d x d factorisation runs here.
#include "../math/gram.h"
#include "../ops/gram.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/matmul.h>
#include <ATen/ops/zeros.h>

#include <algorithm>
#include <vector>

namespace mfk {
namespace gram {
namespace {

// Above this many multiply-adds per element the Gram product goes to BLAS (measured in
// benchmarks/: the fused loop wins clearly at (64, 8) and loses at (784, 32)).
constexpr int64_t kFusedGramMaxWork = 1 << 15;

// Batch elements per parallel chunk so that each chunk does roughly this much arithmetic.
int64_t grain_for(int64_t work_per_element) {
  constexpr int64_t kChunkWork = 1 << 16;
  return std::max<int64_t>(1, kChunkWork / std::max<int64_t>(1, work_per_element));
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor> factor_cpu(const at::Tensor& J, double rtol) {
  const int64_t B = J.size(0);
  const int D = static_cast<int>(J.size(1));
  const int d = static_cast<int>(J.size(2));
  const bool fused = static_cast<int64_t>(D) * d * d <= kFusedGramMaxWork;
  at::Tensor L = fused ? at::zeros({B, d, d}, J.options()) : at::matmul(J.mT(), J).contiguous();
  at::Tensor out = at::empty({B}, J.options());
  at::Tensor perm = at::empty({B, d}, J.options().dtype(at::kLong));
  if (B == 0) return {out, L, perm};
  AT_DISPATCH_FLOATING_TYPES(J.scalar_type(), "mfkernels::gram_logdet (cpu)", [&] {
    int64_t* pp = perm.mutable_data_ptr<int64_t>();
    const scalar_t* Jp = J.const_data_ptr<scalar_t>();
    scalar_t* Lp = L.mutable_data_ptr<scalar_t>();
    scalar_t* op = out.mutable_data_ptr<scalar_t>();
    const scalar_t tol = static_cast<scalar_t>(rtol);
    const int64_t work = (fused ? int64_t(D) * d * d : 0) + int64_t(d) * d * d;
    at::parallel_for(0, B, grain_for(work), [&](int64_t b0, int64_t b1) {
      std::vector<scalar_t> Jt(fused ? static_cast<size_t>(D) * d : 0);
      for (int64_t b = b0; b < b1; ++b) {
        scalar_t* Lb = Lp + b * d * d;
        if (fused) {
          transpose_to_columns(Jp + b * D * d, d, D, d, Jt.data(), D);
          gram_from_columns(Jt.data(), D, D, d, Lb, d);
        }
        scalar_t half_logdet = 0;
        const FactorStatus s = cholesky_pivoted(Lb, d, d, tol, pp + b * d, &half_logdet);
        finalize_factor(Lb, d, d, s, 0, 1);
        op[b] = half_logdet_output(s, half_logdet);
      }
    });
  });
  return {out, L, perm};
}

at::Tensor jacobian_times_inverse_cpu(const at::Tensor& J, const at::Tensor& L, const at::Tensor& perm,
                                      const at::Tensor& scale) {
  const int64_t B = J.size(0);
  const int D = static_cast<int>(J.size(1));
  const int d = static_cast<int>(J.size(2));
  // Small products are fused into the per-element loop (a batched BLAS call of many tiny GEMMs costs
  // more than the arithmetic); large ones form W = scale G^{-1} here and multiply with BLAS.
  const bool fused = static_cast<int64_t>(D) * d * d <= kFusedGramMaxWork;
  at::Tensor W = at::empty({B, d, d}, J.options());
  at::Tensor out = fused ? at::empty({B, D, d}, J.options()) : at::Tensor();
  if (B == 0) return fused ? out : at::empty({B, D, d}, J.options());
  AT_DISPATCH_FLOATING_TYPES(J.scalar_type(), "mfkernels::gram_logdet_backward (cpu)", [&] {
    const scalar_t* Jp = J.const_data_ptr<scalar_t>();
    const scalar_t* Lp = L.const_data_ptr<scalar_t>();
    const int64_t* pp = perm.const_data_ptr<int64_t>();
    const scalar_t* sp = scale.const_data_ptr<scalar_t>();
    scalar_t* Wp = W.mutable_data_ptr<scalar_t>();
    scalar_t* op = fused ? out.mutable_data_ptr<scalar_t>() : nullptr;
    const int64_t work = int64_t(d) * d * d + (fused ? int64_t(D) * d * d : 0);
    at::parallel_for(0, B, grain_for(work), [&](int64_t b0, int64_t b1) {
      std::vector<scalar_t> X(static_cast<size_t>(d) * d);
      std::vector<scalar_t> Jt(fused ? static_cast<size_t>(D) * d : 0), Ot(Jt.size());
      for (int64_t b = b0; b < b1; ++b) {
        const scalar_t* Lb = Lp + b * d * d;
        scalar_t* Wb = Wp + b * d * d;
        if (factor_is_valid(Lb)) {
          lower_inverse_columns(Lb, d, d, X.data(), d, 0, 1);
          scaled_inverse_from_lower_inverse(X.data(), d, d, pp + b * d, sp[b], Wb, d, 0, 1);
        } else {
          fill_invalid_inverse(d, sp[b], Wb, d, 0, 1);
        }
        if (fused) {
          transpose_to_columns(Jp + b * D * d, d, D, d, Jt.data(), D);
          columns_times_symmetric(Jt.data(), D, D, d, Wb, d, Ot.data(), op + b * D * d, d);
        }
      }
    });
  });
  return fused ? out : at::matmul(J, W);
}

const Kernels kCpuKernels{factor_cpu, jacobian_times_inverse_cpu};

}  // namespace gram
}  // namespace mfk

TORCH_LIBRARY_IMPL(mfkernels, CPU, m) { mfk::gram::register_drivers<mfk::gram::kCpuKernels>(m); }

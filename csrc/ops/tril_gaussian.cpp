// Torch-facing layer of the (possibly noisy) Gaussian with lower-triangular scale, the spread-flow prior
// (paper 003, eqs 12-13): log N(z; 0, L L^T + sigma^2 I), L = tril(A) (the upper triangle is never read).
// Rows z are (N, D); A is (D, D); sigma is a 0-dim tensor.
//
// sigma > 0 ("noisy"): one Cholesky factor C of Sigma = L L^T + sigma^2 I per call, shared by the batch.
//   tril_gaussian_noisy_forward(z, A, sigma)  -> (log_prob (N,), C (D, D), w (N, D))    w = C^-1 z (rows)
//   tril_gaussian_noisy_backward(grad, A, sigma, C, w, sigma_grad=True) -> (grad_z, grad_A, grad_sigma)
//       (sigma_grad=False: grad_sigma is returned as 0 and tr(Sigma^-1), an extra D^3/6 substitution, is skipped)
// sigma = 0, L of full rank ("triangular"): a triangular solve with L itself, no factorisation at all.
//   tril_gaussian_triangular_forward(z, A)    -> (log_prob (N,), w (N, D))              w = L^-1 z (rows)
//   tril_gaussian_triangular_backward(grad, A, w) -> (grad_z, grad_A)
//
// Gradients with alpha = Sigma^-1 z per row, g the incoming gradient, G = sum g (analytic, no autograd
// through a factorisation): d/dz = -g alpha; d/dSigma = 1/2 (sum_n g_n alpha_n alpha_n^T - G Sigma^-1) =: M / 2,
// so d/dL = tril(M L) = tril(alpha^T (g alpha L)) - G tril(C^-T C^-1 L) (never Sigma^-1 itself),
// d/dsigma = sigma tr(M). In the triangular case alpha = L^-T w, L^T alpha = w and
// d log|det L| / dL = diag(1 / L_ii): d/dL = tril(sum_n g_n alpha_n w_n^T) - G diag(1 / L_ii), O(N D^2).
// Tangents (forward mode) per row, dL = tril(A_dot): d log p = -alpha^T dz + alpha^T dL L^T alpha - tr(L^T Sigma^-1 dL)
// + sigma dsigma (|alpha|^2 - tr Sigma^-1) (noisy); -alpha^T dz + alpha^T dL w - sum dL_ii / L_ii (triangular):
//   tril_gaussian_noisy_jvp(z_dot, A_dot, sigma_dot, A, sigma, C, w) -> log_prob_dot (N,)
//   tril_gaussian_triangular_jvp(z_dot, A_dot, A, w) -> log_prob_dot (N,)
// The work is LAPACK/BLAS (potrf, trsm, gemm) through ATen, so one device-generic driver serves CPU and CUDA.
#include "checks.h"

#include <ATen/ATen.h>
#include <c10/core/SymInt.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <tuple>
#include <vector>

namespace mfk {
namespace tril_gaussian {
namespace {

constexpr const char* kNoisyForward = "mfkernels.tril_gaussian_noisy_forward";
constexpr const char* kNoisyBackward = "mfkernels.tril_gaussian_noisy_backward";
constexpr const char* kTriForward = "mfkernels.tril_gaussian_triangular_forward";
constexpr const char* kTriBackward = "mfkernels.tril_gaussian_triangular_backward";
constexpr const char* kNoisyJvp = "mfkernels.tril_gaussian_noisy_jvp";
constexpr const char* kTriJvp = "mfkernels.tril_gaussian_triangular_jvp";

// z (N, D) rows and A (D, D), one dtype and device; `others` must share them too.
void check_rows_and_scale(const Tensor& z, const Tensor& A, const char* op,
                          std::initializer_list<std::pair<const Tensor*, const char*>> others = {}) {
  check_floating(z, op, "z");
  TORCH_CHECK(z.dim() == 2, op, ": argument 'z' must be rows (N, D), got ", z.sym_sizes());
  check_floating(A, op, "A");
  check_same_device_dtype(z, "z", A, op, "A");
  TORCH_CHECK(A.dim() == 2 && A.sym_size(0) == z.sym_size(1) && A.sym_size(1) == z.sym_size(1), op,
              ": argument 'A' must be square (D, D) with D = ", z.sym_size(1), " (the last dim of 'z'), got ",
              A.sym_sizes());
  for (const auto& [t, name] : others) {
    check_floating(*t, op, name);
    check_same_device_dtype(z, "z", *t, op, name);
  }
}

void check_per_row(const Tensor& z, const Tensor& t, const char* name, const char* op) {
  check_floating(t, op, name);
  check_same_device_dtype(z, "z", t, op, name);
  TORCH_CHECK(t.dim() == 1 && t.sym_size(0) == z.sym_size(0), op, ": argument '", name, "' must have shape (N,) = (",
              z.sym_size(0), ",), got ", t.sym_sizes());
}

double half_log_2pi_times(int64_t D) { return 0.5 * static_cast<double>(D) * std::log(2 * M_PI); }

// w = T^-1 z^T, returned as rows (N, D), for lower-triangular T.
Tensor solve_rows(const Tensor& T, const Tensor& z) {
  return at::linalg_solve_triangular(T, z.t(), /*upper=*/false).t().contiguous();
}

// alpha = T^-T w^T as rows.
Tensor solve_transposed_rows(const Tensor& T, const Tensor& w) {
  return at::linalg_solve_triangular(T.t(), w.t(), /*upper=*/true).t().contiguous();
}

// Both products below have a lower-triangular factor or result, so block row i (rows r0..r1) only needs
// columns < r1: at D = 1024 in blocks of 128 that is 40% of a dense mm (lower_gram); the backward's
// products keep to the lower triangle the same way.
constexpr int64_t kBlockRows = 128;

// The lower triangle of T T^T + diag(shift) for lower-triangular T (the upper one is left as the block
// products leave it: the Cholesky below reads the lower triangle only, so no symmetrising copies).
Tensor lower_gram(const Tensor& T, const Tensor& shift) {
  const int64_t D = T.size(0);
  if (D < 2 * kBlockRows) return at::addmm(at::diag_embed(shift), T, T.t());
  // not zero-filled: every lower-triangle entry is written by a block product; the rest is never read
  Tensor out = at::empty({D, D}, T.options());
  for (int64_t r0 = 0; r0 < D; r0 += kBlockRows) {
    const int64_t r1 = std::min(D, r0 + kBlockRows);
    Tensor leading = T.slice(0, 0, r1).slice(1, 0, r1);
    Tensor block = out.slice(0, r0, r1).slice(1, 0, r1);
    at::mm_out(block, leading.slice(0, r0, r1), leading.t());
  }
  out.diagonal().add_(shift);
  return out;
}

// Lower Cholesky factor C of a matrix whose lower triangle is given, row-major without a transposing
// copy: LAPACK writes column-major, so factor the transpose view as upper (same lower triangle read)
// and C = U^T is then row-major as it comes.
std::tuple<Tensor, Tensor> lower_cholesky_row_major(const Tensor& cov) {
  auto [U, info] = at::linalg_cholesky_ex(cov.t(), /*upper=*/true);
  Tensor C = U.t();
  return {C.is_contiguous() ? C : C.contiguous(), info};
}

// Inverse of a small lower-triangular block, so the substitutions around it become GEMMs.
Tensor lower_block_inverse(const Tensor& T) {
  return at::linalg_solve_triangular(T, at::eye(T.size(0), T.options()), /*upper=*/false);
}

// Lower Cholesky factor of S (row-major, lower triangle valid) in S's own storage: right-looking by
// blocks of kBlockRows, b x b factorisations through ATen and everything else GEMMs (the panel through
// the inverted diagonal block, the trailing update on and below the diagonal blocks only). It avoids
// LAPACK's column-major copy and ATen's zeroing pass over the other triangle, which together cost about
// as much as potrf itself at D = 1024. Returns (C, info), info > 0 where a block failed to factor.
std::tuple<Tensor, Tensor> blocked_cholesky_(Tensor& S) {
  const int64_t D = S.size(0);
  if (D < 2 * kBlockRows) return lower_cholesky_row_major(S);
  Tensor info = at::zeros({}, S.options().dtype(at::kInt));
  for (int64_t k0 = 0; k0 < D; k0 += kBlockRows) {
    const int64_t k1 = std::min(D, k0 + kBlockRows);
    Tensor diagonal = S.slice(0, k0, k1).slice(1, k0, k1);
    auto [factor, block_info] = at::linalg_cholesky_ex(diagonal);
    info = at::maximum(info, block_info);
    diagonal.copy_(factor);
    if (k1 == D) break;
    Tensor inverse = lower_block_inverse(factor);
    Tensor panel = S.slice(0, k1, D).slice(1, k0, k1);
    Tensor solved = at::mm(panel, inverse.t());  // S_ik C_kk^-T
    panel.copy_(solved);
    for (int64_t i0 = k1; i0 < D; i0 += kBlockRows) {
      const int64_t i1 = std::min(D, i0 + kBlockRows);
      S.slice(0, i0, i1).slice(1, k1, i1).addmm_(solved.slice(0, i0 - k1, i1 - k1), solved.slice(0, 0, i1 - k1).t(),
                                                 /*beta=*/1, /*alpha=*/-1);
    }
  }
  return {S.tril_(), info};
}

// Inverses of C's kBlockRows x kBlockRows diagonal blocks, so each substitution step below is GEMMs.
std::vector<Tensor> diagonal_block_inverses(const Tensor& C) {
  const int64_t D = C.size(0);
  std::vector<Tensor> inverses;
  for (int64_t i0 = 0; i0 < D; i0 += kBlockRows) {
    const int64_t i1 = std::min(D, i0 + kBlockRows);
    inverses.push_back(lower_block_inverse(C.slice(0, i0, i1).slice(1, i0, i1)));
  }
  return inverses;
}

// Y = C^-1 T for lower-triangular C and T (Y is lower triangular too): forward substitution by block
// rows, one GEMM each (its zero upper blocks included) and one with the inverted diagonal block.
Tensor lower_solve_lower(const Tensor& C, const Tensor& T, const std::vector<Tensor>& diagonal_inverses) {
  const int64_t D = T.size(0);
  Tensor Y = at::zeros_like(T, at::MemoryFormat::Contiguous);  // its upper triangle is read as zeros
  for (int64_t i0 = 0, i = 0; i0 < D; i0 += kBlockRows, ++i) {
    const int64_t i1 = std::min(D, i0 + kBlockRows);
    Tensor rhs = T.slice(0, i0, i1).slice(1, 0, i1);
    if (i0 > 0) rhs = at::addmm(rhs, C.slice(0, i0, i1).slice(1, 0, i0), Y.slice(0, 0, i0).slice(1, 0, i1), 1, -1);
    Tensor block = Y.slice(0, i0, i1).slice(1, 0, i1);
    at::mm_out(block, diagonal_inverses[i], rhs);
  }
  return Y;
}

// tril(Sigma^-1 T) = tril(C^-T C^-1 T) for lower-triangular T, Sigma = C C^T, without forming Sigma^-1:
// Y = C^-1 T (lower_solve_lower), then tril(C^-T Y) needs only the lower parts of the rows below (back
// substitution by block rows, D^3/6 multiply-adds). About half the flops of cholesky_inverse +
// tril(Sigma^-1 T), and all in GEMMs.
Tensor lower_precision_product(const Tensor& C, const Tensor& T, const std::vector<Tensor>& diagonal_inverses) {
  const int64_t D = T.size(0);
  if (D < 2 * kBlockRows) {
    Tensor Y = at::linalg_solve_triangular(C, T, /*upper=*/false);
    return at::linalg_solve_triangular(C.t(), Y, /*upper=*/true).tril_();
  }
  Tensor Y = lower_solve_lower(C, T, diagonal_inverses);
  Tensor Z = at::empty_like(T, at::MemoryFormat::Contiguous);  // written on and below the diagonal blocks
  const int64_t nb = static_cast<int64_t>(diagonal_inverses.size());
  for (int64_t i = nb - 1; i >= 0; --i) {
    const int64_t i0 = i * kBlockRows, i1 = std::min(D, i0 + kBlockRows);
    Tensor rhs = Y.slice(0, i0, i1).slice(1, 0, i1);
    if (i1 < D) rhs = at::addmm(rhs, C.slice(0, i1, D).slice(1, i0, i1).t(), Z.slice(0, i1, D).slice(1, 0, i1), 1, -1);
    Tensor block = Z.slice(0, i0, i1).slice(1, 0, i1);
    at::mm_out(block, diagonal_inverses[i].t(), rhs);
  }
  return Z.tril_();
}

// tr(Sigma^-1) = |C^-1|_F^2, C^-1 by the same block substitution (cholesky_inverse costs ~3x more here).
Tensor precision_trace(const Tensor& C, const std::vector<Tensor>& diagonal_inverses) {
  const int64_t D = C.size(0);
  if (D < 2 * kBlockRows) return at::cholesky_inverse(C).diagonal().sum();
  return lower_solve_lower(C, at::eye(D, C.options()), diagonal_inverses).square().sum();
}

// tril(R^T X) for R, X rows (N, D): only the block columns on and below the diagonal.
Tensor lower_cross(const Tensor& R, const Tensor& X) {
  const int64_t D = R.size(1);
  if (D < 2 * kBlockRows) return at::mm(R.t(), X).tril_();
  Tensor out = at::empty({D, D}, R.options());
  for (int64_t i0 = 0; i0 < D; i0 += kBlockRows) {
    const int64_t i1 = std::min(D, i0 + kBlockRows);
    Tensor block = out.slice(0, i0, i1).slice(1, 0, i1);
    at::mm_out(block, R.slice(1, i0, i1).t(), X.slice(1, 0, i1));
  }
  return out.tril_();
}

// R T for rows R (N, D) and lower-triangular T: column block j only meets rows >= j0 of T.
Tensor rows_times_lower(const Tensor& R, const Tensor& T) {
  const int64_t D = T.size(0);
  if (D < 2 * kBlockRows) return at::mm(R, T);
  Tensor out = at::empty({R.size(0), D}, R.options());
  for (int64_t j0 = 0; j0 < D; j0 += kBlockRows) {
    const int64_t j1 = std::min(D, j0 + kBlockRows);
    Tensor block = out.slice(1, j0, j1);
    at::mm_out(block, R.slice(1, j0, D), T.slice(0, j0, D).slice(1, j0, j1));
  }
  return out;
}

std::tuple<Tensor, Tensor, Tensor> noisy_forward(const Tensor& z, const Tensor& A, const Tensor& sigma) {
  check_rows_and_scale(z, A, kNoisyForward, {{&sigma, "sigma"}});
  TORCH_CHECK(sigma.dim() == 0, kNoisyForward, ": argument 'sigma' must be a 0-dim tensor, got ", sigma.sym_sizes());
  const int64_t D = z.size(1);
  Tensor L = at::tril(A);
  Tensor cov = lower_gram(L, sigma.square().expand({D}));
  auto [C, info] = blocked_cholesky_(cov);
  Tensor w = solve_rows(C, z);
  Tensor log_prob = -0.5 * w.square().sum(1) - C.diagonal().log().sum() - half_log_2pi_times(D);
  // Sigma >= sigma^2 I always factors; only non-finite A or sigma get here: NaN, not a number.
  log_prob = at::where(info == 0, log_prob, at::full({}, NAN, log_prob.options()));
  return {log_prob, C, w};
}

std::tuple<Tensor, Tensor, Tensor> noisy_backward(const Tensor& grad, const Tensor& A, const Tensor& sigma,
                                                  const Tensor& C, const Tensor& w, bool sigma_grad) {
  check_rows_and_scale(w, A, kNoisyBackward, {{&sigma, "sigma"}, {&C, "C"}});
  check_per_row(w, grad, "grad", kNoisyBackward);
  check_shape(C, "C", A.sym_sizes(), "A's shape", kNoisyBackward);
  Tensor alpha = solve_transposed_rows(C, w);
  Tensor G = grad.sum();
  Tensor L = at::tril(A);
  // d/dL = tril(M L), M = sum_n g_n alpha_n alpha_n^T - G Sigma^-1, as two lower-triangular pieces:
  // tril(alpha^T (g alpha L)) and tril(Sigma^-1 L) (no explicit Sigma^-1; see lower_precision_product)
  Tensor g_alpha = alpha * grad.unsqueeze(1);
  Tensor grad_A = lower_cross(alpha, rows_times_lower(g_alpha, L));
  const int64_t D = L.size(0);
  const std::vector<Tensor> diagonal_inverses = D < 2 * kBlockRows ? std::vector<Tensor>{} : diagonal_block_inverses(C);
  grad_A.sub_(lower_precision_product(C, L, diagonal_inverses).mul_(G));
  // d/dsigma = sigma tr(M) needs tr(Sigma^-1), another substitution: only when sigma wants a gradient
  Tensor grad_sigma = sigma_grad ? sigma * ((g_alpha * alpha).sum() - G * precision_trace(C, diagonal_inverses))
                                 : at::zeros_like(sigma);
  return {alpha.mul_(grad.neg().unsqueeze(1)), grad_A, grad_sigma};
}

std::tuple<Tensor, Tensor> triangular_forward(const Tensor& z, const Tensor& A) {
  check_rows_and_scale(z, A, kTriForward);
  const int64_t D = z.size(1);
  Tensor L = at::tril(A);
  Tensor w = solve_rows(L, z);
  Tensor log_prob = -0.5 * w.square().sum(1) - L.diagonal().abs().log().sum() - half_log_2pi_times(D);
  return {log_prob, w};
}

std::tuple<Tensor, Tensor> triangular_backward(const Tensor& grad, const Tensor& A, const Tensor& w) {
  check_rows_and_scale(w, A, kTriBackward);
  check_per_row(w, grad, "grad", kTriBackward);
  Tensor L = at::tril(A);
  Tensor alpha = solve_transposed_rows(L, w);
  Tensor grad_A = at::tril(at::mm(alpha.t(), w * grad.unsqueeze(1)));
  grad_A.diagonal().sub_(L.diagonal().reciprocal() * grad.sum());
  return {alpha.mul_(grad.neg().unsqueeze(1)), grad_A};
}

Tensor noisy_jvp(const Tensor& z_dot, const Tensor& A_dot, const Tensor& sigma_dot, const Tensor& A,
                 const Tensor& sigma, const Tensor& C, const Tensor& w) {
  check_rows_and_scale(w, A, kNoisyJvp, {{&z_dot, "z_dot"}, {&A_dot, "A_dot"}, {&sigma, "sigma"}, {&sigma_dot, "sigma_dot"}, {&C, "C"}});
  check_shape(z_dot, "z_dot", w.sym_sizes(), "z's shape (N, D)", kNoisyJvp);
  check_shape(A_dot, "A_dot", A.sym_sizes(), "A's shape (D, D)", kNoisyJvp);
  Tensor L = at::tril(A), dL = at::tril(A_dot);
  Tensor alpha = solve_transposed_rows(C, w);
  Tensor precision = at::cholesky_inverse(C);
  Tensor shared = (at::mm(precision, L) * dL).sum() + sigma * sigma_dot * precision.diagonal().sum();
  Tensor per_row = (at::mm(alpha, dL) * at::mm(alpha, L)).sum(1) + sigma * sigma_dot * alpha.square().sum(1);
  return per_row - (alpha * z_dot).sum(1) - shared;
}

Tensor triangular_jvp(const Tensor& z_dot, const Tensor& A_dot, const Tensor& A, const Tensor& w) {
  check_rows_and_scale(w, A, kTriJvp, {{&z_dot, "z_dot"}, {&A_dot, "A_dot"}});
  check_shape(z_dot, "z_dot", w.sym_sizes(), "z's shape (N, D)", kTriJvp);
  check_shape(A_dot, "A_dot", A.sym_sizes(), "A's shape (D, D)", kTriJvp);
  Tensor L = at::tril(A), dL = at::tril(A_dot);
  Tensor alpha = solve_transposed_rows(L, w);
  return (alpha * (at::mm(w, dL.t()) - z_dot)).sum(1) - (dL.diagonal() / L.diagonal()).sum();
}

// ---- Meta kernels: shapes only ----

std::tuple<Tensor, Tensor, Tensor> noisy_forward_meta(const Tensor& z, const Tensor& A, const Tensor& sigma) {
  check_rows_and_scale(z, A, kNoisyForward, {{&sigma, "sigma"}});
  return {at::empty_symint({z.sym_size(0)}, z.options()), at::empty_symint(A.sym_sizes(), A.options()),
          at::empty_symint(z.sym_sizes(), z.options())};
}

std::tuple<Tensor, Tensor, Tensor> noisy_backward_meta(const Tensor& grad, const Tensor& A, const Tensor& sigma,
                                                       const Tensor& C, const Tensor& w, bool sigma_grad) {
  check_rows_and_scale(w, A, kNoisyBackward, {{&sigma, "sigma"}, {&C, "C"}});
  return {at::empty_symint(w.sym_sizes(), w.options()), at::empty_symint(A.sym_sizes(), A.options()),
          at::empty_symint({}, sigma.options())};
}

std::tuple<Tensor, Tensor> triangular_forward_meta(const Tensor& z, const Tensor& A) {
  check_rows_and_scale(z, A, kTriForward);
  return {at::empty_symint({z.sym_size(0)}, z.options()), at::empty_symint(z.sym_sizes(), z.options())};
}

std::tuple<Tensor, Tensor> triangular_backward_meta(const Tensor& grad, const Tensor& A, const Tensor& w) {
  check_rows_and_scale(w, A, kTriBackward);
  return {at::empty_symint(w.sym_sizes(), w.options()), at::empty_symint(A.sym_sizes(), A.options())};
}

Tensor noisy_jvp_meta(const Tensor& z_dot, const Tensor& A_dot, const Tensor& sigma_dot, const Tensor& A,
                      const Tensor& sigma, const Tensor& C, const Tensor& w) {
  check_rows_and_scale(w, A, kNoisyJvp);
  return at::empty_symint({w.sym_size(0)}, w.options());
}

Tensor triangular_jvp_meta(const Tensor& z_dot, const Tensor& A_dot, const Tensor& A, const Tensor& w) {
  check_rows_and_scale(w, A, kTriJvp);
  return at::empty_symint({w.sym_size(0)}, w.options());
}

}  // namespace
}  // namespace tril_gaussian
}  // namespace mfk

TORCH_LIBRARY_FRAGMENT(mfkernels, m) {
  m.def("tril_gaussian_noisy_forward(Tensor z, Tensor A, Tensor sigma) -> (Tensor log_prob, Tensor C, Tensor w)");
  m.def("tril_gaussian_noisy_backward(Tensor grad, Tensor A, Tensor sigma, Tensor C, Tensor w, bool sigma_grad=True) -> "
        "(Tensor grad_z, Tensor grad_A, Tensor grad_sigma)");
  m.def("tril_gaussian_triangular_forward(Tensor z, Tensor A) -> (Tensor log_prob, Tensor w)");
  m.def("tril_gaussian_triangular_backward(Tensor grad, Tensor A, Tensor w) -> (Tensor grad_z, Tensor grad_A)");
  m.def("tril_gaussian_noisy_jvp(Tensor z_dot, Tensor A_dot, Tensor sigma_dot, Tensor A, Tensor sigma, Tensor C, "
        "Tensor w) -> Tensor log_prob_dot");
  m.def("tril_gaussian_triangular_jvp(Tensor z_dot, Tensor A_dot, Tensor A, Tensor w) -> Tensor log_prob_dot");
}

#define MFK_REGISTER_TRIL_GAUSSIAN(m)                                                   \
  m.impl("tril_gaussian_noisy_forward", mfk::tril_gaussian::noisy_forward);             \
  m.impl("tril_gaussian_noisy_backward", mfk::tril_gaussian::noisy_backward);           \
  m.impl("tril_gaussian_triangular_forward", mfk::tril_gaussian::triangular_forward);   \
  m.impl("tril_gaussian_triangular_backward", mfk::tril_gaussian::triangular_backward);   \
  m.impl("tril_gaussian_noisy_jvp", mfk::tril_gaussian::noisy_jvp);                     \
  m.impl("tril_gaussian_triangular_jvp", mfk::tril_gaussian::triangular_jvp);

// One device-generic driver (LAPACK/BLAS on CPU, cuSOLVER/cuBLAS on GPU).
TORCH_LIBRARY_IMPL(mfkernels, CPU, m) { MFK_REGISTER_TRIL_GAUSSIAN(m) }

#ifdef MFK_WITH_CUDA
TORCH_LIBRARY_IMPL(mfkernels, CUDA, m) { MFK_REGISTER_TRIL_GAUSSIAN(m) }
#endif

TORCH_LIBRARY_IMPL(mfkernels, Meta, m) {
  m.impl("tril_gaussian_noisy_forward", mfk::tril_gaussian::noisy_forward_meta);
  m.impl("tril_gaussian_noisy_backward", mfk::tril_gaussian::noisy_backward_meta);
  m.impl("tril_gaussian_triangular_forward", mfk::tril_gaussian::triangular_forward_meta);
  m.impl("tril_gaussian_triangular_backward", mfk::tril_gaussian::triangular_backward_meta);
  m.impl("tril_gaussian_noisy_jvp", mfk::tril_gaussian::noisy_jvp_meta);
  m.impl("tril_gaussian_triangular_jvp", mfk::tril_gaussian::triangular_jvp_meta);
}

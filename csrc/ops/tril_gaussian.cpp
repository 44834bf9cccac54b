// Torch-facing layer of the (possibly noisy) Gaussian with lower-triangular scale, the spread-flow prior
// (paper 003, eqs 12-13): log N(z; 0, L L^T + sigma^2 I), L = tril(A) (the upper triangle is never read).
// Rows z are (N, D); A is (D, D); sigma is a 0-dim tensor.
//
// sigma > 0 ("noisy"): one Cholesky factor C of Sigma = L L^T + sigma^2 I per call, shared by the batch.
//   tril_gaussian_noisy_forward(z, A, sigma)  -> (log_prob (N,), C (D, D), w (N, D), C_block_inv (nb, 128, 128))
//       w = C^-1 z (rows); C_block_inv: the inverses of C's 128 x 128 diagonal blocks (nb = ceil(D / 128), the
//       last padded with the identity), which every substitution here runs on, kept for the backward
//   tril_gaussian_noisy_backward(grad, A, sigma, C, w, C_block_inv, sigma_grad=True) -> (grad_z, grad_A, grad_sigma)
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
// The work is LAPACK/BLAS (potrf, trsm, gemm) through ATen, so the drivers are device-generic: cpu/ and cuda/
// register the same ones (ops/tril_gaussian.h).
#include "tril_gaussian.h"
#include "checks.h"
#include "../math/tril_gaussian.h"

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
  check_floating(op, "z", z);
  TORCH_CHECK(z.dim() == 2, op, ": argument 'z' must be rows (N, D), got ", z.sym_sizes());
  check_floating(op, "A", A);
  check_same_device_dtype(op, "A", A, "z", z);
  TORCH_CHECK(A.dim() == 2 && A.sym_size(0) == z.sym_size(1) && A.sym_size(1) == z.sym_size(1), op,
              ": argument 'A' must be square (D, D) with D = ", z.sym_size(1), " (the last dim of 'z'), got ",
              A.sym_sizes());
  for (const auto& [t, name] : others) {
    check_floating(op, name, *t);
    check_same_device_dtype(op, name, *t, "z", z);
  }
}

void check_per_row(const Tensor& z, const Tensor& t, const char* name, const char* op) {
  check_floating(op, name, t);
  check_same_device_dtype(op, name, t, "z", z);
  TORCH_CHECK(t.dim() == 1 && t.sym_size(0) == z.sym_size(0), op, ": argument '", name, "' must have shape (N,) = (",
              z.sym_size(0), ",), got ", t.sym_sizes());
}

// w = T^-1 z^T, returned as rows (N, D), for lower-triangular T.
Tensor solve_rows(const Tensor& T, const Tensor& z) {
  return at::linalg_solve_triangular(T, z.t(), /*upper=*/false).t().contiguous();
}

// alpha = T^-T w^T as rows.
Tensor solve_transposed_rows(const Tensor& T, const Tensor& w) {
  return at::linalg_solve_triangular(T.t(), w.t(), /*upper=*/true).t().contiguous();
}

// ---- Blocked dense linear algebra ----
// Everything below runs in kBlockRows x kBlockRows blocks so that the work is GEMMs that skip the zero
// blocks of the triangular operands (MKL's potrf / trsm reach about a third of its GEMM rate at D = 1024
// on the 2-core CI machine, and far less on 128 x 128 blocks). A is read through its lower triangle
// only: the blocks strictly below the diagonal are used as they are, the diagonal blocks through small
// tril copies, so no D x D copy of tril(A) is made (fresh D x D buffers cost page faults: about 1 ms
// each on that machine).
// Rows (or columns) [begin, end) of block i.
std::pair<int64_t, int64_t> block_range(int64_t i, int64_t D) {
  return {i * kBlockRows, std::min(D, (i + 1) * kBlockRows)};
}

Tensor block(const Tensor& T, int64_t r0, int64_t r1, int64_t c0, int64_t c1) {
  return T.slice(0, r0, r1).slice(1, c0, c1);
}

// tril of A's diagonal blocks: the only places where L = tril(A) differs from A block-wise.
std::vector<Tensor> lower_diagonal_blocks(const Tensor& A) {
  const int64_t D = A.size(0);
  std::vector<Tensor> blocks;
  for (int64_t i = 0; i < block_count(D); ++i) {
    auto [i0, i1] = block_range(i, D);
    blocks.push_back(at::tril(block(A, i0, i1, i0, i1)));
  }
  return blocks;
}

// The lower triangle of L L^T + diag(shift), L = tril(A), by block columns: column block j of L L^T is
// L[j:, :j1] L[j, :j1]^T, split into the strictly lower part of A (columns < j0) and the diagonal block.
// The blocks above the diagonal are left unwritten: the Cholesky below never reads them.
Tensor lower_gram(const Tensor& A, const std::vector<Tensor>& diagonal, const Tensor& shift) {
  const int64_t D = A.size(0);
  Tensor out = at::empty({D, D}, A.options());
  for (int64_t j = 0; j < block_count(D); ++j) {
    auto [j0, j1] = block_range(j, D);
    Tensor top = block(out, j0, j1, j0, j1), below = block(out, j1, D, j0, j1);
    if (j0 > 0) {
      Tensor column = block(out, j0, D, j0, j1);
      at::mm_out(column, block(A, j0, D, 0, j0), block(A, j0, j1, 0, j0).t());
      top.addmm_(diagonal[j], diagonal[j].t());
      if (j1 < D) below.addmm_(block(A, j1, D, j0, j1), diagonal[j].t());
    } else {
      at::mm_out(top, diagonal[j], diagonal[j].t());
      if (j1 < D) at::mm_out(below, block(A, j1, D, j0, j1), diagonal[j].t());
    }
  }
  out.diagonal().add_(shift);
  return out;
}

// Inverse of a small lower-triangular block, so the substitutions around it become GEMMs.
Tensor lower_block_inverse(const Tensor& T) {
  return at::linalg_solve_triangular(T, at::eye(T.size(0), T.options()), /*upper=*/false);
}

// The inverted diagonal blocks of C as kBlockRows x kBlockRows tiles (nb, b, b); a partial last block
// sits in the top-left corner of its tile, whose rest is the identity.
Tensor allocate_block_inverses(int64_t D, const at::TensorOptions& options) {
  const int64_t nb = block_count(D), last = D - (nb - 1) * kBlockRows;
  Tensor tiles = at::zeros({nb, kBlockRows, kBlockRows}, options);
  if (nb > 0 && last < kBlockRows) tiles[nb - 1].diagonal().slice(0, last, kBlockRows).fill_(1);
  return tiles;
}

// Block i's inverse out of the tiles, for D = C's size.
Tensor block_inverse(const Tensor& tiles, int64_t i, int64_t D) {
  auto [i0, i1] = block_range(i, D);
  return tiles[i].slice(0, 0, i1 - i0).slice(1, 0, i1 - i0);
}

// Lower Cholesky factor of S (row-major, lower triangle valid) in S's own storage: right-looking by
// blocks, b x b factorisations through ATen and everything else GEMMs (the panel through the inverted
// diagonal block, the trailing update on and below the diagonal blocks only). Returns info (> 0 where a
// block failed to factor); `inverses` (allocate_block_inverses) receives the inverted diagonal blocks.
Tensor blocked_cholesky_(Tensor& S, Tensor& inverses) {
  const int64_t D = S.size(0);
  Tensor info = at::zeros({}, S.options().dtype(at::kInt));
  Tensor scratch = at::empty({std::max<int64_t>(D - kBlockRows, 0), kBlockRows}, S.options());  // one panel buffer
  for (int64_t k = 0; k < block_count(D); ++k) {
    auto [k0, k1] = block_range(k, D);
    Tensor diagonal = block(S, k0, k1, k0, k1);
    auto [factor, block_info] = at::linalg_cholesky_ex(diagonal);
    info = at::maximum(info, block_info);
    diagonal.copy_(factor);
    Tensor inverse = block_inverse(inverses, k, D);
    inverse.copy_(lower_block_inverse(factor));
    if (k1 == D) break;
    Tensor panel = block(S, k1, D, k0, k1);
    Tensor solved = scratch.slice(0, 0, D - k1);
    at::mm_out(solved, panel, inverse.t());  // S_ik C_kk^-T
    panel.copy_(solved);
    for (int64_t i = k + 1; i < block_count(D); ++i) {
      auto [i0, i1] = block_range(i, D);
      block(S, i0, i1, k1, i1).addmm_(solved.slice(0, i0 - k1, i1 - k1), solved.slice(0, 0, i1 - k1).t(), 1, -1);
    }
  }
  for (int64_t i = 0; i < block_count(D); ++i) {  // the blocks above the diagonal were never written
    auto [i0, i1] = block_range(i, D);
    S.slice(0, i0, i1).slice(1, i1, D).zero_();
    block(S, i0, i1, i0, i1).tril_();
  }
  return info;
}

// Rows W = Z C^-T (w_n = C^-1 z_n) by forward substitution over block columns.
Tensor solve_rows_blocked(const Tensor& C, const Tensor& Z, const Tensor& inverses) {
  const int64_t D = C.size(0);
  Tensor W = at::empty_like(Z, at::MemoryFormat::Contiguous);
  for (int64_t i = 0; i < block_count(D); ++i) {
    auto [i0, i1] = block_range(i, D);
    Tensor rhs = Z.slice(1, i0, i1);
    if (i0 > 0) rhs = at::addmm(rhs, W.slice(1, 0, i0), block(C, i0, i1, 0, i0).t(), 1, -1);
    Tensor out = W.slice(1, i0, i1);
    at::mm_out(out, rhs, block_inverse(inverses, i, D).t());
  }
  return W;
}

// Rows alpha_n = C^-T w_n (as rows: Alpha = W C^-1) by back substitution over block columns.
Tensor solve_transposed_rows_blocked(const Tensor& C, const Tensor& W, const Tensor& inverses) {
  const int64_t D = C.size(0);
  Tensor alpha = at::empty_like(W, at::MemoryFormat::Contiguous);
  for (int64_t i = block_count(D) - 1; i >= 0; --i) {
    auto [i0, i1] = block_range(i, D);
    Tensor rhs = W.slice(1, i0, i1);
    if (i1 < D) rhs = at::addmm(rhs, alpha.slice(1, i1, D), block(C, i1, D, i0, i1), 1, -1);
    Tensor out = alpha.slice(1, i0, i1);
    at::mm_out(out, rhs, block_inverse(inverses, i, D));
  }
  return alpha;
}

// R <- C^-1 R in place for lower-triangular R (the result is lower triangular too), right-looking: block
// row k is finished by its inverted diagonal block, then removed from the rows below (one GEMM over the
// columns it can touch, < k1). `scratch` is a (kBlockRows, D) buffer.
void forward_substitute_lower_(const Tensor& C, Tensor& R, const Tensor& inverses, Tensor& scratch) {
  const int64_t D = C.size(0);
  for (int64_t k = 0; k < block_count(D); ++k) {
    auto [k0, k1] = block_range(k, D);
    Tensor row = block(R, k0, k1, 0, k1), finished = block(scratch, 0, k1 - k0, 0, k1);
    at::mm_out(finished, block_inverse(inverses, k, D), row);
    row.copy_(finished);
    if (k1 < D) block(R, k1, D, 0, k1).addmm_(block(C, k1, D, k0, k1), row, 1, -1);
  }
}

// Y <- tril(C^-T Y) in place on and below the diagonal blocks (the strictly upper blocks are not
// touched): back substitution by block rows, each needing only the lower parts of the rows below.
void back_substitute_lower_(const Tensor& C, Tensor& Y, const Tensor& inverses, Tensor& scratch) {
  const int64_t D = C.size(0);
  for (int64_t i = block_count(D) - 1; i >= 0; --i) {
    auto [i0, i1] = block_range(i, D);
    Tensor row = block(Y, i0, i1, 0, i1), finished = block(scratch, 0, i1 - i0, 0, i1);
    if (i1 < D) row.addmm_(block(C, i1, D, i0, i1).t(), block(Y, i1, D, 0, i1), 1, -1);
    at::mm_out(finished, block_inverse(inverses, i, D).t(), row);
    row.copy_(finished);
  }
}

// tr(Sigma^-1) = |C^-1|_F^2, C^-1 by the same forward substitution (cholesky_inverse costs ~3x more here).
Tensor precision_trace(const Tensor& C, const Tensor& inverses, Tensor& scratch) {
  Tensor inverse = at::eye(C.size(0), C.options());
  forward_substitute_lower_(C, inverse, inverses, scratch);
  return inverse.square().sum();
}

// R L for rows R (N, D), L = tril(A): column block j only meets rows >= j0 of L.
Tensor rows_times_lower(const Tensor& R, const Tensor& A, const std::vector<Tensor>& diagonal) {
  const int64_t D = A.size(0);
  Tensor out = at::empty({R.size(0), D}, R.options());
  for (int64_t j = 0; j < block_count(D); ++j) {
    auto [j0, j1] = block_range(j, D);
    Tensor column = out.slice(1, j0, j1);
    at::mm_out(column, R.slice(1, j0, j1), diagonal[j]);
    if (j1 < D) column.addmm_(R.slice(1, j1, D), block(A, j1, D, j0, j1));
  }
  return out;
}

void check_block_inverses(const Tensor& w, const Tensor& C_block_inv, const char* op) {
  check_floating(op, "C_block_inv", C_block_inv);
  check_same_device_dtype(op, "C_block_inv", C_block_inv, "z", w);
  const c10::SymInt D = w.sym_size(1);
  const std::vector<c10::SymInt> expected{(D + kBlockRows - 1) / kBlockRows, kBlockRows, kBlockRows};
  check_shape(op, "C_block_inv", C_block_inv, expected, "(ceil(D / 128), 128, 128), as the forward returns it");
}

}  // namespace

// ---- The ops ----

std::tuple<Tensor, Tensor, Tensor, Tensor> tril_gaussian_noisy_forward(const Tensor& z, const Tensor& A,
                                                                       const Tensor& sigma) {
  check_rows_and_scale(z, A, kNoisyForward, {{&sigma, "sigma"}});
  TORCH_CHECK(sigma.dim() == 0, kNoisyForward, ": argument 'sigma' must be a 0-dim tensor, got ", sigma.sym_sizes());
  const int64_t D = z.size(1);
  Tensor C = lower_gram(A, lower_diagonal_blocks(A), sigma.square().expand({D}));
  Tensor inverses = allocate_block_inverses(D, A.options());
  Tensor info = blocked_cholesky_(C, inverses);
  Tensor w = solve_rows_blocked(C, z, inverses);
  Tensor log_prob = -0.5 * w.square().sum(1) - C.diagonal().log().sum() - half_log_2pi_times(D);
  // Sigma >= sigma^2 I always factors; only non-finite A or sigma get here: NaN, not a number.
  log_prob = at::where(info == 0, log_prob, at::full({}, NAN, log_prob.options()));
  return {log_prob, C, w, inverses};
}

// d/dL = tril(M L) = tril(alpha^T (g alpha L)) - G tril(Sigma^-1 L), the second as tril(C^-T C^-1 (-G L))
// by two in-place substitutions in the buffer that becomes grad_A (no explicit Sigma^-1).
std::tuple<Tensor, Tensor, Tensor> tril_gaussian_noisy_backward(const Tensor& grad, const Tensor& A,
                                                                const Tensor& sigma, const Tensor& C, const Tensor& w,
                                                                const Tensor& C_block_inv, bool sigma_grad) {
  check_rows_and_scale(w, A, kNoisyBackward, {{&sigma, "sigma"}, {&C, "C"}});
  check_per_row(w, grad, "grad", kNoisyBackward);
  check_shape(kNoisyBackward, "C", C, A.sym_sizes(), "A's shape");
  check_block_inverses(w, C_block_inv, kNoisyBackward);
  const int64_t D = A.size(0);
  Tensor G = grad.sum();
  Tensor alpha = solve_transposed_rows_blocked(C, w, C_block_inv);
  Tensor g_alpha_L = rows_times_lower(alpha * grad.unsqueeze(1), A, lower_diagonal_blocks(A));
  Tensor scratch = at::empty({kBlockRows, D}, A.options());
  Tensor grad_A = at::tril(A).mul_(G.neg());
  forward_substitute_lower_(C, grad_A, C_block_inv, scratch);
  back_substitute_lower_(C, grad_A, C_block_inv, scratch);
  for (int64_t i = 0; i < block_count(D); ++i) {
    auto [i0, i1] = block_range(i, D);
    block(grad_A, i0, i1, 0, i1).addmm_(alpha.slice(1, i0, i1).t(), g_alpha_L.slice(1, 0, i1));
    block(grad_A, i0, i1, i0, i1).tril_();
  }
  // d/dsigma = sigma tr(M) needs tr(Sigma^-1), another substitution: only when sigma wants a gradient
  Tensor grad_sigma =
      sigma_grad ? sigma * ((alpha.square() * grad.unsqueeze(1)).sum() - G * precision_trace(C, C_block_inv, scratch))
                 : at::zeros_like(sigma);
  return {alpha.mul_(grad.neg().unsqueeze(1)), grad_A, grad_sigma};
}

std::tuple<Tensor, Tensor> tril_gaussian_triangular_forward(const Tensor& z, const Tensor& A) {
  check_rows_and_scale(z, A, kTriForward);
  const int64_t D = z.size(1);
  Tensor L = at::tril(A);
  Tensor w = solve_rows(L, z);
  Tensor log_prob = -0.5 * w.square().sum(1) - L.diagonal().abs().log().sum() - half_log_2pi_times(D);
  return {log_prob, w};
}

std::tuple<Tensor, Tensor> tril_gaussian_triangular_backward(const Tensor& grad, const Tensor& A, const Tensor& w) {
  check_rows_and_scale(w, A, kTriBackward);
  check_per_row(w, grad, "grad", kTriBackward);
  Tensor L = at::tril(A);
  Tensor alpha = solve_transposed_rows(L, w);
  Tensor grad_A = at::tril(at::mm(alpha.t(), w * grad.unsqueeze(1)));
  grad_A.diagonal().sub_(L.diagonal().reciprocal() * grad.sum());
  return {alpha.mul_(grad.neg().unsqueeze(1)), grad_A};
}

Tensor tril_gaussian_noisy_jvp(const Tensor& z_dot, const Tensor& A_dot, const Tensor& sigma_dot, const Tensor& A,
                               const Tensor& sigma, const Tensor& C, const Tensor& w) {
  check_rows_and_scale(w, A, kNoisyJvp,
                       {{&z_dot, "z_dot"}, {&A_dot, "A_dot"}, {&sigma, "sigma"}, {&sigma_dot, "sigma_dot"}, {&C, "C"}});
  check_shape(kNoisyJvp, "z_dot", z_dot, w.sym_sizes(), "z's shape (N, D)");
  check_shape(kNoisyJvp, "A_dot", A_dot, A.sym_sizes(), "A's shape (D, D)");
  Tensor L = at::tril(A), dL = at::tril(A_dot);
  Tensor alpha = solve_transposed_rows(C, w);
  Tensor precision = at::cholesky_inverse(C);
  Tensor shared = (at::mm(precision, L) * dL).sum() + sigma * sigma_dot * precision.diagonal().sum();
  Tensor per_row = (at::mm(alpha, dL) * at::mm(alpha, L)).sum(1) + sigma * sigma_dot * alpha.square().sum(1);
  return per_row - (alpha * z_dot).sum(1) - shared;
}

Tensor tril_gaussian_triangular_jvp(const Tensor& z_dot, const Tensor& A_dot, const Tensor& A, const Tensor& w) {
  check_rows_and_scale(w, A, kTriJvp, {{&z_dot, "z_dot"}, {&A_dot, "A_dot"}});
  check_shape(kTriJvp, "z_dot", z_dot, w.sym_sizes(), "z's shape (N, D)");
  check_shape(kTriJvp, "A_dot", A_dot, A.sym_sizes(), "A's shape (D, D)");
  Tensor L = at::tril(A), dL = at::tril(A_dot);
  Tensor alpha = solve_transposed_rows(L, w);
  return (alpha * (at::mm(w, dL.t()) - z_dot)).sum(1) - (dL.diagonal() / L.diagonal()).sum();
}

// ---- Meta kernels: shapes only ----

namespace {

std::tuple<Tensor, Tensor, Tensor, Tensor> noisy_forward_meta(const Tensor& z, const Tensor& A, const Tensor& sigma) {
  check_rows_and_scale(z, A, kNoisyForward, {{&sigma, "sigma"}});
  const c10::SymInt D = z.sym_size(1);
  return {at::empty_symint({z.sym_size(0)}, z.options()), at::empty_symint(A.sym_sizes(), A.options()),
          at::empty_symint(z.sym_sizes(), z.options()),
          at::empty_symint({(D + kBlockRows - 1) / kBlockRows, kBlockRows, kBlockRows}, A.options())};
}

std::tuple<Tensor, Tensor, Tensor> noisy_backward_meta(const Tensor& grad, const Tensor& A, const Tensor& sigma,
                                                       const Tensor& C, const Tensor& w, const Tensor& C_block_inv,
                                                       bool sigma_grad) {
  check_rows_and_scale(w, A, kNoisyBackward, {{&sigma, "sigma"}, {&C, "C"}});
  check_block_inverses(w, C_block_inv, kNoisyBackward);
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
  m.def(
      "tril_gaussian_noisy_forward(Tensor z, Tensor A, Tensor sigma) -> (Tensor log_prob, Tensor C, Tensor w, "
      "Tensor C_block_inv)");
  m.def(
      "tril_gaussian_noisy_backward(Tensor grad, Tensor A, Tensor sigma, Tensor C, Tensor w, Tensor C_block_inv, "
      "bool sigma_grad=True) -> "
      "(Tensor grad_z, Tensor grad_A, Tensor grad_sigma)");
  m.def("tril_gaussian_triangular_forward(Tensor z, Tensor A) -> (Tensor log_prob, Tensor w)");
  m.def("tril_gaussian_triangular_backward(Tensor grad, Tensor A, Tensor w) -> (Tensor grad_z, Tensor grad_A)");
  m.def(
      "tril_gaussian_noisy_jvp(Tensor z_dot, Tensor A_dot, Tensor sigma_dot, Tensor A, Tensor sigma, Tensor C, "
      "Tensor w) -> Tensor log_prob_dot");
  m.def("tril_gaussian_triangular_jvp(Tensor z_dot, Tensor A_dot, Tensor A, Tensor w) -> Tensor log_prob_dot");
}

TORCH_LIBRARY_IMPL(mfkernels, Meta, m) {
  m.impl("tril_gaussian_noisy_forward", mfk::tril_gaussian::noisy_forward_meta);
  m.impl("tril_gaussian_noisy_backward", mfk::tril_gaussian::noisy_backward_meta);
  m.impl("tril_gaussian_triangular_forward", mfk::tril_gaussian::triangular_forward_meta);
  m.impl("tril_gaussian_triangular_backward", mfk::tril_gaussian::triangular_backward_meta);
  m.impl("tril_gaussian_noisy_jvp", mfk::tril_gaussian::noisy_jvp_meta);
  m.impl("tril_gaussian_triangular_jvp", mfk::tril_gaussian::triangular_jvp_meta);
}

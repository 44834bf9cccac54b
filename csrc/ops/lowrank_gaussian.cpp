// Torch-facing layer of the low-rank Gaussian log-density, log N(x; loc, W W^T + diag(d)) with W (D, K):
// NIF's closed-form Gaussian marginal (paper 001, eq 41: x = A z + b + eps, z ~ N(0, I), eps ~ N(0, diag)).
// Rows x, loc are (N, D) (the Python layer flattens batches and expands loc).
//
//   lowrank_gaussian_log_prob_forward(x, loc, W, diag) -> (log_prob (N,), scaled_residual (N, D), v (N, K),
//                                                          capacitance_inverse (K, K))          (saved)
//   lowrank_gaussian_log_prob_backward(grad, W, diag, scaled_residual, v, capacitance_inverse)
//       -> (grad_residual (N, D), grad_W (D, K), grad_diag (D,))    residual = x - loc
//   lowrank_gaussian_log_prob_jvp(W, diag, scaled_residual, v, capacitance_inverse, residual_dot, W_dot, diag_dot)
//       -> log_prob_dot (N,)
//
// Woodbury and the determinant lemma with the capacitance C = I + W^T D^-1 W (K x K, C >= I, so its
// Cholesky factor always exists for d > 0):
//   r = x - loc, s = D^-1 r, u = W^T s, v = C^-1 u, alpha = Sigma^-1 r = s - D^-1 W v,
//   log p = -1/2 (r^T s - u^T v + log det C + sum log d + D log 2 pi).
// Gradients, with g the incoming gradient per row and G = sum g (no autograd through a factorisation):
//   d/dr = -g alpha,  d/dW = sum_n g_n alpha_n (W^T alpha_n)^T - G Sigma^-1 W,  Sigma^-1 W = D^-1 W C^-1,
//   d/dd = 1/2 sum_n g_n alpha_n^2 - G/2 diag(Sigma^-1),  diag(Sigma^-1) = 1/d - rowsum(D^-1 W C^-1 * D^-1 W).
// W^T alpha = W^T Sigma^-1 r = C^-1 W^T D^-1 r = v (as W^T D^-1 W = C - I), so the saved v replaces an
// (N, D) x (D, K) product in the backward and the tangent.
// Tangent: d log p = -alpha.dr + (alpha^T dW) v - <Sigma^-1 W, dW> + 1/2 (alpha^2 - diag(Sigma^-1)).dd.
// Cost O(N D K + D K^2 + K^3): GEMMs and a K x K Cholesky through ATen, device-generic drivers, except one
// backward pass over the (N, D) residuals, the device kernel of ops/lowrank_gaussian.h.
#include "lowrank_gaussian.h"
#include "checks.h"

#include <ATen/ATen.h>
#include <c10/core/SymInt.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <tuple>

namespace mfk {
namespace lowrank_gaussian {
namespace {

constexpr const char* kForward = "mfkernels.lowrank_gaussian_log_prob_forward";
constexpr const char* kBackward = "mfkernels.lowrank_gaussian_log_prob_backward";
constexpr const char* kJvp = "mfkernels.lowrank_gaussian_log_prob_jvp";

// W (D, K), diag (D,), rows (N, D), all one dtype and device.
void check_model(const Tensor& rows, const char* rows_name, const Tensor& W, const Tensor& diag, const char* op) {
  check_floating(op, rows_name, rows);
  TORCH_CHECK(rows.dim() == 2, op, ": argument '", rows_name, "' must be rows (N, D), got ", rows.sym_sizes());
  for (const auto& [t, name] : {std::pair<const Tensor*, const char*>{&W, "W"}, {&diag, "diag"}}) {
    check_floating(op, name, *t);
    check_same_device_dtype(op, name, *t, rows_name, rows);
  }
  TORCH_CHECK(W.dim() == 2 && W.sym_size(0) == rows.sym_size(1), op,
              ": argument 'W' must have shape (D, K) with D = ", rows.sym_size(1), " (the last dim of '", rows_name,
              "'), got ", W.sym_sizes());
  check_shape(op, "diag", diag, {rows.sym_size(1)}, "(D,)");
}

void check_saved(const Tensor& rows, const Tensor& W, const Tensor& v, const Tensor& cinv, const char* op) {
  for (const auto& [t, name] : {std::pair<const Tensor*, const char*>{&v, "v"}, {&cinv, "capacitance_inverse"}}) {
    check_floating(op, name, *t);
    check_same_device_dtype(op, name, *t, "scaled_residual", rows);
  }
  check_shape(op, "v", v, {rows.sym_size(0), W.sym_size(1)}, "(N, K)");
  check_shape(op, "capacitance_inverse", cinv, {W.sym_size(1), W.sym_size(1)}, "(K, K)");
}

// alpha = Sigma^-1 r = s - (D^-1 W) v, and D^-1 W.
std::tuple<Tensor, Tensor> precision_times_residual(const Tensor& W, const Tensor& diag, const Tensor& s,
                                                    const Tensor& v) {
  Tensor Wd = W / diag.unsqueeze(1);
  Tensor alpha = at::addmm(s, v, Wd.t(), /*beta=*/1, /*alpha=*/-1);
  return {alpha, Wd};
}

// Sigma^-1 W = D^-1 W C^-1 and diag(Sigma^-1).
std::tuple<Tensor, Tensor> precision_pieces(const Tensor& Wd, const Tensor& diag, const Tensor& cinv) {
  Tensor WdCi = at::mm(Wd, cinv);
  Tensor precision_diag = diag.reciprocal() - (WdCi * Wd).sum(1);
  return {WdCi, precision_diag};
}

}  // namespace

std::tuple<Tensor, Tensor, Tensor, Tensor> lowrank_gaussian_log_prob_forward(const Tensor& x, const Tensor& loc,
                                                                             const Tensor& W, const Tensor& diag) {
  check_model(x, "x", W, diag, kForward);
  check_floating(kForward, "loc", loc);
  check_same_device_dtype(kForward, "loc", loc, "x", x);
  check_shape(kForward, "loc", loc, x.sym_sizes(), "x's shape (N, D)");
  const int64_t N = x.size(0), D = x.size(1), K = W.size(1);
  // One (N, D) buffer, r -> D^-1/2 r -> D^-1 r = s in place: on CPU a fresh buffer of that size costs
  // page faults comparable to the arithmetic, so temporaries are what this op's time goes to.
  Tensor s = at::empty({N, D}, x.options());  // row-major, as the schema promises
  at::sub_out(s, x, loc);
  Tensor inv_sqrt_d = diag.rsqrt();
  s.mul_(inv_sqrt_d);
  Tensor quad = at::linalg_vector_norm(s, 2, {1}).square_();  // r^T D^-1 r
  s.mul_(inv_sqrt_d);
  Tensor Wd = W / diag.unsqueeze(1);
  Tensor capacitance = at::addmm(at::eye(K, x.options()), W.t(), Wd);
  auto [L, info] = at::linalg_cholesky_ex(capacitance);
  Tensor cinv = at::cholesky_inverse(L).contiguous();  // LAPACK hands back column-major
  Tensor u = at::mm(s, W);
  Tensor v = at::mm(u, cinv);
  Tensor logdet = 2 * L.diagonal().log().sum() + diag.log().sum();
  Tensor log_prob = -0.5 * (quad - (u * v).sum(1) + logdet + static_cast<double>(D) * std::log(2 * M_PI));
  // Only non-finite W or diag can make C fail to factor; say so with NaN rather than a number.
  log_prob = at::where(info == 0, log_prob, at::full({}, NAN, log_prob.options()));
  return {log_prob, s, v, cinv};
}

std::tuple<Tensor, Tensor, Tensor> lowrank_gaussian_log_prob_backward(const Kernels& device, const Tensor& grad,
                                                                      const Tensor& W, const Tensor& diag,
                                                                      const Tensor& s, const Tensor& v,
                                                                      const Tensor& cinv) {
  check_model(s, "scaled_residual", W, diag, kBackward);
  check_saved(s, W, v, cinv, kBackward);
  check_floating(kBackward, "grad", grad);
  check_same_device_dtype(kBackward, "grad", grad, "scaled_residual", s);
  check_shape(kBackward, "grad", grad, {s.sym_size(0)}, "(N,)");
  auto [alpha, Wd] = precision_times_residual(W, diag, s, v);
  auto [WdCi, precision_diag] = precision_pieces(Wd, diag, cinv);
  // One (N, D) buffer: alpha turns into grad_r = -g alpha in place while sum_n g_n alpha_n^2 accumulates.
  Tensor g_alpha_sq = device.residual_grad_(alpha, grad);
  Tensor& grad_r = alpha;
  Tensor G = grad.sum();
  Tensor grad_W = at::mm(grad_r.t(), v).add_(WdCi * G).neg_();  // v = W^T alpha per row
  Tensor grad_diag = 0.5 * (g_alpha_sq - G * precision_diag);
  return {grad_r, grad_W, grad_diag};
}

Tensor lowrank_gaussian_log_prob_jvp(const Tensor& W, const Tensor& diag, const Tensor& s, const Tensor& v,
                                     const Tensor& cinv, const Tensor& r_dot, const Tensor& W_dot,
                                     const Tensor& diag_dot) {
  check_model(s, "scaled_residual", W, diag, kJvp);
  check_saved(s, W, v, cinv, kJvp);
  for (const auto& [t, like, name] : {std::tuple<const Tensor*, const Tensor*, const char*>{&r_dot, &s, "residual_dot"},
                                      {&W_dot, &W, "W_dot"},
                                      {&diag_dot, &diag, "diag_dot"}}) {
    check_floating(kJvp, name, *t);
    check_same_device_dtype(kJvp, name, *t, "scaled_residual", s);
    check_shape(kJvp, name, *t, like->sym_sizes(), "its primal's shape");
  }
  auto [alpha, Wd] = precision_times_residual(W, diag, s, v);
  auto [WdCi, precision_diag] = precision_pieces(Wd, diag, cinv);
  Tensor per_row = (at::mm(alpha, W_dot) * v).sum(1) - (alpha * r_dot).sum(1) + at::mv(alpha * alpha, 0.5 * diag_dot);
  Tensor shared = (WdCi * W_dot).sum() + 0.5 * (precision_diag * diag_dot).sum();
  return per_row - shared;
}

// ---- Meta kernels: shapes only ----

namespace {

std::tuple<Tensor, Tensor, Tensor, Tensor> forward_meta(const Tensor& x, const Tensor& loc, const Tensor& W,
                                                        const Tensor& diag) {
  check_model(x, "x", W, diag, kForward);
  check_shape(kForward, "loc", loc, x.sym_sizes(), "x's shape (N, D)");
  const c10::SymInt N = x.sym_size(0), K = W.sym_size(1);
  return {at::empty_symint({N}, x.options()), at::empty_symint(x.sym_sizes(), x.options()),
          at::empty_symint({N, K}, x.options()), at::empty_symint({K, K}, x.options())};
}

std::tuple<Tensor, Tensor, Tensor> backward_meta(const Tensor& grad, const Tensor& W, const Tensor& diag,
                                                 const Tensor& s, const Tensor& v, const Tensor& cinv) {
  check_model(s, "scaled_residual", W, diag, kBackward);
  check_saved(s, W, v, cinv, kBackward);
  return {at::empty_symint(s.sym_sizes(), s.options()), at::empty_symint(W.sym_sizes(), W.options()),
          at::empty_symint(diag.sym_sizes(), diag.options())};
}

Tensor jvp_meta(const Tensor& W, const Tensor& diag, const Tensor& s, const Tensor& v, const Tensor& cinv,
                const Tensor& r_dot, const Tensor& W_dot, const Tensor& diag_dot) {
  check_model(s, "scaled_residual", W, diag, kJvp);
  check_saved(s, W, v, cinv, kJvp);
  return at::empty_symint({s.sym_size(0)}, s.options());
}

}  // namespace
}  // namespace lowrank_gaussian
}  // namespace mfk

TORCH_LIBRARY_FRAGMENT(mfkernels, m) {
  m.def(
      "lowrank_gaussian_log_prob_forward(Tensor x, Tensor loc, Tensor W, Tensor diag) -> "
      "(Tensor log_prob, Tensor scaled_residual, Tensor v, Tensor capacitance_inverse)");
  m.def(
      "lowrank_gaussian_log_prob_backward(Tensor grad, Tensor W, Tensor diag, Tensor scaled_residual, Tensor v, "
      "Tensor capacitance_inverse) -> (Tensor grad_residual, Tensor grad_W, Tensor grad_diag)");
  m.def(
      "lowrank_gaussian_log_prob_jvp(Tensor W, Tensor diag, Tensor scaled_residual, Tensor v, "
      "Tensor capacitance_inverse, Tensor residual_dot, Tensor W_dot, Tensor diag_dot) -> Tensor");
}

TORCH_LIBRARY_IMPL(mfkernels, Meta, m) {
  m.impl("lowrank_gaussian_log_prob_forward", mfk::lowrank_gaussian::forward_meta);
  m.impl("lowrank_gaussian_log_prob_backward", mfk::lowrank_gaussian::backward_meta);
  m.impl("lowrank_gaussian_log_prob_jvp", mfk::lowrank_gaussian::jvp_meta);
}

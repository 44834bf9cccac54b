// Torch-facing layer of the block-diagonal Gaussian NIF layer (paper 001: x = A z + b + eps, eps ~ N(0, Sigma)
// with diagonal Sigma, A block-diagonal after a pixel permutation, e.g. nearest-neighbour upsampling,
// appendix): P blocks A_p (r x c), rows x, b (B, P, r), log_sigma (P, r) (the Python layer broadcasts).
//
//   nif_block_forward(x, A, b, log_sigma)
//     -> (log_px (B,), manifold_term (B,), z_mean (B, P, c), z_point (B, P, c),
//         scaled_residual (B, P, r), u (B, P, c), K1 (P, c, c), K0 (P, c, c))          (the last four saved)
//   nif_block_backward(g_log_px, g_manifold, g_z_mean, g_z_point, A, log_sigma, scaled_residual, u, z_mean,
//                      z_point, K1, K0) -> (grad_x (B, P, r), grad_A (P, r, c), grad_log_sigma (P, r))
//   nif_block_jvp(x_dot, A_dot, b_dot, log_sigma_dot, A, log_sigma, scaled_residual, z_mean, z_point, K1, K0)
//     -> the tangents of (log_px, manifold_term, z_mean, z_point)
//
// Per block, with S = Sigma_p^-1 = diag(exp(-2 log_sigma_p)), mu = x - b, t = S mu:
//   Lambda = A^T S A, u = A^T t, K1 = (I + Lambda)^-1, K0 = Lambda^-1,
//   log Z_x = 1/2 (mu^T t + log|Sigma| + r log 2 pi),  log Z_z = 1/2 (u^T K0 u - log|Lambda| + c log 2 pi),
//   log_px = 1/2 (u^T K1 u - log|I + Lambda|) - log Z_x   (eq 41 keeping the prior's -c/2 log 2 pi of eq 53,
//            so that it equals log N(x; b, A A^T + Sigma)),
//   manifold_term = log Z_z - log Z_x (eq 9), z_mean = K1 u, z_point = K0 u (eq 42); block terms summed.
// Lambda, its factorisations and K0, K1 depend on the block only: they are computed once per call and
// shared by the batch; per (sample, block) the work is r x c products. Gradients are analytic (derivation
// in the backward below). For c <= nif_block::kMaxLatent the device's fused kernels (ops/nif_block.h) do
// everything in one pass per block / sample with the c x c algebra in registers; larger c goes through the
// ATen route below (batched BLAS/LAPACK, cuBLAS/cuSOLVER on GPU), which computes the same quantities.
#include "checks.h"
#include "nif_block.h"
#include "../math/nif_block.h"

#include <ATen/ATen.h>
#include <c10/core/SymInt.h>
#include <torch/library.h>

#include <cmath>
#include <tuple>

namespace mfk {
namespace nif_block {
namespace {

constexpr const char* kForward = "mfkernels.nif_block_forward";
constexpr const char* kBackward = "mfkernels.nif_block_backward";
constexpr const char* kJvp = "mfkernels.nif_block_jvp";

// (B, P, k) <-> (P, B, k): the block-batched layout bmm wants.
Tensor by_block(const Tensor& t) { return t.transpose(0, 1); }
Tensor by_sample(const Tensor& t) { return t.transpose(0, 1).contiguous(); }

// x (B, P, r), A (P, r, c), log_sigma (P, r), one dtype and device.
void check_layer(const Tensor& x, const char* x_name, const Tensor& A, const Tensor& log_sigma, const char* op) {
  check_floating(op, x_name, x);
  TORCH_CHECK(x.dim() == 3, op, ": argument '", x_name, "' must be (B, P, r), got ", x.sym_sizes());
  for (const auto& [t, name] : {std::pair<const Tensor*, const char*>{&A, "A"}, {&log_sigma, "log_sigma"}}) {
    check_floating(op, name, *t);
    check_same_device_dtype(op, name, *t, x_name, x);
  }
  TORCH_CHECK(A.dim() == 3 && A.sym_size(0) == x.sym_size(1) && A.sym_size(1) == x.sym_size(2), op,
              ": argument 'A' must be (P, r, c) with P = ", x.sym_size(1), " and r = ", x.sym_size(2), " from '",
              x_name, "', got ", A.sym_sizes());
  check_shape(op, "log_sigma", log_sigma, {A.sym_size(0), A.sym_size(1)}, "(P, r)");
}

double log_2pi() { return std::log(2 * M_PI); }

// Inverse and log-determinant of a batch of SPD matrices; NaN where one does not factor.
std::tuple<Tensor, Tensor> spd_inverse_logdet(const Tensor& M) {
  auto [L, info] = at::linalg_cholesky_ex(M);
  Tensor ok = (info == 0).unsqueeze(-1).unsqueeze(-1);
  // a failed factor may hold zeros on its diagonal, which cholesky_inverse rejects: invert I there
  Tensor safe = at::where(ok, L, at::eye(M.size(-1), M.options()));
  Tensor logdet = at::where(info == 0, 2 * L.diagonal(0, -2, -1).log().sum(-1), at::full({}, NAN, M.options()));
  Tensor inverse = at::where(ok, at::cholesky_inverse(safe), at::full({}, NAN, M.options()));
  return {inverse.contiguous(), logdet};
}

ForwardOutputs forward_aten(const Tensor& x, const Tensor& A, const Tensor& b, const Tensor& log_sigma) {
  check_layer(x, "x", A, log_sigma, kForward);
  check_floating(kForward, "b", b);
  check_same_device_dtype(kForward, "b", b, "x", x);
  check_shape(kForward, "b", b, x.sym_sizes(), "x's shape (B, P, r)");
  const int64_t r = A.size(1), c = A.size(2);
  Tensor inv_var = at::exp(-2 * log_sigma);        // (P, r)
  Tensor mu = x - b;                               // (B, P, r)
  Tensor t = (mu * inv_var).contiguous();          // S mu
  Tensor quad = mu.mul_(t).sum(-1);                // mu^T S mu, (B, P)
  Tensor SA = A * inv_var.unsqueeze(-1);           // (P, r, c)
  Tensor lambda = at::bmm(A.transpose(1, 2), SA);  // (P, c, c)
  Tensor u_p = at::bmm(by_block(t), A);            // (P, B, c)
  Tensor eye = at::eye(c, x.options());
  auto [K1, logdet1] = spd_inverse_logdet(lambda + eye);
  auto [K0, logdet0] = spd_inverse_logdet(lambda);
  Tensor zm_p = at::bmm(u_p, K1), zp_p = at::bmm(u_p, K0);  // K symmetric: u K = (K u)^T
  Tensor log_zx = 0.5 * (quad + 2 * log_sigma.sum(-1) + static_cast<double>(r) * log_2pi());  // (B, P)
  Tensor u = by_sample(u_p), z_mean = by_sample(zm_p), z_point = by_sample(zp_p);
  Tensor log_px = (0.5 * ((u * z_mean).sum(-1) - logdet1) - log_zx).sum(-1);
  Tensor manifold = (0.5 * ((u * z_point).sum(-1) - logdet0 + static_cast<double>(c) * log_2pi()) - log_zx).sum(-1);
  return {log_px, manifold, z_mean, z_point, t, u, K1, K0};
}

// Derivation (per block, summed over samples n; g1, g2, gm, gp the incoming gradients of log_px,
// manifold_term, z_mean, z_point; w = g1 + g2):
//   d/du         gu = g1 z_mean + g2 z_point + K1 gm + K0 gp
//   d/dLambda    G = -1/2 (sum g1 zm zm^T + G1 K1) - 1/2 (sum g2 zp zp^T + G2 K0) - K1 sum gm zm^T - K0 sum gp zp^T
//                (dK = -K dLambda K), and Lambda = A^T S A gives d/dA += S A (G + G^T)
//   u = A^T t:   d/dA += sum t gu^T, d/dt = A gu =: gt
//   mu:          d/dmu = S gt - w t (the -1/2 w mu^T S mu of log Z_x); x gets it, b its negative
//   S:           d/dS_i = sum (gt_i mu_i - 1/2 w mu_i^2) + 1/2 (A (G + G^T) A^T)_ii, and dS/dlog_sigma = -2 S
//   log|Sigma|:  d/dlog_sigma_i -= sum w
std::tuple<Tensor, Tensor, Tensor> backward_aten(const Tensor& g_log_px, const Tensor& g_manifold,
                                                 const Tensor& g_z_mean, const Tensor& g_z_point, const Tensor& A,
                                                 const Tensor& log_sigma, const Tensor& t, const Tensor& u,
                                                 const Tensor& z_mean, const Tensor& z_point, const Tensor& K1,
                                                 const Tensor& K0) {
  check_layer(t, "scaled_residual", A, log_sigma, kBackward);
  const c10::SymInt B = t.sym_size(0), P = A.sym_size(0), c = A.sym_size(2);
  for (const auto& [v, name] : {std::pair<const Tensor*, const char*>{&g_z_mean, "g_z_mean"},
                                {&g_z_point, "g_z_point"},
                                {&u, "u"},
                                {&z_mean, "z_mean"},
                                {&z_point, "z_point"}}) {
    check_floating(kBackward, name, *v);
    check_same_device_dtype(kBackward, name, *v, "scaled_residual", t);
    check_shape(kBackward, name, *v, {B, P, c}, "(B, P, c)");
  }
  for (const auto& [v, name] :
       {std::pair<const Tensor*, const char*>{&g_log_px, "g_log_px"}, {&g_manifold, "g_manifold"}}) {
    check_floating(kBackward, name, *v);
    check_shape(kBackward, name, *v, {B}, "(B,)");
  }
  check_shape(kBackward, "K1", K1, {P, c, c}, "(P, c, c)");
  check_shape(kBackward, "K0", K0, {P, c, c}, "(P, c, c)");

  Tensor inv_var = at::exp(-2 * log_sigma);
  Tensor g1 = g_log_px.view({-1, 1, 1}), g2 = g_manifold.view({-1, 1, 1});
  Tensor zm_p = by_block(z_mean), zp_p = by_block(z_point), gm_p = by_block(g_z_mean), gp_p = by_block(g_z_point);
  // gu (P, B, c)
  Tensor gu_p = by_block(g1 * z_mean + g2 * z_point) + at::bmm(gm_p, K1) + at::bmm(gp_p, K0);
  // G (P, c, c)
  Tensor G = -0.5 * (at::bmm(zm_p.transpose(1, 2), zm_p * by_block(g1)) + K1 * g_log_px.sum()) -
             0.5 * (at::bmm(zp_p.transpose(1, 2), zp_p * by_block(g2)) + K0 * g_manifold.sum()) -
             at::bmm(K1, at::bmm(gm_p.transpose(1, 2), zm_p)) - at::bmm(K0, at::bmm(gp_p.transpose(1, 2), zp_p));
  Tensor Gs = G + G.transpose(1, 2);
  Tensor t_p = by_block(t);
  Tensor A_Gs = at::bmm(A, Gs);  // (P, r, c)
  Tensor grad_A = A_Gs * inv_var.unsqueeze(-1) + at::bmm(t_p.transpose(1, 2), gu_p);
  Tensor gt = by_sample(at::bmm(gu_p, A.transpose(1, 2)));  // (B, P, r)
  Tensor w = (g_log_px + g_manifold).view({-1, 1, 1});
  Tensor mu = t / inv_var;
  Tensor grad_x = gt * inv_var - w * t;
  Tensor grad_S = (gt * mu - 0.5 * w * mu * mu).sum(0) + 0.5 * (A_Gs * A).sum(-1);
  Tensor grad_log_sigma = -2 * inv_var * grad_S - (g_log_px + g_manifold).sum();
  return {grad_x, grad_A, grad_log_sigma};
}

// Forward-mode tangents (per block, summed over blocks where scalar; dS = -2 S dlog_sigma):
//   dmu = dx - db, dt = S dmu + dS mu, du = dA^T t + A^T dt, dLambda = dA^T S A + A^T S dA + A^T dS A,
//   dz_mean = K1 (du - dLambda z_mean), dz_point = K0 (du - dLambda z_point),
//   dlog Z_x = dmu^T t + 1/2 mu^T dS mu + sum dlog_sigma,
//   dlog_px = du^T z_mean - 1/2 z_mean^T dLambda z_mean - 1/2 tr(K1 dLambda) - dlog Z_x   (dK = -K dLambda K),
//   dmanifold_term = du^T z_point - 1/2 z_point^T dLambda z_point - 1/2 tr(K0 dLambda) - dlog Z_x.
}  // namespace

std::tuple<Tensor, Tensor, Tensor, Tensor> nif_block_jvp(const Tensor& dx, const Tensor& dA, const Tensor& db,
                                                         const Tensor& dlog_sigma, const Tensor& A,
                                                         const Tensor& log_sigma, const Tensor& t, const Tensor& z_mean,
                                                         const Tensor& z_point, const Tensor& K1, const Tensor& K0) {
  check_layer(t, "scaled_residual", A, log_sigma, kJvp);
  check_layer(dx, "x_dot", A, log_sigma, kJvp);
  check_layer(db, "b_dot", A, log_sigma, kJvp);
  check_floating(kJvp, "A_dot", dA);
  check_shape(kJvp, "A_dot", dA, A.sym_sizes(), "A's shape (P, r, c)");
  check_floating(kJvp, "log_sigma_dot", dlog_sigma);
  check_shape(kJvp, "log_sigma_dot", dlog_sigma, log_sigma.sym_sizes(), "(P, r)");
  Tensor inv_var = at::exp(-2 * log_sigma);
  Tensor dS = -2 * inv_var * dlog_sigma;   // (P, r)
  Tensor mu = t / inv_var, dmu = dx - db;  // (B, P, r)
  Tensor dt = dmu * inv_var + dS * mu;
  Tensor du_p = at::bmm(by_block(t), dA) + at::bmm(by_block(dt), A);  // (P, B, c)
  Tensor dA_SA = at::bmm(dA.transpose(1, 2), A * inv_var.unsqueeze(-1));
  Tensor dLambda = dA_SA + dA_SA.transpose(1, 2) + at::bmm(A.transpose(1, 2), A * dS.unsqueeze(-1));
  Tensor zm_p = by_block(z_mean), zp_p = by_block(z_point);
  Tensor dLzm = at::bmm(zm_p, dLambda), dLzp = at::bmm(zp_p, dLambda);  // dLambda symmetric: rows (dLambda z)^T
  Tensor dz_mean = by_sample(at::bmm(du_p - dLzm, K1)), dz_point = by_sample(at::bmm(du_p - dLzp, K0));
  Tensor dlog_zx = (dmu * t).sum(-1) + 0.5 * (dS * mu * mu).sum(-1) + dlog_sigma.sum(-1);  // (B, P)
  Tensor tr1 = (K1 * dLambda).sum({-2, -1}), tr0 = (K0 * dLambda).sum({-2, -1});           // (P,)
  Tensor d_log_px = ((du_p * zm_p).sum(-1) - 0.5 * (dLzm * zm_p).sum(-1) - 0.5 * tr1.unsqueeze(-1)).transpose(0, 1);
  Tensor d_manifold = ((du_p * zp_p).sum(-1) - 0.5 * (dLzp * zp_p).sum(-1) - 0.5 * tr0.unsqueeze(-1)).transpose(0, 1);
  return {(d_log_px - dlog_zx).sum(-1), (d_manifold - dlog_zx).sum(-1), dz_mean, dz_point};
}

// ---- Drivers: the device's fused kernels for c <= kMaxLatent (same outputs and gradients as the ATen route) ----

ForwardOutputs nif_block_forward(const Kernels& device, const Tensor& x, const Tensor& A, const Tensor& b,
                                 const Tensor& log_sigma) {
  check_layer(x, "x", A, log_sigma, kForward);
  check_floating(kForward, "b", b);
  check_same_device_dtype(kForward, "b", b, "x", x);
  check_shape(kForward, "b", b, x.sym_sizes(), "x's shape (B, P, r)");
  if (A.size(2) > kMaxLatent) return forward_aten(x, A, b, log_sigma);
  // b is read in place when it only broadcasts over the batch (the layer passes b.expand(x.shape))
  const bool rows_contiguous =
      b.stride(2) == 1 && b.stride(1) == b.size(2) && (b.stride(0) == 0 || b.stride(0) == b.size(1) * b.size(2));
  return device.fused_forward(x.contiguous(), A.contiguous(), rows_contiguous ? b : b.contiguous(),
                              at::exp(-2 * log_sigma).contiguous(), log_sigma.sum(-1).contiguous());
}

BackwardOutputs nif_block_backward(const Kernels& device, const Tensor& g_log_px, const Tensor& g_manifold,
                                   const Tensor& g_z_mean, const Tensor& g_z_point, const Tensor& A,
                                   const Tensor& log_sigma, const Tensor& t, const Tensor& u, const Tensor& z_mean,
                                   const Tensor& z_point, const Tensor& K1, const Tensor& K0) {
  if (A.dim() != 3 || A.size(2) > kMaxLatent) {
    return backward_aten(g_log_px, g_manifold, g_z_mean, g_z_point, A, log_sigma, t, u, z_mean, z_point, K1, K0);
  }
  check_layer(t, "scaled_residual", A, log_sigma, kBackward);
  const c10::SymInt B = t.sym_size(0), P = A.sym_size(0), c = A.sym_size(2);
  for (const auto& [v, name] : {std::pair<const Tensor*, const char*>{&g_z_mean, "g_z_mean"},
                                {&g_z_point, "g_z_point"},
                                {&z_mean, "z_mean"},
                                {&z_point, "z_point"},
                                {&g_log_px, "g_log_px"},
                                {&g_manifold, "g_manifold"},
                                {&K1, "K1"},
                                {&K0, "K0"}}) {
    check_floating(kBackward, name, *v);
    check_same_device_dtype(kBackward, name, *v, "scaled_residual", t);
  }
  for (const auto& [v, name] : {std::pair<const Tensor*, const char*>{&g_z_mean, "g_z_mean"},
                                {&g_z_point, "g_z_point"},
                                {&z_mean, "z_mean"},
                                {&z_point, "z_point"}}) {
    check_shape(kBackward, name, *v, {B, P, c}, "(B, P, c)");
  }
  check_shape(kBackward, "g_log_px", g_log_px, {B}, "(B,)");
  check_shape(kBackward, "g_manifold", g_manifold, {B}, "(B,)");
  check_shape(kBackward, "K1", K1, {P, c, c}, "(P, c, c)");
  check_shape(kBackward, "K0", K0, {P, c, c}, "(P, c, c)");
  return device.fused_backward(g_log_px.contiguous(), g_manifold.contiguous(), g_z_mean.contiguous(),
                               g_z_point.contiguous(), A.contiguous(), at::exp(-2 * log_sigma).contiguous(),
                               t.contiguous(), z_mean.contiguous(), z_point.contiguous(), K1.contiguous(),
                               K0.contiguous());
}

// ---- Meta kernels: shapes only ----

namespace {

std::tuple<Tensor, Tensor, Tensor, Tensor> jvp_meta(const Tensor& dx, const Tensor& dA, const Tensor& db,
                                                    const Tensor& dlog_sigma, const Tensor& A, const Tensor& log_sigma,
                                                    const Tensor& t, const Tensor& z_mean, const Tensor& z_point,
                                                    const Tensor& K1, const Tensor& K0) {
  check_layer(t, "scaled_residual", A, log_sigma, kJvp);
  auto o = t.options();
  return {at::empty_symint({t.sym_size(0)}, o), at::empty_symint({t.sym_size(0)}, o),
          at::empty_symint(z_mean.sym_sizes(), o), at::empty_symint(z_point.sym_sizes(), o)};
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> forward_meta(const Tensor& x,
                                                                                        const Tensor& A,
                                                                                        const Tensor& b,
                                                                                        const Tensor& log_sigma) {
  check_layer(x, "x", A, log_sigma, kForward);
  check_shape(kForward, "b", b, x.sym_sizes(), "x's shape (B, P, r)");
  const c10::SymInt B = x.sym_size(0), P = A.sym_size(0), c = A.sym_size(2);
  auto o = x.options();
  return {at::empty_symint({B}, o),       at::empty_symint({B}, o),           at::empty_symint({B, P, c}, o),
          at::empty_symint({B, P, c}, o), at::empty_symint(x.sym_sizes(), o), at::empty_symint({B, P, c}, o),
          at::empty_symint({P, c, c}, o), at::empty_symint({P, c, c}, o)};
}

std::tuple<Tensor, Tensor, Tensor> backward_meta(const Tensor& g_log_px, const Tensor& g_manifold,
                                                 const Tensor& g_z_mean, const Tensor& g_z_point, const Tensor& A,
                                                 const Tensor& log_sigma, const Tensor& t, const Tensor& u,
                                                 const Tensor& z_mean, const Tensor& z_point, const Tensor& K1,
                                                 const Tensor& K0) {
  check_layer(t, "scaled_residual", A, log_sigma, kBackward);
  return {at::empty_symint(t.sym_sizes(), t.options()), at::empty_symint(A.sym_sizes(), A.options()),
          at::empty_symint(log_sigma.sym_sizes(), log_sigma.options())};
}

}  // namespace
}  // namespace nif_block
}  // namespace mfk

TORCH_LIBRARY_FRAGMENT(mfkernels, m) {
  m.def(
      "nif_block_forward(Tensor x, Tensor A, Tensor b, Tensor log_sigma) -> (Tensor log_px, Tensor manifold_term, "
      "Tensor z_mean, Tensor z_point, Tensor scaled_residual, Tensor u, Tensor K1, Tensor K0)");
  m.def(
      "nif_block_backward(Tensor g_log_px, Tensor g_manifold, Tensor g_z_mean, Tensor g_z_point, Tensor A, "
      "Tensor log_sigma, Tensor scaled_residual, Tensor u, Tensor z_mean, Tensor z_point, Tensor K1, Tensor K0) -> "
      "(Tensor grad_x, Tensor grad_A, Tensor grad_log_sigma)");
  m.def(
      "nif_block_jvp(Tensor x_dot, Tensor A_dot, Tensor b_dot, Tensor log_sigma_dot, Tensor A, Tensor log_sigma, "
      "Tensor scaled_residual, Tensor z_mean, Tensor z_point, Tensor K1, Tensor K0) -> "
      "(Tensor log_px_dot, Tensor manifold_term_dot, Tensor z_mean_dot, Tensor z_point_dot)");
}

TORCH_LIBRARY_IMPL(mfkernels, Meta, m) {
  m.impl("nif_block_forward", mfk::nif_block::forward_meta);
  m.impl("nif_block_backward", mfk::nif_block::backward_meta);
  m.impl("nif_block_jvp", mfk::nif_block::jvp_meta);
}

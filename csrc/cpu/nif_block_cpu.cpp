// CPU kernels of the fused block NIF op (math in math/nif_block.h; driver and checks in ops/nif_block.cpp).
// Forward: the per-block c x c factorisations in parallel over blocks, then the per-sample work in
// parallel over samples (each sample sums its blocks' terms itself: no reduction across threads).
// Backward: parallel over blocks, each block summing over the batch the c x c and r x c terms it owns.
#include "../math/nif_block.h"
#include "../ops/nif_block.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>

#include <algorithm>
#include <cmath>

namespace mfk {
namespace nif_block {
namespace {

int64_t grain(int64_t work_per_item) {
  return std::max<int64_t>(1, (int64_t(1) << 14) / std::max<int64_t>(1, work_per_item));
}

}  // namespace

ForwardOutputs fused_forward_cpu(const at::Tensor& x, const at::Tensor& A, const at::Tensor& b,
                                 const at::Tensor& inv_var, const at::Tensor& sum_log_sigma) {
  const int64_t B = x.size(0), P = A.size(0);
  const int r = static_cast<int>(A.size(1)), c = static_cast<int>(A.size(2));
  ForwardBuffers out(x, A);
  at::Tensor &log_px = out.log_px, &manifold = out.manifold, &z_mean = out.z_mean, &z_point = out.z_point, &t = out.t,
             &u = out.u, &K1 = out.K1, &K0 = out.K0, &logdets = out.logdets;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "mfkernels::nif_block (cpu)", [&] {
    const scalar_t* Ap = A.const_data_ptr<scalar_t>();
    const scalar_t* iv = inv_var.const_data_ptr<scalar_t>();
    const scalar_t* sls = sum_log_sigma.const_data_ptr<scalar_t>();
    scalar_t* K1p = K1.mutable_data_ptr<scalar_t>();
    scalar_t* K0p = K0.mutable_data_ptr<scalar_t>();
    scalar_t* ldp = logdets.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, P, grain(int64_t(r) * c * c + c * c * c), [&](int64_t p0, int64_t p1) {
      for (int64_t p = p0; p < p1; ++p) {
        block_setup(Ap + p * r * c, iv + p * r, r, c, K1p + p * c * c, K0p + p * c * c, ldp + 2 * p);
      }
    });
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    const scalar_t* bp = b.const_data_ptr<scalar_t>();
    scalar_t* tp = t.mutable_data_ptr<scalar_t>();
    scalar_t* up = u.mutable_data_ptr<scalar_t>();
    scalar_t* zmp = z_mean.mutable_data_ptr<scalar_t>();
    scalar_t* zpp = z_point.mutable_data_ptr<scalar_t>();
    scalar_t* lpx = log_px.mutable_data_ptr<scalar_t>();
    scalar_t* mfp = manifold.mutable_data_ptr<scalar_t>();
    // b may broadcast over the batch (stride 0): it is read in place, never materialised
    const int64_t b_stride = b.stride(0);
    MFK_NIF_WITH_LATENT(c, at::parallel_for(0, B, grain(P * (int64_t(r) * c + c * c)), [&](int64_t n0, int64_t n1) {
                          for (int64_t n = n0; n < n1; ++n) {
                            scalar_t lp = 0, mf = 0;
                            for (int64_t p = 0; p < P; ++p) {
                              const int64_t row = n * P + p;
                              scalar_t quad, u_zm, u_zp;
                              sample_forward<scalar_t, kC>(xp + row * r, bp + n * b_stride + p * r, Ap + p * r * c,
                                                           iv + p * r, K1p + p * c * c, K0p + p * c * c, r, c,
                                                           tp + row * r, up + row * c, zmp + row * c, zpp + row * c,
                                                           quad, u_zm, u_zp);
                              add_block_terms(quad, u_zm, u_zp, sls[p], ldp + 2 * p, r, c, lp, mf);
                            }
                            lpx[n] = lp;
                            mfp[n] = mf;
                          }
                        }));
  });
  return out.outputs();
}

BackwardOutputs fused_backward_cpu(const at::Tensor& g_log_px, const at::Tensor& g_manifold, const at::Tensor& g_z_mean,
                                   const at::Tensor& g_z_point, const at::Tensor& A, const at::Tensor& inv_var,
                                   const at::Tensor& t, const at::Tensor& z_mean, const at::Tensor& z_point,
                                   const at::Tensor& K1, const at::Tensor& K0) {
  const int64_t B = t.size(0), P = A.size(0);
  const int r = static_cast<int>(A.size(1)), c = static_cast<int>(A.size(2));
  at::Tensor grad_x = at::empty_like(t), grad_A = at::empty_like(A), grad_log_sigma = at::empty_like(inv_var);
  AT_DISPATCH_FLOATING_TYPES(t.scalar_type(), "mfkernels::nif_block_backward (cpu)", [&] {
    const scalar_t* g1 = g_log_px.const_data_ptr<scalar_t>();
    const scalar_t* g2 = g_manifold.const_data_ptr<scalar_t>();
    const scalar_t* gm = g_z_mean.const_data_ptr<scalar_t>();
    const scalar_t* gp = g_z_point.const_data_ptr<scalar_t>();
    const scalar_t* Ap = A.const_data_ptr<scalar_t>();
    const scalar_t* iv = inv_var.const_data_ptr<scalar_t>();
    const scalar_t* tp = t.const_data_ptr<scalar_t>();
    const scalar_t* zm = z_mean.const_data_ptr<scalar_t>();
    const scalar_t* zp = z_point.const_data_ptr<scalar_t>();
    const scalar_t* K1p = K1.const_data_ptr<scalar_t>();
    const scalar_t* K0p = K0.const_data_ptr<scalar_t>();
    scalar_t* gx = grad_x.mutable_data_ptr<scalar_t>();
    scalar_t* gA = grad_A.mutable_data_ptr<scalar_t>();
    scalar_t* gls = grad_log_sigma.mutable_data_ptr<scalar_t>();
    MFK_NIF_WITH_LATENT(c, at::parallel_for(0, P, grain(B * (int64_t(r) * c + c * c)), [&](int64_t p0, int64_t p1) {
                          for (int64_t p = p0; p < p1; ++p) {
                            block_backward<scalar_t, kC>(B, g1, g2, gm + p * c, gp + p * c, Ap + p * r * c, iv + p * r,
                                                         tp + p * r, zm + p * c, zp + p * c, K1p + p * c * c,
                                                         K0p + p * c * c, r, c, P * r, P * c, gx + p * r,
                                                         gA + p * r * c, gls + p * r);
                          }
                        }));
  });
  return {grad_x, grad_A, grad_log_sigma};
}

const Kernels kCpuKernels{fused_forward_cpu, fused_backward_cpu};

}  // namespace nif_block
}  // namespace mfk

TORCH_LIBRARY_IMPL(mfkernels, CPU, m) { mfk::nif_block::register_drivers<mfk::nif_block::kCpuKernels>(m); }

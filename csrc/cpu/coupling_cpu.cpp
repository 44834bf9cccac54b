// CPU kernels of the affine coupling family (math in math/coupling.h): one fused pass per row
// (two for volume_preserving, whose row mean comes first), rows in parallel.
#include "../common/dual.h"
#include "../math/coupling.h"
#include "../ops/coupling.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>

#include <algorithm>

namespace mfk {
namespace coupling {
namespace {

int64_t grain_for(int64_t n) { return std::max<int64_t>(1, (int64_t(1) << 15) / std::max<int64_t>(1, n)); }

template <typename T>
T row_mean(const T* v, int64_t n, int mode) {
  return mode == kVolumePreserving ? static_cast<T>(partial_sum(v, n, 0, 1) / static_cast<double>(n)) : T(0);
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> affine_forward_cpu(const at::Tensor& x, const at::Tensor& t, const at::Tensor& s,
                                                      AffineOptions o) {
  const int64_t B = x.size(0), n = x.size(1);
  at::Tensor out = at::empty_like(x);
  at::Tensor logabsdet = at::empty({B}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "mfkernels::affine_coupling (cpu)", [&] {
    const scalar_t *xp = x.const_data_ptr<scalar_t>(), *tp = t.const_data_ptr<scalar_t>(),
                   *sp = s.const_data_ptr<scalar_t>();
    scalar_t *op = out.mutable_data_ptr<scalar_t>(), *lp = logabsdet.mutable_data_ptr<scalar_t>();
    const scalar_t clamp = static_cast<scalar_t>(o.clamp);
    at::parallel_for(0, B, grain_for(n), [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        const int64_t r = b * n;
        const scalar_t mean = row_mean(sp + r, n, o.mode);
        double sum_a = 0;
        MFK_WITH_AFFINE_MODE(
            o.mode, kMode,
            sum_a = affine_forward<kMode>(xp + r, tp + r, sp + r, op + r, n, clamp, mean, o.inverse, 0, 1);
            break)
        lp[b] = row_logabsdet<scalar_t>(sum_a, o.mode, o.inverse);
      }
    });
  });
  return {out, logabsdet};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> affine_backward_cpu(const at::Tensor& grad_out,
                                                                   const at::Tensor& grad_logabsdet,
                                                                   const at::Tensor& x, const at::Tensor& t,
                                                                   const at::Tensor& s, AffineOptions o) {
  const int64_t B = x.size(0), n = x.size(1);
  at::Tensor gx = at::empty_like(x), gt = at::empty_like(x), gs = at::empty_like(x);
  // A gradient constant along each row (the expanded one `.sum()` hands back) is read as one value per
  // row: materialising it would write and then read a tensor as large as x.
  const bool row_constant = n > 1 && grad_out.stride(1) == 0;
  const at::Tensor g = row_constant ? grad_out.select(1, 0).contiguous() : grad_out.contiguous();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "mfkernels::affine_coupling_backward (cpu)", [&] {
    const scalar_t *gp = g.const_data_ptr<scalar_t>(), *glp = grad_logabsdet.const_data_ptr<scalar_t>(),
                   *xp = x.const_data_ptr<scalar_t>(), *tp = t.const_data_ptr<scalar_t>(),
                   *sp = s.const_data_ptr<scalar_t>();
    scalar_t *gxp = gx.mutable_data_ptr<scalar_t>(), *gtp = gt.mutable_data_ptr<scalar_t>(),
             *gsp = gs.mutable_data_ptr<scalar_t>();
    const scalar_t clamp = static_cast<scalar_t>(o.clamp);
    at::parallel_for(0, B, grain_for(n), [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        const int64_t r = b * n;
        const scalar_t mean = row_mean(sp + r, n, o.mode);
        double sum_gs = 0;
        if (row_constant) {
          MFK_WITH_AFFINE_MODE(o.mode, kMode,
                               sum_gs = affine_backward<kMode, true>(gp + b, glp[b], xp + r, tp + r, sp + r, gxp + r,
                                                                     gtp + r, gsp + r, n, clamp, mean, o.inverse, 0, 1);
                               break)
        } else {
          MFK_WITH_AFFINE_MODE(o.mode, kMode,
                               sum_gs = affine_backward<kMode>(gp + r, glp[b], xp + r, tp + r, sp + r, gxp + r, gtp + r,
                                                               gsp + r, n, clamp, mean, o.inverse, 0, 1);
                               break)
        }
        if (o.mode == kVolumePreserving)
          subtract_mean(gsp + r, n, static_cast<scalar_t>(sum_gs / static_cast<double>(n)), 0, 1);
      }
    });
  });
  return {gx, gt, gs};
}

std::tuple<at::Tensor, at::Tensor> affine_jvp_cpu(const at::Tensor& x, const at::Tensor& t, const at::Tensor& s,
                                                  const at::Tensor& x_dot, const at::Tensor& t_dot,
                                                  const at::Tensor& s_dot, AffineOptions o) {
  const int64_t B = x.size(0), n = x.size(1);
  at::Tensor out_dot = at::empty_like(x);
  at::Tensor logabsdet_dot = at::empty({B}, x.options());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "mfkernels::affine_coupling_jvp (cpu)", [&] {
    const scalar_t *xp = x.const_data_ptr<scalar_t>(), *tp = t.const_data_ptr<scalar_t>(),
                   *sp = s.const_data_ptr<scalar_t>(), *xdp = x_dot.const_data_ptr<scalar_t>(),
                   *tdp = t_dot.const_data_ptr<scalar_t>(), *sdp = s_dot.const_data_ptr<scalar_t>();
    scalar_t *op = out_dot.mutable_data_ptr<scalar_t>(), *lp = logabsdet_dot.mutable_data_ptr<scalar_t>();
    const scalar_t clamp = static_cast<scalar_t>(o.clamp);
    at::parallel_for(0, B, grain_for(n), [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        const int64_t r = b * n;
        const scalar_t mean = row_mean(sp + r, n, o.mode), dot_mean = row_mean(sdp + r, n, o.mode);
        double sum = 0;
        MFK_WITH_AFFINE_MODE(o.mode, kMode,
                             sum = affine_jvp<kMode>(xp + r, tp + r, sp + r, xdp + r, tdp + r, sdp + r, op + r, n,
                                                     clamp, mean, dot_mean, o.inverse, 0, 1);
                             break)
        lp[b] = row_logabsdet<scalar_t>(sum, o.mode, o.inverse);
      }
    });
  });
  return {out_dot, logabsdet_dot};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> affine_backward_dual_cpu(const at::Tensor& grad_out,
                                                                        const at::Tensor& grad_logabsdet,
                                                                        const at::Tensor& x, const at::Tensor& t,
                                                                        const at::Tensor& s, const at::Tensor& mean,
                                                                        AffineOptions o) {
  const int64_t B = x.size(0), n = x.size(1);
  at::Tensor gx = at::empty_like(x), gt = at::empty_like(x), gs = at::empty_like(x);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "mfkernels::affine_coupling_backward_jvp (cpu)", [&] {
    using D = Dual<scalar_t>;
    auto in_ptr = [](const at::Tensor& v) { return reinterpret_cast<const D*>(v.const_data_ptr<scalar_t>()); };
    auto out_ptr = [](at::Tensor& v) { return reinterpret_cast<D*>(v.mutable_data_ptr<scalar_t>()); };
    const D *gp = in_ptr(grad_out), *glp = in_ptr(grad_logabsdet), *xp = in_ptr(x), *tp = in_ptr(t), *sp = in_ptr(s),
            *mp = in_ptr(mean);
    D *gxp = out_ptr(gx), *gtp = out_ptr(gt), *gsp = out_ptr(gs);
    const D clamp(static_cast<scalar_t>(o.clamp));
    at::parallel_for(0, B, grain_for(n), [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        const int64_t r = b * n;
        MFK_WITH_AFFINE_MODE(o.mode, kMode,
                             affine_backward<kMode>(gp + r, glp[b], xp + r, tp + r, sp + r, gxp + r, gtp + r, gsp + r,
                                                    n, clamp, mp[b], o.inverse, 0, 1);
                             break)
      }
    });
  });
  return {gx, gt, gs};
}

const Kernels kCpuKernels{affine_forward_cpu, affine_backward_cpu, affine_jvp_cpu, affine_backward_dual_cpu};

}  // namespace coupling
}  // namespace mfk

TORCH_LIBRARY_IMPL(mfkernels, CPU, m) { mfk::coupling::register_drivers<mfk::coupling::kCpuKernels>(m); }

// CUDA kernels of the affine coupling family (math in math/coupling.h; drivers in
// ops/coupling.cpp). One thread block per row: threads stride over the row's elements, and the
// row sums (log-determinant, volume_preserving's means) are block reductions in double.
#include "../common/dual.h"
#include "../math/coupling.h"
#include "coupling.cuh"
#include "../ops/coupling.h"

#include <ATen/Dispatch.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <algorithm>

namespace mfk {
namespace coupling {
using namespace device;

namespace {
void check_grid(int64_t B) {
  TORCH_CHECK(B <= 0x7fffffff, "mfkernels.affine_coupling: ", B, " rows exceed the CUDA grid");
}
}  // namespace

std::tuple<at::Tensor, at::Tensor> affine_forward_cuda(const at::Tensor& x, const at::Tensor& t, const at::Tensor& s,
                                                       AffineOptions o) {
  const c10::cuda::CUDAGuard guard(x.device());
  const int64_t B = x.size(0), n = x.size(1);
  at::Tensor out = at::empty_like(x);
  at::Tensor logabsdet = at::empty({B}, x.options());
  if (B == 0) return {out, logabsdet};
  check_grid(B);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "mfkernels::affine_coupling (cuda)", [&] {
    MFK_WITH_AFFINE_MODE(o.mode, kMode,
                         forward_kernel<kMode, scalar_t><<<B, threads_for(n), 0, c10::cuda::getCurrentCUDAStream()>>>(
                             x.const_data_ptr<scalar_t>(), t.const_data_ptr<scalar_t>(), s.const_data_ptr<scalar_t>(),
                             out.mutable_data_ptr<scalar_t>(), logabsdet.mutable_data_ptr<scalar_t>(), n,
                             static_cast<scalar_t>(o.clamp), o.inverse);
                         break)
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {out, logabsdet};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> affine_backward_cuda(const at::Tensor& grad_out_any_layout,
                                                                    const at::Tensor& grad_logabsdet,
                                                                    const at::Tensor& x, const at::Tensor& t,
                                                                    const at::Tensor& s, AffineOptions o) {
  const c10::cuda::CUDAGuard guard(x.device());
  const int64_t B = x.size(0), n = x.size(1);
  at::Tensor gx = at::empty_like(x), gt = at::empty_like(x), gs = at::empty_like(x);
  if (B == 0) return {gx, gt, gs};
  check_grid(B);
  const at::Tensor grad_out = grad_out_any_layout.contiguous();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "mfkernels::affine_coupling_backward (cuda)", [&] {
    MFK_WITH_AFFINE_MODE(o.mode, kMode,
                         backward_kernel<kMode, scalar_t><<<B, threads_for(n), 0, c10::cuda::getCurrentCUDAStream()>>>(
                             grad_out.const_data_ptr<scalar_t>(), grad_logabsdet.const_data_ptr<scalar_t>(),
                             x.const_data_ptr<scalar_t>(), t.const_data_ptr<scalar_t>(), s.const_data_ptr<scalar_t>(),
                             gx.mutable_data_ptr<scalar_t>(), gt.mutable_data_ptr<scalar_t>(),
                             gs.mutable_data_ptr<scalar_t>(), n, static_cast<scalar_t>(o.clamp), o.inverse);
                         break)
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {gx, gt, gs};
}

std::tuple<at::Tensor, at::Tensor> affine_jvp_cuda(const at::Tensor& x, const at::Tensor& t, const at::Tensor& s,
                                                   const at::Tensor& x_dot, const at::Tensor& t_dot,
                                                   const at::Tensor& s_dot, AffineOptions o) {
  const c10::cuda::CUDAGuard guard(x.device());
  const int64_t B = x.size(0), n = x.size(1);
  at::Tensor out_dot = at::empty_like(x);
  at::Tensor logabsdet_dot = at::empty({B}, x.options());
  if (B == 0) return {out_dot, logabsdet_dot};
  check_grid(B);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "mfkernels::affine_coupling_jvp (cuda)", [&] {
    MFK_WITH_AFFINE_MODE(o.mode, kMode,
                         jvp_kernel<kMode, scalar_t><<<B, threads_for(n), 0, c10::cuda::getCurrentCUDAStream()>>>(
                             x.const_data_ptr<scalar_t>(), t.const_data_ptr<scalar_t>(), s.const_data_ptr<scalar_t>(),
                             x_dot.const_data_ptr<scalar_t>(), t_dot.const_data_ptr<scalar_t>(),
                             s_dot.const_data_ptr<scalar_t>(), out_dot.mutable_data_ptr<scalar_t>(),
                             logabsdet_dot.mutable_data_ptr<scalar_t>(), n, static_cast<scalar_t>(o.clamp), o.inverse);
                         break)
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {out_dot, logabsdet_dot};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> affine_backward_dual_cuda(const at::Tensor& grad_out,
                                                                         const at::Tensor& grad_logabsdet,
                                                                         const at::Tensor& x, const at::Tensor& t,
                                                                         const at::Tensor& s, const at::Tensor& mean,
                                                                         AffineOptions o) {
  const c10::cuda::CUDAGuard guard(x.device());
  const int64_t B = x.size(0), n = x.size(1);
  at::Tensor gx = at::empty_like(x), gt = at::empty_like(x), gs = at::empty_like(x);
  if (B == 0) return {gx, gt, gs};
  check_grid(B);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "mfkernels::affine_coupling_backward_jvp (cuda)", [&] {
    using D = Dual<scalar_t>;
    auto in_ptr = [](const at::Tensor& v) { return reinterpret_cast<const D*>(v.const_data_ptr<scalar_t>()); };
    auto out_ptr = [](at::Tensor& v) { return reinterpret_cast<D*>(v.mutable_data_ptr<scalar_t>()); };
    MFK_WITH_AFFINE_MODE(o.mode, kMode,
                         backward_dual_kernel<kMode, D><<<B, threads_for(n), 0, c10::cuda::getCurrentCUDAStream()>>>(
                             in_ptr(grad_out), in_ptr(grad_logabsdet), in_ptr(x), in_ptr(t), in_ptr(s), in_ptr(mean),
                             out_ptr(gx), out_ptr(gt), out_ptr(gs), n, D(static_cast<scalar_t>(o.clamp)), o.inverse);
                         break)
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {gx, gt, gs};
}

const Kernels kCudaKernels{affine_forward_cuda, affine_backward_cuda, affine_jvp_cuda, affine_backward_dual_cuda};

}  // namespace coupling
}  // namespace mfk

TORCH_LIBRARY_IMPL(mfkernels, CUDA, m) { mfk::coupling::register_drivers<mfk::coupling::kCudaKernels>(m); }

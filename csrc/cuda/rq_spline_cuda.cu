// CUDA kernels of the rational-quadratic spline op (math in math/rq_spline.h; drivers in
// ops/rq_spline.cpp): one thread per element over a grid-stride loop; each thread reads its
// element's K-bin parameters, which sit contiguously, so a warp's loads cover one contiguous span.
#include "../common/dual.h"
#include "../math/rq_spline_config.h"
#include "rq_spline.cuh"
#include "../ops/rq_spline.h"

#include <ATen/Dispatch.h>
#include <ATen/ops/empty_like.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <algorithm>

namespace mfk {
namespace rq_spline {
using namespace device;

std::tuple<at::Tensor, at::Tensor> rq_forward_cuda(const at::Tensor& inputs, const at::Tensor& uw, const at::Tensor& uh,
                                                   const at::Tensor& ud, SplineOptions o) {
  const c10::cuda::CUDAGuard guard(inputs.device());
  at::Tensor out = at::empty_like(inputs), logabsdet = at::empty_like(inputs);
  const int64_t n = inputs.numel();
  if (n == 0) return {out, logabsdet};
  AT_DISPATCH_FLOATING_TYPES(inputs.scalar_type(), "mfkernels::rq_spline (cuda)", [&] {
    MFK_WITH_SPLINE_VARIANT(
        o.inverse, o.linear_tails, kInv, kLin,
        forward_kernel<kInv, kLin, scalar_t><<<blocks_for(n), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
            inputs.const_data_ptr<scalar_t>(), uw.const_data_ptr<scalar_t>(), uh.const_data_ptr<scalar_t>(),
            ud.const_data_ptr<scalar_t>(), out.mutable_data_ptr<scalar_t>(), logabsdet.mutable_data_ptr<scalar_t>(), n,
            make_config<scalar_t>(o, uw.size(-1), ud.size(-1))));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {out, logabsdet};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> rq_backward_cuda(const at::Tensor& grad_out,
                                                                            const at::Tensor& grad_logabsdet,
                                                                            const at::Tensor& inputs,
                                                                            const at::Tensor& uw, const at::Tensor& uh,
                                                                            const at::Tensor& ud, SplineOptions o) {
  const c10::cuda::CUDAGuard guard(inputs.device());
  at::Tensor g_in = at::empty_like(inputs), g_w = at::empty_like(uw), g_h = at::empty_like(uh),
             g_d = at::empty_like(ud);
  const int64_t n = inputs.numel();
  if (n == 0) return {g_in, g_w, g_h, g_d};
  AT_DISPATCH_FLOATING_TYPES(inputs.scalar_type(), "mfkernels::rq_spline_backward (cuda)", [&] {
    MFK_WITH_SPLINE_VARIANT(
        o.inverse, o.linear_tails, kInv, kLin,
        backward_kernel<kInv, kLin, scalar_t><<<blocks_for(n), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
            grad_out.const_data_ptr<scalar_t>(), grad_logabsdet.const_data_ptr<scalar_t>(),
            inputs.const_data_ptr<scalar_t>(), uw.const_data_ptr<scalar_t>(), uh.const_data_ptr<scalar_t>(),
            ud.const_data_ptr<scalar_t>(), g_in.mutable_data_ptr<scalar_t>(), g_w.mutable_data_ptr<scalar_t>(),
            g_h.mutable_data_ptr<scalar_t>(), g_d.mutable_data_ptr<scalar_t>(), n,
            make_config<scalar_t>(o, uw.size(-1), ud.size(-1))));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {g_in, g_w, g_h, g_d};
}

std::tuple<at::Tensor, at::Tensor> rq_jvp_cuda(const at::Tensor& inputs, const at::Tensor& uw, const at::Tensor& uh,
                                               const at::Tensor& ud, const at::Tensor& inputs_dot,
                                               const at::Tensor& uw_dot, const at::Tensor& uh_dot,
                                               const at::Tensor& ud_dot, SplineOptions o) {
  const c10::cuda::CUDAGuard guard(inputs.device());
  at::Tensor out_dot = at::empty_like(inputs), logabsdet_dot = at::empty_like(inputs);
  const int64_t n = inputs.numel();
  if (n == 0) return {out_dot, logabsdet_dot};
  AT_DISPATCH_FLOATING_TYPES(inputs.scalar_type(), "mfkernels::rq_spline_jvp (cuda)", [&] {
    MFK_WITH_SPLINE_VARIANT(
        o.inverse, o.linear_tails, kInv, kLin,
        jvp_kernel<kInv, kLin, scalar_t><<<blocks_for(n), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
            inputs.const_data_ptr<scalar_t>(), uw.const_data_ptr<scalar_t>(), uh.const_data_ptr<scalar_t>(),
            ud.const_data_ptr<scalar_t>(), inputs_dot.const_data_ptr<scalar_t>(), uw_dot.const_data_ptr<scalar_t>(),
            uh_dot.const_data_ptr<scalar_t>(), ud_dot.const_data_ptr<scalar_t>(), out_dot.mutable_data_ptr<scalar_t>(),
            logabsdet_dot.mutable_data_ptr<scalar_t>(), n, make_config<scalar_t>(o, uw.size(-1), ud.size(-1))));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {out_dot, logabsdet_dot};
}

// The backward kernel itself, instantiated on dual numbers (see rq_backward_dual_cpu).
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> rq_backward_dual_cuda(
    const at::Tensor& grad_out, const at::Tensor& grad_logabsdet, const at::Tensor& inputs, const at::Tensor& uw,
    const at::Tensor& uh, const at::Tensor& ud, SplineOptions o) {
  const c10::cuda::CUDAGuard guard(inputs.device());
  at::Tensor g_in = at::empty_like(inputs), g_w = at::empty_like(uw), g_h = at::empty_like(uh),
             g_d = at::empty_like(ud);
  const int64_t n = inputs.numel() / 2;
  if (n == 0) return {g_in, g_w, g_h, g_d};
  AT_DISPATCH_FLOATING_TYPES(inputs.scalar_type(), "mfkernels::rq_spline_backward_jvp (cuda)", [&] {
    using D = Dual<scalar_t>;
    auto in_ptr = [](const at::Tensor& t) { return reinterpret_cast<const D*>(t.const_data_ptr<scalar_t>()); };
    auto out_ptr = [](at::Tensor& t) { return reinterpret_cast<D*>(t.mutable_data_ptr<scalar_t>()); };
    MFK_WITH_SPLINE_VARIANT(
        o.inverse, o.linear_tails, kInv, kLin,
        backward_kernel<kInv, kLin, D><<<blocks_for(n), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
            in_ptr(grad_out), in_ptr(grad_logabsdet), in_ptr(inputs), in_ptr(uw), in_ptr(uh), in_ptr(ud), out_ptr(g_in),
            out_ptr(g_w), out_ptr(g_h), out_ptr(g_d), n, make_config<D>(o, uw.size(-2), ud.size(-2))));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {g_in, g_w, g_h, g_d};
}

const Kernels kCudaKernels{rq_forward_cuda, rq_backward_cuda, rq_jvp_cuda, rq_backward_dual_cuda};

}  // namespace rq_spline
}  // namespace mfk

TORCH_LIBRARY_IMPL(mfkernels, CUDA, m) { mfk::rq_spline::register_drivers<mfk::rq_spline::kCudaKernels>(m); }

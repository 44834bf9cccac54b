// CUDA kernels of the affine coupling family (math in math/coupling.h; drivers in
// ops/coupling.cpp). One thread block per row: threads stride over the row's elements, and the
// row sums (log-determinant, volume_preserving's means) are block reductions in double.
#include "../math/coupling.h"
#include "../ops/coupling_kernels.h"

#include <ATen/Dispatch.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <algorithm>

namespace mfk {
namespace coupling {
namespace {

constexpr int kThreads = 256;

// Sum of v over the block, returned to every thread. Safe to call repeatedly in one kernel.
__device__ double block_sum(double v) {
  __shared__ double warp_sums[kThreads / 32];
  __shared__ double total;
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_down_sync(0xffffffffu, v, offset);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  __syncthreads();  // earlier readers of warp_sums/total are done
  if (lane == 0) warp_sums[warp] = v;
  __syncthreads();
  if (threadIdx.x == 0) {
    double s = 0;
    for (int w = 0; w < (blockDim.x + 31) / 32; ++w) s += warp_sums[w];
    total = s;
  }
  __syncthreads();
  return total;
}

template <typename T>
__device__ T block_row_mean(const T* v, int64_t n, int mode) {
  if (mode != kVolumePreserving) return T(0);
  return static_cast<T>(block_sum(partial_sum(v, n, threadIdx.x, blockDim.x)) / static_cast<double>(n));
}

template <int kMode, typename T>
__global__ void forward_kernel(const T* __restrict__ x, const T* __restrict__ t, const T* __restrict__ s,
                               T* __restrict__ out, T* __restrict__ logabsdet, int64_t n, T clamp, bool inverse) {
  const int64_t r = static_cast<int64_t>(blockIdx.x) * n;
  const T mean = block_row_mean(s + r, n, kMode);
  const double sum_a = block_sum(
      affine_forward<kMode>(x + r, t + r, s + r, out + r, n, clamp, mean, inverse, threadIdx.x, blockDim.x));
  if (threadIdx.x == 0) logabsdet[blockIdx.x] = row_logabsdet<T>(sum_a, kMode, inverse);
}

template <int kMode, typename T>
__global__ void backward_kernel(const T* __restrict__ g, const T* __restrict__ gl, const T* __restrict__ x,
                                const T* __restrict__ t, const T* __restrict__ s, T* __restrict__ gx,
                                T* __restrict__ gt, T* __restrict__ gs, int64_t n, T clamp, bool inverse) {
  const int64_t r = static_cast<int64_t>(blockIdx.x) * n;
  const T mean = block_row_mean(s + r, n, kMode);
  const double sum_gs = block_sum(affine_backward<kMode>(g + r, gl[blockIdx.x], x + r, t + r, s + r, gx + r,
                                                         gt + r, gs + r, n, clamp, mean, inverse, threadIdx.x,
                                                         blockDim.x));
  if (kMode == kVolumePreserving)
    subtract_mean(gs + r, n, static_cast<T>(sum_gs / static_cast<double>(n)), threadIdx.x, blockDim.x);
}

template <int kMode, typename T>
__global__ void tangent_kernel(const T* __restrict__ x, const T* __restrict__ t, const T* __restrict__ s,
                               const T* __restrict__ x_dot, const T* __restrict__ t_dot,
                               const T* __restrict__ s_dot, T* __restrict__ out_dot,
                               T* __restrict__ logabsdet_dot, int64_t n, T clamp, bool inverse) {
  const int64_t r = static_cast<int64_t>(blockIdx.x) * n;
  const T mean = block_row_mean(s + r, n, kMode);
  const T dot_mean = block_row_mean(s_dot + r, n, kMode);
  const double sum = block_sum(affine_tangent<kMode>(x + r, t + r, s + r, x_dot + r, t_dot + r, s_dot + r,
                                                     out_dot + r, n, clamp, mean, dot_mean, inverse, threadIdx.x,
                                                     blockDim.x));
  if (threadIdx.x == 0) logabsdet_dot[blockIdx.x] = row_logabsdet<T>(sum, kMode, inverse);
}

int threads_for(int64_t n) { return static_cast<int>(std::min<int64_t>(kThreads, std::max<int64_t>(32, (n + 31) / 32 * 32))); }

void check_grid(int64_t B) {
  TORCH_CHECK(B <= 0x7fffffff, "mfkernels.affine_coupling: ", B, " rows exceed the CUDA grid");
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> affine_forward_cuda(const at::Tensor& x, const at::Tensor& t,
                                                       const at::Tensor& s, AffineOptions o) {
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

std::tuple<at::Tensor, at::Tensor, at::Tensor> affine_backward_cuda(const at::Tensor& grad_out,
                                                                    const at::Tensor& grad_logabsdet,
                                                                    const at::Tensor& x, const at::Tensor& t,
                                                                    const at::Tensor& s, AffineOptions o) {
  const c10::cuda::CUDAGuard guard(x.device());
  const int64_t B = x.size(0), n = x.size(1);
  at::Tensor gx = at::empty_like(x), gt = at::empty_like(x), gs = at::empty_like(x);
  if (B == 0) return {gx, gt, gs};
  check_grid(B);
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

std::tuple<at::Tensor, at::Tensor> affine_tangent_cuda(const at::Tensor& x, const at::Tensor& t,
                                                       const at::Tensor& s, const at::Tensor& x_dot,
                                                       const at::Tensor& t_dot, const at::Tensor& s_dot,
                                                       AffineOptions o) {
  const c10::cuda::CUDAGuard guard(x.device());
  const int64_t B = x.size(0), n = x.size(1);
  at::Tensor out_dot = at::empty_like(x);
  at::Tensor logabsdet_dot = at::empty({B}, x.options());
  if (B == 0) return {out_dot, logabsdet_dot};
  check_grid(B);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "mfkernels::affine_coupling_jvp (cuda)", [&] {
    MFK_WITH_AFFINE_MODE(o.mode, kMode,
                         tangent_kernel<kMode, scalar_t><<<B, threads_for(n), 0, c10::cuda::getCurrentCUDAStream()>>>(
                             x.const_data_ptr<scalar_t>(), t.const_data_ptr<scalar_t>(), s.const_data_ptr<scalar_t>(),
                             x_dot.const_data_ptr<scalar_t>(), t_dot.const_data_ptr<scalar_t>(),
                             s_dot.const_data_ptr<scalar_t>(), out_dot.mutable_data_ptr<scalar_t>(),
                             logabsdet_dot.mutable_data_ptr<scalar_t>(), n, static_cast<scalar_t>(o.clamp), o.inverse);
                         break)
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {out_dot, logabsdet_dot};
}

}  // namespace coupling
}  // namespace mfk

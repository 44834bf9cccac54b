// The affine coupling family's real __global__ kernels (csrc/cuda/coupling.cuh: forward, backward,
// tangent; one block per row, block reductions through __shfl_down_sync and shared memory), run on
// the CPU under csrc/tests/cuda_emulation.h with coupling_cuda.cu's launch configuration, against
// the CPU kernels' sequential math (math/coupling.h with one thread). Per-element outputs agree
// bitwise except where a row mean enters (volume_preserving); row sums are reduced in another order
// on the device, so they agree to a stated tolerance (float 1e-5, double 1e-12, relative to 1 + |sum|).
// Every mode, both directions, both dtypes, rows of 1, 37 and 300 elements (past one block of 256
// threads), each launch with the threads started in both orders.
#include "cuda_emulation.h"

#include "../common/dual.h"
#include "../cuda/coupling.cuh"
#include "expect.h"

#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

using namespace mfk;
using namespace mfk::coupling;
using mfk_emu::Order;
using mfk_test::close;
using mfk_test::same;

template <typename T>
static double tolerance() {
  return sizeof(T) == 4 ? 1e-5 : 1e-12;
}

template <int kMode, typename T>
static void check(int B, int n, bool inverse, std::mt19937& gen) {
  char what[96];
  std::snprintf(what, sizeof what, "%s mode %d B=%d n=%d%s", sizeof(T) == 4 ? "float" : "double", kMode, B, n,
                inverse ? " inverse" : "");
  std::normal_distribution<double> normal;
  auto random = [&](size_t size) {
    std::vector<T> v(size);
    for (auto& e : v) e = static_cast<T>(0.5 * normal(gen));
    return v;
  };
  const size_t N = size_t(B) * n;
  const std::vector<T> x = random(N), t = random(N), s = random(N), g = random(N), gl = random(B), x_dot = random(N),
                       t_dot = random(N), s_dot = random(N);
  const T clamp = T(1.7);
  // sequential reference, as coupling_cpu.cpp computes each row
  std::vector<T> out(N), lad(B), gx(N), gt(N), gs(N), out_dot(N), lad_dot(B);
  for (int b = 0; b < B; ++b) {
    const size_t r = size_t(b) * n;
    const T mean = kMode == kVolumePreserving ? T(partial_sum(s.data() + r, n, 0, 1) / n) : T(0);
    const T dot_mean = kMode == kVolumePreserving ? T(partial_sum(s_dot.data() + r, n, 0, 1) / n) : T(0);
    lad[b] = row_logabsdet<T>(
        affine_forward<kMode>(x.data() + r, t.data() + r, s.data() + r, out.data() + r, n, clamp, mean, inverse, 0, 1),
        kMode, inverse);
    const double sum_gs =
        affine_backward<kMode>(g.data() + r, gl[b], x.data() + r, t.data() + r, s.data() + r, gx.data() + r,
                               gt.data() + r, gs.data() + r, n, clamp, mean, inverse, 0, 1);
    if (kMode == kVolumePreserving) subtract_mean(gs.data() + r, n, T(sum_gs / n), 0, 1);
    lad_dot[b] = row_logabsdet<T>(
        affine_jvp<kMode>(x.data() + r, t.data() + r, s.data() + r, x_dot.data() + r, t_dot.data() + r,
                          s_dot.data() + r, out_dot.data() + r, n, clamp, mean, dot_mean, inverse, 0, 1),
        kMode, inverse);
  }
  const double elementwise_tol = kMode == kVolumePreserving ? tolerance<T>() : 0.0;
  const dim3 grid(B), block(device::threads_for(n));  // coupling_cuda.cu's launch configuration
  for (Order order : {Order::kAscending, Order::kDescending}) {
    std::vector<T> e_out(N, T(-7)), e_lad(B, T(-7)), e_gx(N, T(-7)), e_gt(N, T(-7)), e_gs(N, T(-7)),
        e_out_dot(N, T(-7)), e_lad_dot(B, T(-7));
    mfk_emu::launch(grid, block, 0, order, device::forward_kernel<kMode, T>, x.data(), t.data(), s.data(), e_out.data(),
                    e_lad.data(), int64_t(n), clamp, inverse);
    mfk_emu::launch(grid, block, 0, order, device::backward_kernel<kMode, T>, g.data(), gl.data(), x.data(), t.data(),
                    s.data(), e_gx.data(), e_gt.data(), e_gs.data(), int64_t(n), clamp, inverse);
    mfk_emu::launch(grid, block, 0, order, device::jvp_kernel<kMode, T>, x.data(), t.data(), s.data(), x_dot.data(),
                    t_dot.data(), s_dot.data(), e_out_dot.data(), e_lad_dot.data(), int64_t(n), clamp, inverse);
    EXPECT(close(e_out, out, elementwise_tol), "%s: forward output", what);
    EXPECT(close(e_lad, lad, tolerance<T>()), "%s: logabsdet %g vs %g", what, double(e_lad[0]), double(lad[0]));
    EXPECT(close(e_gx, gx, elementwise_tol) && close(e_gt, gt, elementwise_tol), "%s: grad x / shift", what);
    EXPECT(close(e_gs, gs, kMode == kVolumePreserving ? tolerance<T>() : 0.0), "%s: grad scale", what);
    EXPECT(close(e_out_dot, out_dot, elementwise_tol), "%s: output tangent", what);
    EXPECT(close(e_lad_dot, lad_dot, tolerance<T>()), "%s: logabsdet tangent", what);
  }
  // second order: backward_dual_kernel (affine_backward_dual_cuda's launch) against the row pass on dual
  // numbers that affine_backward_dual_cpu runs; elementwise given the row means, so bitwise equal
  using Dl = Dual<T>;
  auto dual = [](const std::vector<T>& v, const std::vector<T>& w) {
    std::vector<Dl> out(v.size());
    for (size_t i = 0; i < v.size(); ++i) out[i] = Dl(v[i], w[i % w.size()]);
    return out;
  };
  const std::vector<Dl> dg = dual(g, x_dot), dgl = dual(gl, lad), dx = dual(x, x_dot), dt = dual(t, t_dot),
                        ds = dual(s, s_dot);
  std::vector<Dl> means(B);
  for (int b = 0; b < B; ++b) means[b] = Dl(T(0.1 * b), T(-0.2 * b));
  std::vector<Dl> gx2(N), gt2(N), gs2(N);
  for (int b = 0; b < B; ++b) {
    const size_t r = size_t(b) * n;
    affine_backward<kMode>(dg.data() + r, dgl[b], dx.data() + r, dt.data() + r, ds.data() + r, gx2.data() + r,
                           gt2.data() + r, gs2.data() + r, n, Dl(clamp), means[b], inverse, 0, 1);
  }
  auto parts = [](const std::vector<Dl>& v) {
    std::vector<T> out;
    for (const Dl& e : v) out.push_back(e.v), out.push_back(e.d);
    return out;
  };
  for (Order order : {Order::kAscending, Order::kDescending}) {
    std::vector<Dl> e_gx(N, Dl(T(-7))), e_gt(N, Dl(T(-7))), e_gs(N, Dl(T(-7)));
    mfk_emu::launch(grid, block, 0, order, device::backward_dual_kernel<kMode, Dl>, dg.data(), dgl.data(), dx.data(),
                    dt.data(), ds.data(), means.data(), e_gx.data(), e_gt.data(), e_gs.data(), int64_t(n), Dl(clamp),
                    inverse);
    EXPECT(same(parts(e_gx), parts(gx2)) && same(parts(e_gt), parts(gt2)) && same(parts(e_gs), parts(gs2)),
           "%s: backward on dual numbers", what);
  }
}

template <typename T>
static void all_modes(std::mt19937& gen) {
  for (int n : {1, 37, 300})
    for (bool inverse : {false, true}) {
      const int B = n == 300 ? 2 : 3;
      check<kExp, T>(B, n, inverse, gen);
      check<kSoftclamp, T>(B, n, inverse, gen);
      check<kSigmoid, T>(B, n, inverse, gen);
      check<kVolumePreserving, T>(B, n, inverse, gen);
    }
}

int main() {
  std::mt19937 gen(11);
  all_modes<float>(gen);
  all_modes<double>(gen);
  return mfk_test::finish("cuda emulation: coupling kernels");
}

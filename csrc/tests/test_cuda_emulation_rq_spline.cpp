// The rational-quadratic spline's real __global__ kernels (csrc/cuda/rq_spline.cuh: forward, backward,
// tangent; one thread per element over a grid-stride loop), run on the CPU under
// csrc/tests/cuda_emulation.h with rq_spline_cuda.cu's launch configuration, against the CPU
// kernels' per-element math (math/rq_spline.h): the same function per element, so bitwise equal.
// Forward and inverse, linear and bounded tails, K = 1, 8 and 17, n = 1, 255 and 300 elements (a
// partial last block), both dtypes, threads started in both orders; outputs poisoned beforehand.
#include "cuda_emulation.h"

#include "../common/dual.h"
#include "../cuda/rq_spline.cuh"
#include "expect.h"

#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

using namespace mfk;
using namespace mfk::rq_spline;
using mfk_emu::Order;
using mfk_test::close;
using mfk_test::same;

template <bool kInv, bool kLin, typename T>
static void check(int64_t n, int K, std::mt19937& gen) {
  char what[96];
  std::snprintf(what, sizeof what, "%s n=%lld K=%d %s %s tails", sizeof(T) == 4 ? "float" : "double", (long long)n, K,
                kInv ? "inverse" : "forward", kLin ? "linear" : "bounded");
  const int Kd = kLin ? K - 1 : K + 1;
  const T bound = T(2.5), min_d = T(1e-3);
  // as make_config (math/rq_spline_config.h) builds it from the op's options
  const SplineConfig<T> c{
      K, Kd, bound, T(1e-3), T(1e-3), min_d, min_d + softplus_(static_cast<T>(std::log(std::expm1(1.0 - 1e-3))))};
  std::normal_distribution<double> normal;
  std::uniform_real_distribution<double> uniform(-0.999, 0.999);
  auto random = [&](size_t size, double scale) {
    std::vector<T> v(size);
    for (auto& e : v) e = static_cast<T>(scale * normal(gen));
    return v;
  };
  std::vector<T> in(n);
  for (auto& v : in) v = static_cast<T>(kLin ? 1.6 * double(bound) * normal(gen) : double(bound) * uniform(gen));
  const std::vector<T> w = random(size_t(n) * K, 2), h = random(size_t(n) * K, 2), d = random(size_t(n) * Kd, 2),
                       go = random(n, 1), gl = random(n, 1), in_dot = random(n, 1), w_dot = random(size_t(n) * K, 1),
                       h_dot = random(size_t(n) * K, 1), d_dot = random(size_t(n) * Kd, 1);
  std::vector<T> out(n), lad(n), gi(n), gw(size_t(n) * K), gh(size_t(n) * K), gd(size_t(n) * Kd), od(n), ld(n);
  for (int64_t e = 0; e < n; ++e) {  // rq_spline_cpu.cpp's per-element calls
    element_forward<kInv, kLin>(in[e], w.data() + e * K, h.data() + e * K, d.data() + e * Kd, 1, c, out[e], lad[e]);
    element_backward<kInv, kLin>(go[e], gl[e], in[e], w.data() + e * K, h.data() + e * K, d.data() + e * Kd, 1, c,
                                 gi[e], gw.data() + e * K, gh.data() + e * K, gd.data() + e * Kd);
    element_jvp<kInv, kLin>(in[e], w.data() + e * K, h.data() + e * K, d.data() + e * Kd, in_dot[e],
                            w_dot.data() + e * K, h_dot.data() + e * K, d_dot.data() + e * Kd, 1, c, od[e], ld[e]);
  }
  const dim3 grid(device::blocks_for(n)), block(device::kThreads);  // rq_spline_cuda.cu's launches
  for (Order order : {Order::kAscending, Order::kDescending}) {
    std::vector<T> e_out(n, T(-7)), e_lad(n, T(-7)), e_gi(n, T(-7)), e_gw(gw.size(), T(-7)), e_gh(gh.size(), T(-7)),
        e_gd(gd.size(), T(-7)), e_od(n, T(-7)), e_ld(n, T(-7));
    mfk_emu::launch(grid, block, 0, order, device::forward_kernel<kInv, kLin, T>, in.data(), w.data(), h.data(),
                    d.data(), e_out.data(), e_lad.data(), n, c);
    mfk_emu::launch(grid, block, 0, order, device::backward_kernel<kInv, kLin, T>, go.data(), gl.data(), in.data(),
                    w.data(), h.data(), d.data(), e_gi.data(), e_gw.data(), e_gh.data(), e_gd.data(), n, c);
    mfk_emu::launch(grid, block, 0, order, device::jvp_kernel<kInv, kLin, T>, in.data(), w.data(), h.data(), d.data(),
                    in_dot.data(), w_dot.data(), h_dot.data(), d_dot.data(), e_od.data(), e_ld.data(), n, c);
    EXPECT(same(e_out, out) && same(e_lad, lad), "%s: forward", what);
    EXPECT(same(e_gi, gi) && same(e_gw, gw) && same(e_gh, gh) && same(e_gd, gd), "%s: backward", what);
    EXPECT(same(e_od, od) && same(e_ld, ld), "%s: tangent", what);
  }
  // second order: the backward kernel on dual numbers (rq_backward_dual_cuda's launch), against the
  // per-element dual backward the CPU driver runs; values and tangents compared bitwise
  using Dl = Dual<T>;
  const SplineConfig<Dl> cd{
      K, Kd, Dl(c.bound), Dl(c.min_bin_width), Dl(c.min_bin_height), Dl(c.min_derivative), Dl(c.boundary_derivative)};
  auto dual = [](const std::vector<T>& v, const std::vector<T>& t) {
    std::vector<Dl> out(v.size());
    for (size_t i = 0; i < v.size(); ++i) out[i] = Dl(v[i], t[i % t.size()]);
    return out;
  };
  const std::vector<Dl> dgo = dual(go, gl), dgl = dual(gl, go), din = dual(in, in_dot), dw = dual(w, w_dot),
                        dh = dual(h, h_dot), dd = dual(d, d_dot);
  std::vector<Dl> gi2(n), gw2(gw.size()), gh2(gh.size()), gd2(gd.size());
  for (int64_t e = 0; e < n; ++e)
    element_backward<kInv, kLin>(dgo[e], dgl[e], din[e], dw.data() + e * K, dh.data() + e * K, dd.data() + e * Kd, 1,
                                 cd, gi2[e], gw2.data() + e * K, gh2.data() + e * K, gd2.data() + e * Kd);
  auto parts = [](const std::vector<Dl>& v) {
    std::vector<T> out;
    for (const Dl& x : v) out.push_back(x.v), out.push_back(x.d);
    return out;
  };
  for (Order order : {Order::kAscending, Order::kDescending}) {
    std::vector<Dl> e_gi(n, Dl(T(-7))), e_gw(gw.size(), Dl(T(-7))), e_gh(gh.size(), Dl(T(-7))),
        e_gd(gd.size(), Dl(T(-7)));
    mfk_emu::launch(grid, block, 0, order, device::backward_kernel<kInv, kLin, Dl>, dgo.data(), dgl.data(), din.data(),
                    dw.data(), dh.data(), dd.data(), e_gi.data(), e_gw.data(), e_gh.data(), e_gd.data(), n, cd);
    EXPECT(same(parts(e_gi), parts(gi2)) && same(parts(e_gw), parts(gw2)) && same(parts(e_gh), parts(gh2)) &&
               same(parts(e_gd), parts(gd2)),
           "%s: backward on dual numbers", what);
  }
}

template <typename T>
static void all_variants(std::mt19937& gen) {
  for (int64_t n : {1, 255, 300})
    for (int K : {1, 8, 17}) {
      check<false, true, T>(n, K, gen);
      check<true, true, T>(n, K, gen);
      check<false, false, T>(n, K, gen);
      check<true, false, T>(n, K, gen);
    }
}

int main() {
  std::mt19937 gen(3);
  all_variants<float>(gen);
  all_variants<double>(gen);
  return mfk_test::finish("cuda emulation: rq_spline kernels");
}

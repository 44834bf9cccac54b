// The fused block NIF op's real __global__ kernels (csrc/cuda/nif_block.cuh: per-block setup, per-sample
// forward, per-block backward), run on the CPU under csrc/tests/cuda_emulation.h with
// nif_block_cuda.cu's launch configuration, against nif_block_cpu.cpp's loops over the same math
// (math/nif_block.h): bitwise equal. Edges: B = 1 and 130 samples (a partial second block of 128
// threads), P = 1 and 3 blocks, c = 1, 3 and 16 (the largest fused latent block), both dtypes,
// a batch-shared and a per-sample b, threads started in both orders; outputs poisoned beforehand.
#include "cuda_emulation.h"

#include "../cuda/nif_block.cuh"
#include "expect.h"

#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

using namespace mfk;
using namespace mfk::nif_block;
using mfk_emu::Order;
using mfk_test::close;
using mfk_test::same;

template <typename T>
static void check(int64_t B, int64_t P, int r, int c, bool shared_b, std::mt19937& gen) {
  char what[96];
  std::snprintf(what, sizeof what, "%s B=%lld P=%lld r=%d c=%d%s", sizeof(T) == 4 ? "float" : "double", (long long)B,
                (long long)P, r, c, shared_b ? " shared b" : "");
  std::normal_distribution<double> normal;
  auto random = [&](size_t size, double scale, double shift = 0) {
    std::vector<T> v(size);
    for (auto& e : v) e = static_cast<T>(shift + scale * normal(gen));
    return v;
  };
  const std::vector<T> x = random(size_t(B) * P * r, 1), A = random(size_t(P) * r * c, 1.0 / std::sqrt(r)),
                       b = random(size_t(shared_b ? 1 : B) * P * r, 0.3);
  std::vector<T> inv_var(size_t(P) * r), sum_log_sigma(P, T(0));
  for (int64_t p = 0; p < P; ++p)
    for (int i = 0; i < r; ++i) {
      const double log_sigma = -0.5 + 0.2 * normal(gen);
      inv_var[p * r + i] = static_cast<T>(std::exp(-2 * log_sigma));
      sum_log_sigma[p] += static_cast<T>(log_sigma);
    }
  const int64_t b_stride = shared_b ? 0 : P * r;
  const std::vector<T> g1 = random(B, 1), g2 = random(B, 1), gm = random(size_t(B) * P * c, 1),
                       gp = random(size_t(B) * P * c, 1);
  // reference: nif_block_cpu.cpp's loops
  std::vector<T> K1(size_t(P) * c * c), K0(size_t(P) * c * c), logdets(2 * P), t(size_t(B) * P * r),
      u(size_t(B) * P * c), zm(size_t(B) * P * c), zp(size_t(B) * P * c), log_px(B), manifold(B), gx(size_t(B) * P * r),
      gA(size_t(P) * r * c), gls(size_t(P) * r);
  for (int64_t p = 0; p < P; ++p)
    block_setup(A.data() + p * r * c, inv_var.data() + p * r, r, c, K1.data() + p * c * c, K0.data() + p * c * c,
                logdets.data() + 2 * p);
  for (int64_t n = 0; n < B; ++n) {
    T lp = 0, mf = 0;
    for (int64_t p = 0; p < P; ++p) {
      const int64_t row = n * P + p;
      T quad, u_zm, u_zp;
      sample_forward(x.data() + row * r, b.data() + n * b_stride + p * r, A.data() + p * r * c, inv_var.data() + p * r,
                     K1.data() + p * c * c, K0.data() + p * c * c, r, c, t.data() + row * r, u.data() + row * c,
                     zm.data() + row * c, zp.data() + row * c, quad, u_zm, u_zp);
      add_block_terms(quad, u_zm, u_zp, sum_log_sigma[p], logdets.data() + 2 * p, r, c, lp, mf);
    }
    log_px[n] = lp;
    manifold[n] = mf;
  }
  for (int64_t p = 0; p < P; ++p)
    block_backward(B, g1.data(), g2.data(), gm.data() + p * c, gp.data() + p * c, A.data() + p * r * c,
                   inv_var.data() + p * r, t.data() + p * r, zm.data() + p * c, zp.data() + p * c,
                   K1.data() + p * c * c, K0.data() + p * c * c, r, c, P * r, P * c, gx.data() + p * r,
                   gA.data() + p * r * c, gls.data() + p * r);
  for (Order order : {Order::kAscending, Order::kDescending}) {
    auto poison = [](size_t size) { return std::vector<T>(size, T(-7)); };
    std::vector<T> eK1 = poison(K1.size()), eK0 = poison(K0.size()), eld = poison(logdets.size()),
                   et = poison(t.size()), eu = poison(u.size()), ezm = poison(zm.size()), ezp = poison(zp.size()),
                   elp = poison(B), emf = poison(B), egx = poison(gx.size()), egA = poison(gA.size()),
                   egls = poison(gls.size());
    const dim3 block(device::kThreads);  // nif_block_cuda.cu's launches
    mfk_emu::launch(dim3(device::blocks_for(P)), block, 0, order, device::setup_kernel<T>, P, A.data(), inv_var.data(),
                    r, c, eK1.data(), eK0.data(), eld.data());
    mfk_emu::launch(dim3(device::blocks_for(B)), block, 0, order, device::forward_kernel<T>, B, P, x.data(), b.data(),
                    b_stride, A.data(), inv_var.data(), sum_log_sigma.data(), eK1.data(), eK0.data(), eld.data(), r, c,
                    et.data(), eu.data(), ezm.data(), ezp.data(), elp.data(), emf.data());
    mfk_emu::launch(dim3(device::blocks_for(P)), block, 0, order, device::backward_kernel<T>, B, P, g1.data(),
                    g2.data(), gm.data(), gp.data(), A.data(), inv_var.data(), et.data(), ezm.data(), ezp.data(),
                    eK1.data(), eK0.data(), r, c, egx.data(), egA.data(), egls.data());
    EXPECT(same(eK1, K1) && same(eK0, K0) && same(eld, logdets), "%s: block setup", what);
    EXPECT(same(et, t) && same(eu, u) && same(ezm, zm) && same(ezp, zp), "%s: per-sample latents", what);
    EXPECT(same(elp, log_px) && same(emf, manifold), "%s: log p(x) / manifold term", what);
    EXPECT(same(egx, gx) && same(egA, gA) && same(egls, gls), "%s: backward", what);
  }
}

int main() {
  std::mt19937 gen(5);
  const int cases[][4] = {{1, 1, 3, 1}, {130, 3, 6, 3}, {4, 2, 20, 16}, {3, 1, 16, 16}};
  for (const auto& k : cases)
    for (bool shared_b : {false, true}) {
      check<float>(k[0], k[1], k[2], k[3], shared_b, gen);
      check<double>(k[0], k[1], k[2], k[3], shared_b, gen);
    }
  return mfk_test::finish("cuda emulation: nif_block kernels");
}

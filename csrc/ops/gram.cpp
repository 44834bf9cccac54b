// Torch-facing layer of the Gram log-determinant family: schemas, input checks, the device-generic drivers
// (ops/gram.h; each device file registers them on its kernels), Meta (shape) kernels, and the Autograd
// kernel of the one-call op gram_logdet (for C++ and TorchScript users; Python wraps the primitives).
//
//   gram_logdet(J, rtol=None)             -> 0.5 log det(J^T J), shape J.shape[:-2]   (differentiable)
//   gram_logdet_forward(J, rtol=None)     -> (half_logdet, L, perm)   P^T J^T J P = L L^T, saved
//   gram_logdet_backward(grad, J, L, perm)-> grad * J (J^T J)^{-1}            (no refactorisation)
//   gram_logdet_jvp(J, L, perm, J_dot)    -> tr((J^T J)^{-1} J^T J_dot)      (forward-mode tangent)
//
// The derivative d/dJ 0.5 log det(J^T J) = J (J^T J)^{-1} and its contraction with a tangent are
// what M-flow (paper 000) and chart flows (004, eq. 2) need for exact injective-flow densities.
#include "../math/gram.h"
#include "checks.h"
#include "gram.h"

#include <ATen/ops/empty.h>
#include <ATen/ops/matmul.h>
#include <ATen/ops/ones.h>
#include <ATen/ops/sum.h>
#include <c10/core/SymInt.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>

#include <limits>
#include <vector>

namespace mfk {
namespace gram {
namespace {

using at::Tensor;

// J must be (..., D, d) with D >= d >= 1. Works on symbolic sizes so Meta kernels share it.
void check_jacobian(const Tensor& J, const char* op) {
  check_floating(op, "J", J);
  TORCH_CHECK(J.dim() >= 2, op, ": argument 'J' must have shape (..., D, d), got a ", J.dim(), "-d tensor");
  const c10::SymInt& D = J.sym_size(-2);
  const c10::SymInt& d = J.sym_size(-1);
  TORCH_CHECK(d >= 1 && D >= 1, op, ": argument 'J' must have D >= 1 and d >= 1 in (..., D, d), got ", J.sym_sizes());
  TORCH_CHECK(D >= d, op, ": argument 'J' must have D >= d (an injective map's Jacobian, (..., D, d)), got D = ", D,
              ", d = ", d);
}

double resolve_rtol(std::optional<double> rtol, const Tensor& J) {
  if (rtol.has_value()) {
    TORCH_CHECK(*rtol >= 0.0 && *rtol < 1.0, "mfkernels.gram_logdet: argument 'rtol' must be in [0, 1), got ", *rtol);
    return *rtol;
  }
  // A pivot below d * eps of the largest diagonal entry of J^T J is rounding noise: J^T J is then
  // singular to working precision, the same criterion numpy.linalg.matrix_rank applies to it.
  const double eps =
      J.scalar_type() == at::kFloat ? std::numeric_limits<float>::epsilon() : std::numeric_limits<double>::epsilon();
  return static_cast<double>(J.size(-1)) * eps;
}

std::vector<int64_t> batch_shape(const Tensor& J) {
  return std::vector<int64_t>(J.sizes().begin(), J.sizes().end() - 2);
}

std::vector<c10::SymInt> sym_batch_shape(const Tensor& J) {
  return std::vector<c10::SymInt>(J.sym_sizes().begin(), J.sym_sizes().end() - 2);
}

Tensor as_batched_matrices(const Tensor& t, int64_t B) { return t.reshape({B, t.size(-2), t.size(-1)}).contiguous(); }

// Checks the saved factor (L, perm) against J: J's batch shape + (d, d) and + (d,), J's device.
void check_factor(const Tensor& J, const Tensor& L, const Tensor& perm, const char* op) {
  check_jacobian(J, op);
  check_floating(op, "L", L);
  check_same_device_dtype(op, "L", L, "J", J);
  TORCH_CHECK(L.dim() == J.dim() && L.sym_size(-1) == J.sym_size(-1) && L.sym_size(-2) == J.sym_size(-1), op,
              ": argument 'L' must be the factor returned by gram_logdet_forward, shape (..., d, d) = ",
              sym_batch_shape(J), " + [", J.sym_size(-1), ", ", J.sym_size(-1), "], got ", L.sym_sizes());
  for (int64_t i = 0; i < J.dim() - 2; ++i) {
    TORCH_CHECK(L.sym_size(i) == J.sym_size(i), op, ": argument 'L' has batch shape ", L.sym_sizes(), " but 'J' has ",
                J.sym_sizes());
  }
  TORCH_CHECK(perm.defined() && perm.scalar_type() == at::kLong, op,
              ": argument 'perm' must be the int64 permutation returned by gram_logdet_forward");
  TORCH_CHECK(perm.device() == J.device(), op, ": argument 'perm' is on ", perm.device(), " but 'J' is on ",
              J.device());
  TORCH_CHECK(perm.sym_sizes() == L.sym_sizes().slice(0, L.dim() - 1), op, ": argument 'perm' must have shape ",
              L.sym_sizes().slice(0, L.dim() - 1), ", got ", perm.sym_sizes());
}

// The saved permutation's values (CPU: d entries per matrix, read here). On CUDA reading them would
// cost a device synchronisation; the kernel turns a perm that is not a permutation into NaN instead.
void check_perm_values(const Tensor& perm, int64_t d, const char* op) {
  if (!perm.is_cpu()) return;
  const Tensor p = perm.reshape({-1, d}).contiguous();
  const int64_t* v = p.const_data_ptr<int64_t>();
  std::vector<unsigned char> seen(static_cast<size_t>(d));
  for (int64_t b = 0; b < p.size(0); ++b)
    TORCH_CHECK(is_permutation(v + b * d, static_cast<int>(d), seen.data()), op,
                ": argument 'perm' must be the permutation returned by gram_logdet_forward (each of 0..", d - 1,
                " once per matrix); matrix ", b, " is not");
}

void check_batch_tensor(const Tensor& J, const Tensor& t, const char* op, const char* name) {
  check_floating(op, name, t);
  check_same_device_dtype(op, name, t, "J", J);
  const auto expected = sym_batch_shape(J);
  TORCH_CHECK(t.sym_sizes() == c10::SymIntArrayRef(expected), op, ": argument '", name, "' must have J's batch shape ",
              expected, ", got ", t.sym_sizes());
}

}  // namespace

// ---- drivers ----

std::tuple<Tensor, Tensor, Tensor> gram_logdet_forward(const Kernels& device, const Tensor& J,
                                                       std::optional<double> rtol) {
  check_jacobian(J, "mfkernels.gram_logdet");
  const auto batch = batch_shape(J);
  const int64_t B = c10::multiply_integers(batch);
  const int64_t D = J.size(-2), d = J.size(-1);
  TORCH_CHECK(D * d < std::numeric_limits<int>::max(), "mfkernels.gram_logdet: argument 'J' has D * d = ", D * d,
              " entries per matrix; at most 2^31 - 1 are supported");
  auto [half_logdet, L, perm] = device.factor(as_batched_matrices(J, B), resolve_rtol(rtol, J));
  std::vector<int64_t> factor_shape(batch);
  factor_shape.push_back(d);
  const Tensor perm_out = perm.view(factor_shape);
  factor_shape.push_back(d);
  return {half_logdet.view(batch), L.view(factor_shape), perm_out};
}

Tensor gram_logdet(const Kernels& device, const Tensor& J, std::optional<double> rtol) {
  return std::get<0>(gram_logdet_forward(device, J, rtol));
}

Tensor gram_logdet_backward(const Kernels& device, const Tensor& grad, const Tensor& J, const Tensor& L,
                            const Tensor& perm) {
  const char* op = "mfkernels.gram_logdet_backward";
  check_factor(J, L, perm, op);
  check_batch_tensor(J, grad, op, "grad");
  check_perm_values(perm, J.size(-1), op);
  const int64_t B = c10::multiply_integers(batch_shape(J));
  return device
      .jacobian_times_inverse(as_batched_matrices(J, B), as_batched_matrices(L, B),
                              perm.reshape({B, J.size(-1)}).contiguous(), grad.reshape({B}).contiguous())
      .view(J.sizes());
}

Tensor gram_logdet_jvp(const Kernels& device, const Tensor& J, const Tensor& L, const Tensor& perm,
                       const Tensor& J_dot) {
  const char* op = "mfkernels.gram_logdet_jvp";
  check_factor(J, L, perm, op);
  check_floating(op, "J_dot", J_dot);
  check_same_device_dtype(op, "J_dot", J_dot, "J", J);
  TORCH_CHECK(J_dot.sym_sizes() == J.sym_sizes(), op, ": argument 'J_dot' must have J's shape ", J.sym_sizes(),
              ", got ", J_dot.sym_sizes());
  check_perm_values(perm, J.size(-1), op);
  const auto batch = batch_shape(J);
  const int64_t B = c10::multiply_integers(batch);
  const Tensor JW =
      device.jacobian_times_inverse(as_batched_matrices(J, B), as_batched_matrices(L, B),
                                    perm.reshape({B, J.size(-1)}).contiguous(), at::ones({B}, J.options()));
  return at::sum(JW.mul(as_batched_matrices(J_dot, B)), {-2, -1}).view(batch);
}

// ---- Meta kernels: shapes only, symbolic so torch.compile(dynamic=True) and export trace them ----

namespace {

std::tuple<Tensor, Tensor, Tensor> gram_logdet_forward_meta(const Tensor& J, std::optional<double> rtol) {
  check_jacobian(J, "mfkernels.gram_logdet");
  auto batch = sym_batch_shape(J);
  Tensor half_logdet = at::empty_symint(batch, J.options());
  batch.push_back(J.sym_size(-1));
  Tensor perm = at::empty_symint(batch, J.options().dtype(at::kLong));
  batch.push_back(J.sym_size(-1));
  return {half_logdet, at::empty_symint(batch, J.options()), perm};
}

Tensor gram_logdet_meta(const Tensor& J, std::optional<double> rtol) {
  return std::get<0>(gram_logdet_forward_meta(J, rtol));
}

Tensor gram_logdet_backward_meta(const Tensor& grad, const Tensor& J, const Tensor& L, const Tensor& perm) {
  check_factor(J, L, perm, "mfkernels.gram_logdet_backward");
  check_batch_tensor(J, grad, "mfkernels.gram_logdet_backward", "grad");
  return at::empty_symint(J.sym_sizes(), J.options());
}

Tensor gram_logdet_jvp_meta(const Tensor& J, const Tensor& L, const Tensor& perm, const Tensor& J_dot) {
  check_factor(J, L, perm, "mfkernels.gram_logdet_jvp");
  return at::empty_symint(sym_batch_shape(J), J.options());
}

// ---- Autograd kernel for the one-call op (C++ and TorchScript users; Python wraps the primitives
// in an autograd.Function that also supplies jvp and vmap) ----

class GramLogdetFunction : public torch::autograd::Function<GramLogdetFunction> {
 public:
  static Tensor forward(torch::autograd::AutogradContext* ctx, const Tensor& J, std::optional<double> rtol) {
    static auto op = c10::Dispatcher::singleton()
                         .findSchemaOrThrow("mfkernels::gram_logdet_forward", "")
                         .typed<std::tuple<Tensor, Tensor, Tensor>(const Tensor&, std::optional<double>)>();
    auto [half_logdet, L, perm] = op.call(J, rtol);
    ctx->save_for_backward({J, L, perm});
    return half_logdet;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_outputs) {
    static auto op = c10::Dispatcher::singleton()
                         .findSchemaOrThrow("mfkernels::gram_logdet_backward", "")
                         .typed<Tensor(const Tensor&, const Tensor&, const Tensor&, const Tensor&)>();
    const auto saved = ctx->get_saved_variables();
    return {op.call(grad_outputs[0].contiguous(), saved[0], saved[1], saved[2]), Tensor()};
  }
};

Tensor gram_logdet_autograd(const Tensor& J, std::optional<double> rtol) { return GramLogdetFunction::apply(J, rtol); }

}  // namespace
}  // namespace gram
}  // namespace mfk

TORCH_LIBRARY_FRAGMENT(mfkernels, m) {
  m.def("gram_logdet(Tensor J, float? rtol=None) -> Tensor");
  m.def("gram_logdet_forward(Tensor J, float? rtol=None) -> (Tensor half_logdet, Tensor L, Tensor perm)");
  m.def("gram_logdet_backward(Tensor grad, Tensor J, Tensor L, Tensor perm) -> Tensor");
  m.def("gram_logdet_jvp(Tensor J, Tensor L, Tensor perm, Tensor J_dot) -> Tensor");
}

TORCH_LIBRARY_IMPL(mfkernels, Meta, m) {
  m.impl("gram_logdet", mfk::gram::gram_logdet_meta);
  m.impl("gram_logdet_forward", mfk::gram::gram_logdet_forward_meta);
  m.impl("gram_logdet_backward", mfk::gram::gram_logdet_backward_meta);
  m.impl("gram_logdet_jvp", mfk::gram::gram_logdet_jvp_meta);
}

TORCH_LIBRARY_IMPL(mfkernels, Autograd, m) { m.impl("gram_logdet", mfk::gram::gram_logdet_autograd); }

// Argument checks shared by the Torch-facing op files: every message names the op and the argument
// and says what was expected.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/SymIntArrayRef.h>
#include <c10/util/Exception.h>

namespace mfk {

using at::Tensor;

inline void check_floating(const Tensor& t, const char* op, const char* name) {
  TORCH_CHECK(t.defined(), op, ": argument '", name, "' is undefined");
  TORCH_CHECK(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble, op, ": argument '",
              name, "' must be float32 or float64, got ", t.scalar_type());
}

inline void check_same_device_dtype(const Tensor& ref, const char* ref_name, const Tensor& t,
                             const char* op, const char* name) {
  TORCH_CHECK(t.device() == ref.device(), op, ": argument '", name, "' is on ", t.device(),
              " but '", ref_name, "' is on ", ref.device(), "; move both to one device");
  TORCH_CHECK(t.scalar_type() == ref.scalar_type(), op, ": argument '", name, "' has dtype ",
              t.scalar_type(), " but '", ref_name, "' has dtype ", ref.scalar_type());
}

// `what` names the expected shape in words, e.g. "(N, K)".
inline void check_shape(const Tensor& t, const char* name, c10::SymIntArrayRef expected, const char* what, const char* op) {
  TORCH_CHECK(t.sym_sizes() == expected, op, ": argument '", name, "' must have shape ", what, " = ", expected,
              ", got ", t.sym_sizes());
}

}  // namespace mfk

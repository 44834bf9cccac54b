// Argument checks shared by every op family's ops/<op>.cpp. One argument order throughout: the op's name,
// the argument's name, the tensor, then what is expected of it. Every message names the op and the
// argument and says what was expected. Shapes are read as SymInts, so the Meta kernels run the same checks.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/SymIntArrayRef.h>
#include <c10/util/Exception.h>

namespace mfk {

using at::Tensor;

inline void check_floating(const char* op, const char* name, const Tensor& t) {
  TORCH_CHECK(t.defined(), op, ": argument '", name, "' is undefined");
  TORCH_CHECK(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble, op, ": argument '", name,
              "' must be float32 or float64, got ", t.scalar_type());
}

// t must live on ref's device with ref's dtype.
inline void check_same_device_dtype(const char* op, const char* name, const Tensor& t, const char* ref_name,
                                    const Tensor& ref) {
  TORCH_CHECK(t.defined(), op, ": argument '", name, "' is undefined");
  TORCH_CHECK(t.device() == ref.device(), op, ": argument '", name, "' is on ", t.device(), " but '", ref_name,
              "' is on ", ref.device(), "; move both to one device");
  TORCH_CHECK(t.scalar_type() == ref.scalar_type(), op, ": argument '", name, "' has dtype ", t.scalar_type(), " but '",
              ref_name, "' has dtype ", ref.scalar_type());
}

// `what` names the expected shape in words, e.g. "(N, K)".
inline void check_shape(const char* op, const char* name, const Tensor& t, c10::SymIntArrayRef expected,
                        const char* what) {
  TORCH_CHECK(t.sym_sizes() == expected, op, ": argument '", name, "' must have shape ", what, " = ", expected,
              ", got ", t.sym_sizes());
}

// t must be a tensor like ref: its device, dtype and shape.
inline void check_like(const char* op, const char* name, const Tensor& t, const char* ref_name, const Tensor& ref) {
  check_same_device_dtype(op, name, t, ref_name, ref);
  TORCH_CHECK(t.sym_sizes() == ref.sym_sizes(), op, ": argument '", name, "' must have shape ", ref.sym_sizes(),
              " like '", ref_name, "', got ", t.sym_sizes());
}

}  // namespace mfk

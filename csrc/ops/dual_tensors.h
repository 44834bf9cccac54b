// Tensors of dual numbers for the second-order drivers (`<op>_backward_jvp`): values and tangents
// stacked in a trailing dim of 2, which the kernels read as arrays of Dual<T> (common/dual.h), and the
// tangent half of a result back as a contiguous tensor.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/stack.h>

namespace mfk {

inline at::Tensor dual_tensor(const at::Tensor& value, const at::Tensor& tangent) {
  return at::stack({value, tangent}, -1);
}

inline at::Tensor tangent_part(const at::Tensor& dual) { return dual.select(-1, 1).contiguous(); }

}  // namespace mfk

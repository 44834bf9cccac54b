// How a device file registers an op family's drivers for its dispatch key, one shape for every family.
//
// A family's drivers (ops/<op>.cpp) are device-generic: they check the arguments, lay the tensors out and
// call the device's kernels, which they receive as their first argument, a `Kernels` table of function
// pointers (declared in ops/<op>.h). cpu/<op>_cpu.cpp and cuda/<op>_cuda.cu each fill one table and
// register the drivers bound to it under their own key (as pytorch/extension-cpp's .cu files do), so no
// driver branches on the device or on `MFK_WITH_CUDA`:
//
//   const Kernels kCpuKernels{...};
//   TORCH_LIBRARY_IMPL(mfkernels, CPU, m) { register_drivers<kCpuKernels>(m); }
#pragma once

#include <utility>

namespace mfk {

template <const auto& kKernels, auto driver>
struct BoundDriver;

// driver(kernels, args...) seen by the dispatcher as a plain function of args...
template <const auto& kKernels, class Kernels, class Result, class... Args, Result (*driver)(const Kernels&, Args...)>
struct BoundDriver<kKernels, driver> {
  static Result call(Args... args) { return driver(kKernels, std::forward<Args>(args)...); }
};

// The function to hand to `m.impl` for `driver` running on the kernels table `kKernels`.
template <const auto& kKernels, auto driver>
constexpr auto on_device = &BoundDriver<kKernels, driver>::call;

}  // namespace mfk

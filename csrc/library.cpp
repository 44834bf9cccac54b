// Root of the `mfkernels` torch library: the namespace itself and build facts for `mfkernels info`.
// Op families add their schemas with TORCH_LIBRARY_FRAGMENT in ops/<family>.cpp.
#include <torch/library.h>

#include <string>

#ifdef MFK_WITH_CUDA
namespace mfk {
const char* cuda_arch_list();  // cuda/library_cuda.cu: only nvcc knows what it compiled for
}  // namespace mfk
#endif

namespace {

// "key=value;..." so the Python side parses it without a JSON dependency in C++.
std::string build_info() {
  std::string info = "version=" MFK_VERSION ";";
#ifdef MFK_WITH_CUDA
  info += "cuda=1;cuda_archs=";
  info += mfk::cuda_arch_list();
#else
  info += "cuda=0;cuda_archs=";
#endif
  return info;
}

}  // namespace

TORCH_LIBRARY(mfkernels, m) { m.def("_build_info() -> str", &build_info); }

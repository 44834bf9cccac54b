// The build fact only nvcc knows: the CUDA architectures this library was compiled for, read by
// library.cpp's _build_info (`mfkernels info`).
namespace mfk {

// The compiler's own record of the architectures this file was built for (nvcc defines it on the
// host pass too), so `mfkernels info` reports what was compiled, not what was asked for.
#define MFK_STR2(x) #x
#define MFK_STR(x) MFK_STR2(x)
const char* cuda_arch_list() {
#ifdef __CUDA_ARCH_LIST__
  return MFK_STR(__CUDA_ARCH_LIST__);
#else
  return "unknown";
#endif
}

}  // namespace mfk

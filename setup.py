"""Builds mfkernels' compiled ops with torch.utils.cpp_extension (ninja).

CPU kernels are always built. CUDA kernels are built when the installed torch has CUDA and nvcc is
found; MFKERNELS_CUDA=1 forces them (and fails if impossible), MFKERNELS_CUDA=0 disables them.
TORCH_CUDA_ARCH_LIST and MAX_JOBS are honoured by cpp_extension itself.

CPU kernels are compiled for the building machine's processor (-march=native: AVX2/FMA/AVX-512
where present, about 3x faster elementwise kernels than baseline x86-64), since mfkernels is always
built from source against the local torch. MFKERNELS_CPU_ARCH=<gcc -march value> picks another
target (e.g. x86-64 for a wheel meant for other machines); MFKERNELS_CPU_ARCH=none adds no flag.

torch is never installed or upgraded by this build: it compiles against the torch already present,
so build with `pip install --no-build-isolation ...`.
"""

import glob
import os
import re
import shutil
import subprocess
import sys

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))


def _require_torch():
    try:
        import torch  # noqa: F401
    except ImportError:
        sys.exit(
            "mfkernels: PyTorch is not installed. mfkernels compiles against the torch you run and "
            "never installs one itself. Install torch first (`pip install -r requirements.txt` for "
            "the tested CPU build, or the wheel for your CUDA from pytorch.org), then run "
            "`pip install --no-build-isolation -e .`"
        )
    return torch


def _version():
    text = open(os.path.join(HERE, "mfkernels", "_version.py")).read()
    return re.search(r'__version__ = "([^"]+)"', text).group(1)


def _want_cuda(torch, cuda_home):
    flag = os.environ.get("MFKERNELS_CUDA")
    possible = torch.version.cuda is not None and cuda_home is not None
    if flag not in (None, "", "0", "1"):
        sys.exit(f"mfkernels: MFKERNELS_CUDA must be 0 or 1, got {flag!r}")
    if flag == "1" and not possible:
        why = "torch is a CPU-only build" if torch.version.cuda is None else "nvcc/CUDA_HOME not found"
        sys.exit(f"mfkernels: MFKERNELS_CUDA=1 but CUDA kernels cannot be built here: {why}")
    return possible if flag in (None, "") else flag == "1"


def _cpu_arch_flags():
    arch = os.environ.get("MFKERNELS_CPU_ARCH", "native")
    return [] if arch in ("", "none") else [f"-march={arch}"]


_STATIC_RUNTIME_HELP = (
    "mfkernels must share torch's C++ runtime (libstdc++.so): a private static copy keeps its own locale "
    "and iostream state, and the first error message that crosses into torch's libc10 then crashes the "
    "process (seen with CXX=/opt/gcc/bin/g++ on a CUDA image whose compiler links libstdc++ statically). "
    "Build with a compiler that links libstdc++ dynamically, e.g. `CXX=/usr/bin/g++ CC=/usr/bin/gcc`."
)


def _check_cxx_runtime():
    """Fails fast when the C++ compiler the build will use has no shared libstdc++ to link."""
    words = os.environ.get("CXX", "c++").split() or ["c++"]
    cxx = words[1] if len(words) > 1 and os.path.basename(words[0]) in ("ccache", "sccache") else words[0]
    try:
        found = subprocess.run([cxx, "-print-file-name=libstdc++.so"], capture_output=True, text=True,
                               timeout=60).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return  # no such compiler: cpp_extension reports that itself
    if found and os.path.sep not in found:  # the compiler knows no shared libstdc++, only a static one
        sys.exit(f"mfkernels: the C++ compiler {cxx!r} has no shared libstdc++. {_STATIC_RUNTIME_HELP}")


def _needed_libraries(path):
    """DT_NEEDED entries of a built ELF library (None when readelf is unavailable)."""
    readelf = shutil.which("readelf")
    if readelf is None:
        return None
    out = subprocess.run([readelf, "-d", path], capture_output=True, text=True, timeout=60).stdout
    return re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", out)


def _build_ext_class():
    from torch.utils.cpp_extension import BuildExtension

    class BuildAndCheck(BuildExtension):
        """cpp_extension's build, then a check that the library links the shared C++ runtime."""

        def build_extension(self, ext):
            super().build_extension(ext)
            path = self.get_ext_fullpath(ext.name)
            needed = _needed_libraries(path) if sys.platform.startswith("linux") else None
            if needed is not None and not any(n.startswith("libstdc++.so") for n in needed):
                os.remove(path)  # an import then fails cleanly ("compiled ops are missing")
                raise RuntimeError(f"mfkernels: {path} links no shared libstdc++ (it needs {needed}). "
                                   f"{_STATIC_RUNTIME_HELP}")

    return BuildAndCheck.with_options(use_ninja=True)


def _extensions():
    torch = _require_torch()
    _check_cxx_runtime()
    from torch.utils.cpp_extension import CUDA_HOME, CppExtension, CUDAExtension

    with_cuda = _want_cuda(torch, CUDA_HOME)
    if with_cuda and not glob.glob(os.path.join(CUDA_HOME, "lib*", "libcudart.so*")):
        # torch guesses CUDA_HOME from the nvcc on PATH; a wrapper in /usr/local/bin makes it /usr/local
        sys.exit(f"mfkernels: CUDA_HOME={CUDA_HOME} has no lib64/libcudart.so, so the CUDA kernels cannot be "
                 f"linked; set CUDA_HOME to the CUDA toolkit's folder (e.g. /usr/local/cuda)")
    sources = sorted(
        glob.glob("csrc/*.cpp") + glob.glob("csrc/ops/*.cpp") + glob.glob("csrc/cpu/*.cpp")
    )
    macros = [("MFK_VERSION", f'"{_version()}"')]
    # ATen's parallel_for is an inline `#pragma omp parallel`: without OpenMP it runs serially.
    # -fno-trapping-math lets gcc turn the branch-free selects of the shared math (e.g. exp_) into
    # SIMD blends; nothing here reads floating-point exception flags. -fno-math-errno likewise lets
    # sqrt be one instruction instead of a branch to libm for errno (nothing here reads errno).
    cxx = ["-O3", "-fopenmp", "-fno-trapping-math", "-fno-math-errno"] + _cpu_arch_flags()
    if with_cuda:
        sources += sorted(glob.glob("csrc/cuda/*.cu"))
        macros.append(("MFK_WITH_CUDA", None))
    extension = CUDAExtension if with_cuda else CppExtension
    print(f"mfkernels: building CPU{' + CUDA' if with_cuda else ''} kernels", file=sys.stderr)
    return [
        extension(
            name="mfkernels._C",
            sources=sources,
            define_macros=macros,
            extra_compile_args={"cxx": cxx, "nvcc": ["-O3", "--expt-relaxed-constexpr"]},
            extra_link_args=["-fopenmp"],
        )
    ], torch


def main():
    ext_modules, torch = _extensions()
    setup(
        version=_version(),
        packages=find_packages(include=["mfkernels", "mfkernels.*"]),
        ext_modules=ext_modules,
        cmdclass={"build_ext": _build_ext_class()},
    )


if __name__ == "__main__":
    main()

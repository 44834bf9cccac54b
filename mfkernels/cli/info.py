"""`mfkernels info`: versions, how the library was built, visible devices, and for every op in the
`mfkernels` namespace which dispatch keys have a kernel, read from the torch dispatcher itself."""

from __future__ import annotations

import platform

import torch

from .. import _extension
from .._version import __version__

# Columns of the kernel table: dispatch key -> header. FuncTorchBatched holds the vmap rules.
DISPATCH_KEYS = {"CPU": "CPU", "CUDA": "CUDA", "Meta": "Meta", "Autograd": "Autograd",
                 "FuncTorchBatched": "vmap"}


def op_names() -> list[str]:
    """Every public operator registered in the torch library namespace `mfkernels`."""
    names = torch._C._dispatch_get_all_op_names()
    return sorted(n for n in names if n.startswith("mfkernels::") and not n.split("::")[1].startswith("_"))


def kernel_table() -> dict[str, dict[str, bool]]:
    """{"mfkernels::op": {dispatch key: has a kernel}} as the dispatcher sees it now."""
    return {
        name: {key: torch._C._dispatch_has_kernel_for_dispatch_key(name, key) for key in DISPATCH_KEYS}
        for name in op_names()
    }


def device_name(device: str) -> str:
    """A human-readable name of the device a benchmark ran on."""
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{model} ({torch.get_num_threads()} threads)"


def collect() -> dict[str, object]:
    devices = ["cpu"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    return {
        "mfkernels": __version__,
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "python": platform.python_version(),
        "build": _extension.build_info(),
        "devices": {d: device_name(d) for d in devices},
        "ops": kernel_table(),
    }


def format_report(info: dict[str, object]) -> str:
    build = info["build"]
    lines = [
        f"mfkernels {info['mfkernels']}  torch {info['torch']} (CUDA {info['torch_cuda'] or 'none'})"
        f"  python {info['python']}",
        f"library     {build['library']}",
        "CUDA kernels "
        + (f"built for {', '.join(build['cuda_archs']) or 'unknown archs'}" if build["cuda_built"]
           else "not built (CPU-only build)"),
        "devices     " + "; ".join(f"{k}: {v}" for k, v in info["devices"].items()),
        "",
    ]
    width = max(len(n) for n in info["ops"]) if info["ops"] else 10
    header = f"{'op':<{width}}  " + "  ".join(f"{h:>8}" for h in DISPATCH_KEYS.values())
    lines += [header, "-" * len(header)]
    for name, keys in info["ops"].items():
        marks = "  ".join(f"{'yes' if keys[k] else '-':>8}" for k in DISPATCH_KEYS)
        lines.append(f"{name:<{width}}  {marks}")
    return "\n".join(lines)

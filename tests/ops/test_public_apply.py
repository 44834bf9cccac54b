"""The one switch around torch internals: with MFKERNELS_PUBLIC_APPLY=1 every op call goes through the
public `torch.autograd.Function.apply`, and values, gradients and tangents are the same as on the fast
path (CI also runs the op test files once with the switch on)."""

import os
import subprocess
import sys

import torch

from mfkernels.ops import _autograd

SCRIPT = r"""
import torch
from torch.func import jvp
from mfkernels import ops
from mfkernels.ops import _autograd
g = torch.Generator().manual_seed(0)
x, shift, scale = (torch.randn(5, 6, generator=g, dtype=torch.float64, requires_grad=True) for _ in range(3))
y, logdet = ops.affine_coupling(x, shift, scale)
grads = torch.autograd.grad((y.sum() + logdet.sum()), (x, shift, scale))
tangent = jvp(lambda a: ops.affine_coupling(a, shift.detach(), scale.detach())[0], (x.detach(),),
              (torch.ones_like(x),))[1]
torch.save({"direct": _autograd.uses_direct_apply(), "y": y.detach(), "grads": grads, "tangent": tangent},
           __import__("sys").argv[1])
"""


def _run(tmp_path, name, switch):
    env = {k: v for k, v in os.environ.items() if k != _autograd.PUBLIC_APPLY_VARIABLE}
    if switch is not None:
        env[_autograd.PUBLIC_APPLY_VARIABLE] = switch
    out = tmp_path / f"{name}.pt"
    subprocess.run([sys.executable, "-c", SCRIPT, str(out)], check=True, env=env, timeout=300)
    return torch.load(out)


def test_public_apply_switch_gives_the_same_numbers(tmp_path):
    fast, public = _run(tmp_path, "fast", None), _run(tmp_path, "public", "1")
    assert fast["direct"] is True and public["direct"] is False
    assert _run(tmp_path, "zero", "0")["direct"] is True  # "0" means off, as an unset variable
    assert _run(tmp_path, "false", "False")["direct"] is True
    torch.testing.assert_close(public["y"], fast["y"], rtol=0, atol=0)
    for a, b in zip(public["grads"], fast["grads"]):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    torch.testing.assert_close(public["tangent"], fast["tangent"], rtol=0, atol=0)


def test_an_unknown_switch_value_is_a_clear_error():
    env = {**os.environ, _autograd.PUBLIC_APPLY_VARIABLE: "maybe"}
    done = subprocess.run([sys.executable, "-c", "import mfkernels"], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode != 0 and "MFKERNELS_PUBLIC_APPLY must be" in done.stderr

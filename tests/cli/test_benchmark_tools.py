"""The profiling aids under benchmarks/: rq_spline's phase-timer patch still applies to the kernel file
it instruments (a patch that no longer applies would make the bench README's phase table
unreproducible), and the driver script runs."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PATCH = ROOT / "benchmarks" / "rq_spline_phase_timers.patch"


def _in_git_checkout() -> bool:
    if shutil.which("git") is None:
        return False
    probe = subprocess.run(["git", "rev-parse", "--is-inside-work-tree"], cwd=ROOT, capture_output=True, text=True)
    return probe.returncode == 0 and probe.stdout.strip() == "true"


@pytest.mark.skipif(not _in_git_checkout(), reason="needs a git checkout of the repository (git apply --check)")
def test_phase_timer_patch_applies_to_the_current_kernel():
    check = subprocess.run(["git", "apply", "--check", str(PATCH)], cwd=ROOT, capture_output=True, text=True)
    assert check.returncode == 0, (
        "benchmarks/rq_spline_phase_timers.patch no longer applies to csrc/cpu/rq_spline_cpu.cpp; "
        f"regenerate it (see benchmarks/rq_spline_phases.py): {check.stderr}"
    )


@pytest.mark.parametrize("kernel", ["forward", "backward"])
def test_phase_driver_runs(kernel):
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "rq_spline_phases.py"), kernel, "1"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert f"1 calls of rq_spline {kernel}" in run.stdout


def test_phase_driver_refuses_a_negative_call_count():
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "rq_spline_phases.py"), "forward", "-1"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode != 0 and "calls" in run.stderr

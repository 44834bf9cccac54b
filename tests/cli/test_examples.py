"""Every runnable example in python/ runs end to end with a tiny step count (so an API change that breaks
an example fails here), and writes its PNG where it takes --out."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("matplotlib", reason="the examples draw with matplotlib (in the 'test' extra)")

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "python").glob("*.py"))


@pytest.mark.parametrize("script", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_runs(script, tmp_path):
    source = script.read_text()
    options = set(re.findall(r'add_argument\("(--[a-z-]+)"', source))
    args = [sys.executable, str(script)]
    args += ["--steps", "3"] if "--steps" in options else []
    args += ["--rounds", "1"] if "--rounds" in options else []
    out = tmp_path / f"{script.stem}.png"
    args += ["--out", str(out)] if "--out" in options else []
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    if "--out" in options:
        assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

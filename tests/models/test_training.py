"""training.fit: bit-for-bit resume, atomic and validated checkpoints, data-parallel training."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mfkernels.data import ThinSpiral
from mfkernels.models import build_model
from mfkernels.training import CheckpointError, batch_indices, fit, load_checkpoint, model_from_checkpoint

HERE = Path(__file__).parent


def _data():
    return ThinSpiral().sample(500, torch.Generator().manual_seed(0))[0]


def _model(name="dnf", **options):
    return build_model(name, num_layers=2, inner_layers=1, hidden_features=16, **options)


class Killed(Exception):
    pass


def test_resume_after_a_kill_is_bit_identical_to_an_uninterrupted_run(tmp_path, monkeypatch):
    data = _data()
    options = dict(steps=30, batch_size=50, seed=5, checkpoint_every=10, progress=False, log_every=5)
    full = _model()
    fit(full, data, out_dir=str(tmp_path / "full"), **options)

    interrupted = _model()
    original = type(interrupted).begin_step

    def die_at_25(self, step):
        if step == 25:
            raise Killed
        original(self, step)

    monkeypatch.setattr(type(interrupted), "begin_step", die_at_25)
    with pytest.raises(Killed):
        fit(interrupted, data, out_dir=str(tmp_path / "cut"), **options)
    monkeypatch.setattr(type(interrupted), "begin_step", original)
    assert load_checkpoint(tmp_path / "cut" / "checkpoint.pt")["step"] == 20

    resumed = _model()  # a fresh process would start from a fresh model
    fit(resumed, data, out_dir=str(tmp_path / "cut"), resume=True, **options)
    for (name, a), (_, b) in zip(full.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), name
    full_log = (tmp_path / "full" / "metrics.jsonl").read_text()
    assert (tmp_path / "cut" / "metrics.jsonl").read_text() == full_log
    assert len(full_log.splitlines()) == 6
    header = (tmp_path / "cut" / "metrics.csv").read_text().splitlines()[0]
    assert header.startswith("step,loss,nll,reconstruction")
    assert not [p for p in (tmp_path / "cut").iterdir() if p.name.startswith(".")]  # no temporary files left


def test_mflow_resume_keeps_its_phase_schedule(tmp_path):
    data = _data()
    options = dict(steps=12, batch_size=50, checkpoint_every=4, progress=False, schedule="constant")
    a = _model("mflow", schedule="alternate", phase_steps=3)
    fit(a, data, out_dir=str(tmp_path / "a"), **options)
    b = _model("mflow", schedule="alternate", phase_steps=3)
    fit(b, data, out_dir=str(tmp_path / "b"), **{**options, "steps": 8})
    b = _model("mflow", schedule="alternate", phase_steps=3)
    fit(b, data, out_dir=str(tmp_path / "b"), resume=True, **options)
    for x, y in zip(a.parameters(), b.parameters()):
        assert torch.equal(x, y)


def test_bad_checkpoints_give_clear_errors_never_a_silent_restart(tmp_path):
    data = _data()
    model = _model()
    fit(model, data, steps=4, batch_size=50, out_dir=str(tmp_path), checkpoint_every=2, progress=False)
    path = tmp_path / "checkpoint.pt"
    good = path.read_bytes()
    rebuilt, payload = model_from_checkpoint(path)
    for a, b in zip(rebuilt.parameters(), model.parameters()):
        assert torch.equal(a, b)
    assert payload["step"] == 4

    path.write_bytes(good[: len(good) // 2])  # truncated, as by a kill during a non-atomic write
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        fit(_model(), data, steps=8, batch_size=50, out_dir=str(tmp_path), resume=True, progress=False)
    path.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(path)
    torch.save({"weights": torch.zeros(2)}, path)
    with pytest.raises(CheckpointError, match="not an mfkernels checkpoint"):
        load_checkpoint(path)
    path.write_bytes(good)
    with pytest.raises(CheckpointError, match="belongs to model 'dnf'"):
        fit(_model("pie"), data, steps=8, batch_size=50, out_dir=str(tmp_path), resume=True, progress=False)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        fit(_model(), data, steps=8, batch_size=50, out_dir=str(tmp_path / "empty"), resume=True, progress=False)


def test_batches_cover_each_epoch_and_split_across_ranks():
    n, b = 100, 20
    epoch = torch.cat([batch_indices(n, b, seed=1, step=s) for s in range(5)])
    assert sorted(epoch.tolist()) == list(range(100))
    assert not torch.equal(batch_indices(n, b, 1, 0), batch_indices(n, b, 1, 5))  # reshuffled next epoch
    ranks = [batch_indices(n, b, 1, 3, rank=r, world_size=2) for r in range(2)]
    torch.testing.assert_close(torch.cat(ranks).sort().values, batch_indices(n, b, 1, 3).sort().values)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_gloo_ddp_keeps_ranks_identical(tmp_path):
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(HERE) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), str(HERE / "helpers" / "ddp_train.py"), str(tmp_path)]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    r0, r1 = torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")
    init = build_model("dnf", num_layers=2, inner_layers=1, hidden_features=16).state_dict()
    changed = 0
    for name in r0:
        assert torch.equal(r0[name], r1[name]), name
        changed += not torch.equal(r0[name], init[name])
    assert changed > 0
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["step"] == 6

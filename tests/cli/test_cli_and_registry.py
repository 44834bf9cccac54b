"""The op framework around the kernels: registry coverage, `mfkernels info` read from the dispatcher,
`mfkernels bench` (table and JSON), and the build-info the library reports about itself."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

import mfkernels
from mfkernels import bench, cli
from mfkernels.cli import info
from mfkernels.ops import all_ops


def test_every_dispatcher_op_belongs_to_a_registered_op_with_twin_and_shapes():
    registered = all_ops()
    assert "gram_logdet" in registered
    primitives = {p for spec in registered.values() for p in spec.primitives}
    for name in info.op_names():
        assert name.split("::")[1] in primitives, f"{name} has no registry entry naming it"
    for spec in registered.values():
        assert callable(spec.reference) and spec.bench_shapes
        assert spec.reference.__module__.startswith("mfkernels.reference")


def test_info_reads_kernels_from_the_dispatcher():
    table = info.kernel_table()
    keys = table["mfkernels::gram_logdet"]
    assert keys["CPU"] and keys["Meta"] and keys["Autograd"]
    assert keys["CUDA"] == mfkernels.build_info()["cuda_built"]
    assert table["mfkernels::gram_logdet_forward"]["FuncTorchBatched"]  # vmap rule registered
    # A kernel registered now shows up: the table is not a hand-kept list.
    lib = torch.library.Library("mfkernels", "FRAGMENT")
    lib.define("_info_probe(Tensor x) -> Tensor")
    lib.impl("_info_probe", lambda x: x.clone(), "CPU")
    assert torch._C._dispatch_has_kernel_for_dispatch_key("mfkernels::_info_probe", "CPU")
    assert "mfkernels::_info_probe" not in info.op_names()  # private names are hidden


def test_info_command_prints_the_table(capsys):
    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    line = next(row for row in out.splitlines() if row.startswith("mfkernels::gram_logdet "))
    assert line.split()[1:] == ["yes", "yes" if mfkernels.build_info()["cuda_built"] else "-", "yes", "yes", "-"]
    assert cli.main(["info", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["build"]["version"] == mfkernels.__version__


def test_python_dash_m_entry_point():
    result = subprocess.run([sys.executable, "-m", "mfkernels", "info"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert "mfkernels::gram_logdet" in result.stdout


def test_bench_report_and_json(tmp_path, monkeypatch):
    from mfkernels.ops import _registry

    spec = all_ops()["gram_logdet"]
    small = _registry.OpSpec(**{**spec.__dict__, "bench_shapes": [(16, 8, 2), (4, 30, 5)]})
    monkeypatch.setitem(_registry._REGISTRY, "gram_logdet", small)
    path = tmp_path / "out" / "bench.json"
    assert cli.main(["bench", "--quick", "--ops", "gram_logdet", "--dtype", "float64", "--json", str(path)]) == 0
    report = json.loads(path.read_text())
    assert report["device"] == "cpu" and report["dtype"] == "float64" and report["device_name"]
    assert [r["shape"] for r in report["results"]] == [[16, 8, 2], [4, 30, 5]]
    for r in report["results"]:
        for key in ("op_fwd_ms", "twin_fwd_ms", "op_fwd_bwd_ms", "twin_fwd_bwd_ms"):
            assert r[key] > 0
        assert abs(r["speedup_fwd_bwd"] - r["twin_fwd_bwd_ms"] / r["op_fwd_bwd_ms"]) < 1e-9
    assert "speed-up" in bench.format_table(report)


def test_bench_forward_backward_skips_inputs_without_grad():
    # lowrank_gaussian_log_prob's (B, D, K, 0) shape: data x without grad, the others differentiated
    spec = all_ops()["lowrank_gaussian_log_prob"]
    inputs = spec.make_inputs((16, 8, 2, 0), torch.float64, "cpu", torch.Generator().manual_seed(0))
    assert [t.requires_grad for t in inputs] == [False, True, True, True]
    seen = []
    real_grad = torch.autograd.grad
    with pytest.MonkeyPatch.context() as m:
        m.setattr(torch.autograd, "grad", lambda out, wrt: seen.append(wrt) or real_grad(out, wrt))
        bench.forward_backward(spec.op, inputs)()
    assert len(seen) == 1 and [id(t) for t in seen[0]] == [id(t) for t in inputs[1:]]
    with_x = spec.make_inputs((16, 8, 2), torch.float64, "cpu", torch.Generator().manual_seed(0))
    assert all(t.requires_grad for t in with_x)


def test_bench_profile_splits_the_call_into_its_kernels(monkeypatch):
    from mfkernels.ops import _registry

    spec = all_ops()["affine_coupling"]
    monkeypatch.setitem(_registry._REGISTRY, "affine_coupling",
                        _registry.OpSpec(**{**spec.__dict__, "bench_shapes": [(64, 32)]}))
    report = bench.profile.run(ops=["affine_coupling"], quick=True)
    (row,) = report["rows"]
    assert row["shape"] == [64, 32]
    assert set(row["kernels_ms"]) == {"mfkernels.affine_coupling_forward.default",
                                      "mfkernels.affine_coupling_backward.default"}
    assert abs(row["kernels_total_ms"] - sum(row["kernels_ms"].values())) < 1e-12
    assert row["whole_call_ms"] > 0 and row["alloc_touch_outputs_ms"] > 0 and row["copy_fewest_ms"] > 0
    # y (64, 32) and logabsdet (64,), then three (64, 32) gradients, in float32
    assert abs(row["kernel_output_mb"] - 4 * (4 * 64 * 32 + 64) / 1e6) < 1e-12
    assert "affine_coupling_backward" in bench.profile.format_table(report)


def test_bench_retain_freed_memory_is_recorded(tmp_path):
    # in a child process: mallopt changes the whole process's allocator
    path = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, "-m", "mfkernels", "bench", "--quick", "--ops", "gram_logdet", "--retain-freed-memory",
         "--json", str(path)], capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "freed CPU memory retained" in result.stdout
    assert json.loads(path.read_text())["cpu_freed_memory_retained"] is True
    child = subprocess.run(
        [sys.executable, "-c", "from mfkernels import cpu_memory as m; print(m.freed_memory_retained(), "
         "m.retain_freed_memory(), m.retain_freed_memory(), m.freed_memory_retained())"],
        capture_output=True, text=True, timeout=120,
    )
    assert child.stdout.split() == ["False", "True", "True", "True"], child.stderr


def test_bench_rejects_unknown_op_and_missing_cuda(capsys):
    assert cli.main(["bench", "--ops", "no_such_op"]) == 2
    assert "unknown op 'no_such_op'" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert cli.main(["bench", "--device", "cuda"]) == 2
        assert "no CUDA device" in capsys.readouterr().err


def test_flow_step_bench_builds_the_same_flow_in_nflows(monkeypatch):
    """The nflows stack the flow bench times is the same density as ours (shared weights), and the
    report has one row per implementation."""
    pytest.importorskip("nflows")
    from mfkernels import ops
    from mfkernels.bench import flows as bench_flows

    monkeypatch.setattr(bench_flows, "FEATURES", 6)
    monkeypatch.setattr(bench_flows, "LAYERS", 3)
    monkeypatch.setattr(bench_flows, "HIDDEN", 8)
    ours = bench_flows._mfk_stack(ops.rq_spline).double()
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in ours.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    theirs = bench_flows._nflows_stack(ours).double()
    x = 2 * torch.randn(10, 6, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(ours.log_prob(x), theirs.log_prob(x), rtol=1e-10, atol=1e-10)
    rows = bench_flows.run(batch=4, steps_per_epoch=2)
    assert [r["impl"] for r in rows] == ["mfkernels", "twin", "nflows"]
    assert all(r["step_ms"] > 0 for r in rows) and rows[0]["relative_to_mfkernels"] == 1.0
    assert "x mfkernels" in bench_flows.format_table(rows)


def test_bench_models_pixel_rejection_rows_and_their_table():
    """Bookkeeping of the model bench (timings are not asserted): two cases, each against its baseline."""
    from mfkernels.bench import models as bench_models

    rows = bench_models.pixel_rejection_rows(quick=True)
    assert len(rows) == 4 and len({r["case"] for r in rows}) == 2
    for r in rows:
        assert r["step_ms"] > 0 and abs(r["steps_per_s"] - 1e3 / r["step_ms"]) < 1e-9
        baseline = next(b for b in rows if b["case"] == r["case"] and b["impl"] == r["baseline"])
        assert abs(r["speedup_vs_baseline"] - baseline["step_ms"] / r["step_ms"]) < 1e-9
    table = bench_models.format_table({"gram_density": [], "dnf_training": [], "pixel_rejection": rows})
    for r in rows:
        assert r["case"] in table and r["impl"] in table


def test_exact_training_bench_rows_compare_equal_gradients(monkeypatch):
    """The exact-training bench (tiny sizes): both routes of the exact step give the same float64 gradient,
    the stochastic rows report CG iterations, and the table prints every row."""
    pytest.importorskip("nflows")
    from mfkernels.bench import exact_training
    from mfkernels.bench import flows as bench_flows

    for module, name, value in ((bench_flows, "FEATURES", 6), (bench_flows, "LAYERS", 2), (bench_flows, "HIDDEN", 8),
                                (exact_training, "D", 6), (exact_training, "d", 2), (exact_training, "BATCH", 5),
                                (exact_training, "STOCHASTIC", (8, 3, 2, 3))):
        monkeypatch.setattr(module, name, value)
    report = exact_training.run(quick=True)
    exact = report["exact_step"]
    assert [r["impl"] for r in exact] == ["mfkernels", "nflows + jvp/vmap + slogdet"]
    assert exact[0]["float64_gradient_relative_difference"] < 1e-10
    assert report["stochastic"][1]["cg_iterations"] >= 1
    assert report["log_volume"][0]["float32_gradient_relative_difference"] < 1e-3
    assert report["mlp_volume"][0]["max_abs_difference"] < 1e-4
    assert "nflows + jvp/vmap + slogdet" in exact_training.format_table(report)

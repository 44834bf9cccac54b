"""End to end: `mfkernels reproduce dnf-spiral --quick`, and train / eval / sample from the CLI."""

import json
import math

import pytest
import torch

from mfkernels import cli

pytest.importorskip("matplotlib", reason="the figure needs matplotlib (in the 'test' extra)")


def test_reproduce_dnf_spiral_quick(tmp_path, capsys):
    out = tmp_path / "spiral"
    assert cli.main(["reproduce", "dnf-spiral", "--quick", "--out", str(out)]) == 0
    png = (out / "figure.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20000
    results = json.loads((out / "metrics.json").read_text())
    models = results["models"]
    assert set(models) == {"standard", "mflow", "dnf", "pie"}
    for name in models:
        assert (out / name / "checkpoint.pt").is_file()
        assert (out / name / "metrics.csv").is_file()
    # The paper's finding: DNF learns the density on the spiral, the standard flow does not. Margin from
    # quick runs with seeds 0, 1, 2: DNF's TV 0.18 / 0.12 / 0.22 vs the standard flow's 0.37 / 0.37 / 0.30
    # (closest gap 0.08); KS 0.13 / 0.06 / 0.10 vs 0.25 / 0.26 / 0.15.
    assert models["dnf"]["tv"] < models["standard"]["tv"] - 0.05
    assert models["dnf"]["ks"] < models["standard"]["ks"] - 0.02
    assert models["dnf"]["gram"]["mass"] > 0.5 and math.isfinite(models["dnf"]["gram"]["test_log_likelihood"])
    # DNF's samples lie on the spiral; its deflated density is a manifold density (mass ~ 1, not ~100s)
    assert models["dnf"]["sample_distance"] < 0.06
    assert 0.5 < models["dnf"]["mass"] < 1.5
    assert models["standard"]["mass"] > 10
    timing = results["gram_timing"]
    assert timing["points"] == 500 and timing["max_abs_diff"] < 1e-2
    assert math.isfinite(results["true"]["test_log_likelihood"])


def test_reproduce_exact_manifold_quick(tmp_path):
    out = tmp_path / "exact"
    assert cli.main(["reproduce", "exact-manifold", "--quick", "--out", str(out)]) == 0
    assert (out / "figure.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    results = json.loads((out / "metrics.json").read_text())
    for set_name in ("spiral", "circle16"):
        models = results["sets"][set_name]["models"]
        assert set(models) == {"mflow", "dnf", "rectangular-exact", "rectangular-stochastic"}
        for name, entry in models.items():
            assert (out / set_name / name / "checkpoint.pt").is_file()
            assert math.isfinite(entry["tv"]) and entry["seconds_per_step"] > 0
    # Quick run (seed 0, 200 steps) on the circle in R^16: the exact-likelihood models find the circle
    # where two-phase M-flow has not yet (TV 0.30 vs 0.55, sample distance 0.10 vs 0.49); the exact and
    # the Hutchinson+CG gradients train to the same place (TV 0.297 vs 0.299).
    circle = results["sets"]["circle16"]["models"]
    assert circle["rectangular-exact"]["tv"] < circle["mflow"]["tv"] - 0.1
    assert circle["rectangular-exact"]["sample_distance"] < 0.5 * circle["mflow"]["sample_distance"]
    assert abs(circle["rectangular-exact"]["tv"] - circle["rectangular-stochastic"]["tv"]) < 0.05


def test_train_eval_sample_commands(tmp_path, capsys):
    run = tmp_path / "run"
    args = ["train", "pie", "--data", "von_mises_circle", "--n", "500", "--steps", "40", "--batch-size", "50",
            "--out", str(run), "--checkpoint-every", "20", "--set", "num_layers=2", "hidden_features=16"]
    assert cli.main(args) == 0
    capsys.readouterr()
    assert cli.main(["eval", str(run / "checkpoint.pt"), "--n", "200"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["model"] == "pie" and report["step"] == 40 and report["data"] == "von_mises_circle"
    assert math.isfinite(report["true_test_log_likelihood"])
    assert cli.main(["sample", str(run / "checkpoint.pt"), "-n", "100", "--out", str(tmp_path / "s.pt")]) == 0
    samples = torch.load(tmp_path / "s.pt")
    assert samples.shape == (100, 2)
    assert cli.main(["sample", str(run / "checkpoint.pt"), "-n", "100", "--out", str(tmp_path / "s.png")]) == 0
    assert (tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"
    # resume continues: 40 more steps from step 40
    capsys.readouterr()
    assert cli.main(args[:7] + ["80"] + args[8:] + ["--resume"]) == 0
    assert json.loads(capsys.readouterr().out)["steps"] == 80
    assert cli.main(["sample", str(run / "checkpoint.pt"), "-n", "1", "--out", str(tmp_path / "s.txt")]) == 2
    (run / "checkpoint.pt").write_bytes(b"garbage")
    assert cli.main(["eval", str(run / "checkpoint.pt")]) == 2
    assert "corrupt or truncated" in capsys.readouterr().err


@pytest.mark.parametrize("model,data,options,data_options", [
    ("chart", "two_circles", ["num_layers=2", "hidden_features=16", "num_charts=4", "vq_steps=5"], []),
    ("pr", "square_clutter", ["num_layers=2", "hidden_features=16", "inner_layers=0"], ["size=6", "square=2"]),
])
def test_train_and_eval_on_the_chart_and_clutter_sets(model, data, options, data_options, tmp_path, capsys):
    """The CLI knows every set in DATASETS (chart-flow topologies, paper 002's clutter images), whatever
    their sample() returns; eval reports the set's distance to the manifold where it has one."""
    from mfkernels.data import make_dataset, sample_points

    run = tmp_path / "run"
    args = ["train", model, "--data", data, "--n", "200", "--steps", "10", "--batch-size", "50", "--out", str(run),
            "--set", *options] + (["--data-option", *data_options] if data_options else [])
    assert cli.main(args) == 0
    capsys.readouterr()
    assert cli.main(["eval", str(run / "checkpoint.pt"), "--n", "100"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["data"] == data and report["step"] == 10 and math.isfinite(report["reconstruction_error"])
    dataset = make_dataset(data, **cli_options(data_options))
    x = sample_points(dataset, 7, torch.Generator().manual_seed(0))
    assert x.shape == (7, dataset.ambient_dim)
    assert ("sample_distance" in report) == hasattr(dataset, "distance")


def cli_options(pairs):
    from mfkernels.cli.commands import parse_options

    return parse_options(pairs)


def test_seeds_run_each_seed_and_summarise_mean_and_std(tmp_path, monkeypatch, capsys):
    """--seeds 0,1,2: one run per seed in OUT/seed<N>/, summary.json with mean and sample std of every number."""
    from mfkernels import reproduce
    from mfkernels.reproduce.seeds import aggregate, parse_seeds

    calls = []

    def fake(out_dir, quick, seed, device):
        calls.append((str(out_dir), quick, seed))
        return {"models": {"dnf": {"tv": 0.1 * (seed + 1), "name": "dnf", "flag": True}}, "nan": math.nan}

    monkeypatch.setitem(reproduce.EXPERIMENTS, "dnf-spiral", fake)
    assert cli.main(["reproduce", "dnf-spiral", "--quick", "--seeds", "0,1,2", "--out", str(tmp_path / "r")]) == 0
    assert [c[2] for c in calls] == [0, 1, 2] and calls[1][0].endswith("r/seed1") and calls[0][1] is True
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    tv = summary["over_seeds"]["models"]["dnf"]["tv"]
    assert tv["values"] == [0.1, 0.2, 0.30000000000000004] and math.isclose(tv["mean"], 0.2)
    assert math.isclose(tv["std"], 0.1)  # sample standard deviation of 0.1, 0.2, 0.3
    assert (
        summary["over_seeds"]["models"]["dnf"]["name"] == "dnf"
        and summary["over_seeds"]["models"]["dnf"]["flag"] is True
    )
    assert summary["seeds"] == [0, 1, 2] and set(summary["wall_seconds"]) == {"0", "1", "2"}
    table = (tmp_path / "r" / "summary.md").read_text()
    assert "| models.dnf.tv | 0.2 ± 0.1 | 0.1, 0.2, 0.3 |" in table and "| nan | null ± null |" in table
    assert aggregate([{"a": 1.0}, {"a": 3.0}])["a"]["std"] == math.sqrt(2)
    for bad in ("", "0,0", "a,b"):
        with pytest.raises(ValueError, match="--seeds"):
            parse_seeds(bad)

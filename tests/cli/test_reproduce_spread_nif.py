"""The reproductions of papers 003 and 001: `reproduce spread-dimension` recovers the true intrinsic
dimension on sine and S-curve (the quick recipes, fixed seed; the estimate is asserted), and
`reproduce nif-digits` writes consistent bits per dimension (a short run; the paper's claim itself
needs the --quick training; its numbers are in benchmarks/results/reproductions/nif-digits)."""

import json

import pytest
import torch

from mfkernels import cli
from mfkernels.training import model_from_checkpoint

pytest.importorskip("matplotlib", reason="the figures need matplotlib (in the 'test' extra)")


def test_spread_dimension_quick_recovers_the_dimension_of_sine_and_s_curve(tmp_path):
    from mfkernels.reproduce.spread_dimension import run

    results = run(tmp_path, quick=True, progress=False, datasets=("sine", "s_curve"))
    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    for name, true_dim in (("sine", 1), ("s_curve", 2)):
        r = on_disk["datasets"][name]
        assert r == results["datasets"][name]
        assert r["true_dimension"] == true_dim
        assert r["estimated_dimension"] == true_dim, r["spectrum"]
        assert r["largest_gap_ratio"] >= 100
        # the learned manifold is close to the true one: projected test points and the bulk of samples
        assert r["projected_test_distance"] < 0.05 * r["data_scale"]
        assert r["sample_distance_median"] < 0.05 * r["data_scale"]
        for png in ("spectrum.png", "samples.png"):
            assert (tmp_path / name / png).stat().st_size > 10_000
        # the checkpoint holds the model whose spectrum was reported
        model, _ = model_from_checkpoint(tmp_path / name / "checkpoint.pt")
        torch.testing.assert_close(model.spectrum()[: len(r["spectrum"])], torch.tensor(r["spectrum"]))


def test_nif_digits_short_run_writes_consistent_bpd(tmp_path, monkeypatch):
    pytest.importorskip("sklearn", reason="the digits come from scikit-learn (in the 'test' extra)")
    from mfkernels.data.digits import Digits
    from mfkernels.reproduce import nif_digits

    monkeypatch.setattr(nif_digits, "settings", lambda quick: nif_digits.Settings(steps=60, dequantized_copies=2))
    assert cli.main(["reproduce", "nif-digits", "--quick", "--out", str(tmp_path)]) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert (tmp_path / "samples.png").stat().st_size > 10_000
    digits = Digits()
    g = torch.Generator().manual_seed(0)
    torch.cat([digits.sample(generator=g)[0] for _ in range(2)])  # the run drew its training copies first
    test, _ = digits.sample(generator=g, split="test")
    for name in ("standard", "nif"):
        model, _ = model_from_checkpoint(tmp_path / name / "checkpoint.pt")
        with torch.no_grad():
            bpd = float(digits.bits_per_dim(model.log_prob(test)).mean())
        assert bpd == pytest.approx(metrics["models"][name]["test_bpd"], rel=1e-5)
        assert 0 < bpd < 20
    assert metrics["nif_minus_standard_test_bpd"] == pytest.approx(
        metrics["models"]["nif"]["test_bpd"] - metrics["models"]["standard"]["test_bpd"])


def test_digits_bits_per_dim_is_the_discrete_likelihood(gen):
    """A model uniform on the dequantised cube [0, 1]^64 gives exactly log2(17) bits per dimension."""
    pytest.importorskip("sklearn")
    from mfkernels.data.digits import LEVELS, Digits

    digits = Digits(scale=4.0)
    x, levels = digits.sample(5, gen)
    assert levels.min() >= 0 and levels.max() <= 16 and x.shape == (5, 64)
    fraction = (x.double() / 4 + 0.5) * LEVELS - levels  # the dequantisation noise
    assert fraction.min() >= 0 and fraction.max() < 1 + 1e-5
    uniform = torch.full((5,), -64 * torch.log(torch.tensor(4.0, dtype=torch.float64)))  # density 4^-64 on the cube
    torch.testing.assert_close(digits.bits_per_dim(uniform), torch.full((5,), torch.log2(torch.tensor(17.0)).item(),
                                                                        dtype=torch.float64))
    with pytest.raises(ValueError, match="split"):
        digits.sample(3, split="validation")

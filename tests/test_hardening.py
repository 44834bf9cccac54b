"""Cases from a hostile-user probe: each gave a silently wrong number or a
crash before its fix; each must now give the right number or a clear error naming what is wrong."""

import math

import pytest
import torch
from test_autocast import SMALL
from test_models import _model

from mfkernels import ops
from mfkernels.models import MODELS, build_model
from mfkernels.ops import all_ops

SPLIT_FLOWS = ["dnf", "mflow", "pie", "pr", "hierarchical", "nif"]


@pytest.mark.parametrize("name", SPLIT_FLOWS + ["standard"])
def test_decode_refuses_the_wrong_latent_width(name):
    """Case 2: with inner_layers=0, decode((4, d + 1)) used the extra column as an off-manifold
    coordinate and returned (4, D); a 1-d u raised IndexError in several models."""
    model = build_model(name, features=3, manifold_dim=1, inner_layers=0)
    width = model.latent_dim
    assert model.decode(torch.randn(4, width)).shape == (4, 3)
    for bad in (torch.randn(4, width + 1), torch.randn(4), torch.randn(2, 4, width)):
        with pytest.raises(ValueError, match=rf"{type(model).__name__}\.decode: expected latent coordinates "
                                             rf"of shape \(B, {width}\)"):
            model.decode(bad)


def test_spread_decode_takes_any_top_k_but_not_more_than_features():
    model = build_model("spread", features=3)
    assert model.decode(torch.randn(4, 2)).shape == (4, 3)
    with pytest.raises(ValueError, match=r"SpreadFlow\.decode"):
        model.decode(torch.randn(4, 4))


def test_standard_flow_project_checks_its_input():
    """Case 3: project(randn(4, 4)) on a 3-feature flow returned the input unchanged."""
    model = build_model("standard", features=3)
    x = torch.randn(4, 3)
    assert torch.equal(model.project(x), x)
    with pytest.raises(ValueError, match=r"expected x of shape \(B, 3\)"):
        model.project(torch.randn(4, 4))


def test_intrinsic_dimension_of_zero_is_zero():
    """Case 4: intrinsic_dimension(zeros(4, 4)) returned 4."""
    assert ops.intrinsic_dimension(torch.zeros(4, 4)).item() == 0
    assert ops.intrinsic_dimension(torch.zeros(1, 1)).item() == 0
    batch = torch.stack([torch.zeros(3, 3), torch.diag(torch.tensor([2.0, 1e-9, 1e-9]))])
    assert ops.intrinsic_dimension(batch).tolist() == [0, 1]
    assert ops.intrinsic_dimension(torch.zeros(4, 4), rel_threshold=0.5).item() == 0


def test_chart_flow_gives_nan_for_nan_input():
    """Case 5: a NaN row gave encode 0.0 and log_prob -inf, where every other model gives NaN."""
    model = build_model("chart").eval()
    x = torch.randn(3, model.config.features)
    x[1, 0] = math.nan
    z, lp = model.encode(x), model.log_prob(x)
    assert torch.isnan(z[1]).all() and torch.isnan(lp[1])
    assert torch.isfinite(z[[0, 2]]).all() and torch.isfinite(lp[[0, 2]]).all()


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_propagates_nan_input(name, gen):
    model = _model(name, gen).eval()
    x = torch.randn(2, model.config.features, dtype=torch.float64)
    x[0, 0] = math.nan
    with torch.no_grad():
        assert torch.isnan(model.log_prob(x)[0])


@pytest.mark.parametrize("clamp", [math.inf, -1.0, 0.0, math.nan])
def test_softclamp_needs_a_finite_positive_clamp(clamp):
    """Case 7: clamp=inf was accepted and returned all NaN."""
    x = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="'clamp' must be a positive finite float"):
        ops.affine_coupling(x, x, x, mode="softclamp", clamp=clamp)


def test_gram_backward_and_jvp_refuse_a_perm_that_is_not_a_permutation(device):
    """Case 8: perm with an index out of range segfaulted gram_logdet_backward / _jvp (one past the end
    read garbage). CPU: a clear error; CUDA: NaN gradients (checking values there would cost a sync)."""
    J = torch.randn(3, 6, 2, dtype=torch.float64).to(device)
    _, L, perm = torch.ops.mfkernels.gram_logdet_forward(J)
    grad = torch.ones(3, dtype=torch.float64, device=device)
    for bad_value in (2, -1, 1000):  # one past the end, negative, far out
        bad = perm.clone()
        bad[1, 0] = bad_value
        for call in (lambda: torch.ops.mfkernels.gram_logdet_backward(grad, J, L, bad),
                     lambda: torch.ops.mfkernels.gram_logdet_jvp(J, L, bad, torch.ones_like(J))):
            if device == "cpu":
                with pytest.raises(RuntimeError, match="argument 'perm' must be the permutation returned by "
                                                       "gram_logdet_forward.*matrix 1 is not"):
                    call()
            else:
                out = call()
                assert torch.isnan(out[1]).all() and torch.isfinite(out[[0, 2]]).all()
    duplicate = perm.clone()
    duplicate[0] = 0  # in range, but not a permutation
    if device == "cpu":
        with pytest.raises(RuntimeError, match="matrix 0 is not"):
            torch.ops.mfkernels.gram_logdet_backward(grad, J, L, duplicate)


def _total(out):
    return sum(o.sum() for o in (out if isinstance(out, tuple) else (out,)))


@pytest.mark.parametrize("name", sorted(n for n in SMALL if not all_ops()[n].second_order))
def test_second_derivatives_raise_a_clear_error(name, device, gen):
    """Case 1: second derivatives were silently wrong for every op (torch.func.hessian of gram_logdet all
    zeros; a double backward dropped the op's term). Where they are not implemented every route
    raises, naming the op, where the twin's hessian shows what a silent zero would have hidden (the
    twice-differentiable ops are checked against their twins in tests/ops/test_second_order.py)."""
    spec = all_ops()[name]
    inputs = [t.detach() for t in spec.make_inputs(SMALL[name], torch.float64, device, gen)]

    def with_input(fn, i):
        return lambda a: _total(fn(*inputs[:i], a, *inputs[i + 1:]))

    # the first input with a non-zero true second derivative (affine coupling is linear in x and shift)
    i = next(
        i for i in range(len(inputs)) if torch.func.hessian(with_input(spec.reference, i))(inputs[i]).abs().sum() > 0
    )
    ours, first = with_input(spec.op, i), inputs[i]
    message = rf"mfkernels\.ops\.{name}: second derivatives are not implemented"
    leaf = first.clone().requires_grad_()
    (g,) = torch.autograd.grad(ours(leaf), leaf, create_graph=True)  # first order with a graph: fine
    with pytest.raises(RuntimeError, match=message):  # reverse over reverse
        torch.autograd.grad((g * g).sum() + ours(leaf), leaf)
    with pytest.raises(RuntimeError, match=message):  # forward over reverse
        torch.func.hessian(ours)(first)
    with pytest.raises(RuntimeError, match=message):  # reverse over reverse, functorch
        torch.func.grad(lambda a: torch.func.grad(ours)(a).sum())(first)
    with pytest.raises(RuntimeError, match=message):  # reverse over forward
        _, tangent = torch.func.jvp(ours, (leaf,), (torch.ones_like(leaf),))
        torch.autograd.grad(tangent, leaf)
    with pytest.raises(RuntimeError, match=message):  # forward over forward
        torch.func.jacfwd(torch.func.jacfwd(ours))(first)


# ---- CLI and training: settings never silently ignored, runs never silently overwritten ----

def _train(out, *extra):
    return ["train", "dnf", "--data", "thin_spiral", "--n", "200", "--steps", "4", "--batch-size", "50",
            "--out", str(out), "--checkpoint-every", "2", "--set", "num_layers=1", "inner_layers=1",
            "hidden_features=8", *extra]


def _one_clear_line(capsys, *fragments):
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    for fragment in fragments:
        assert fragment in err, err
    return err


def test_repeated_set_groups_all_apply(tmp_path):
    """Case 9: `--set num_layers=1 --set manifold_dim=2` kept only the last group."""
    from mfkernels import cli
    from mfkernels.training import load_checkpoint

    run = tmp_path / "run"
    args = ["train", "dnf", "--data", "vmf_sphere", "--n", "200", "--steps", "2", "--batch-size", "50",
            "--out", str(run), "--set", "num_layers=1", "--set", "manifold_dim=2", "hidden_features=8",
            "--set", "inner_layers=1"]
    assert cli.main(args) == 0
    config = load_checkpoint(run / "checkpoint.pt")["model_config"]
    assert (config["num_layers"], config["manifold_dim"], config["hidden_features"], config["inner_layers"]) == (
        1,
        2,
        8,
        1,
    )


@pytest.mark.parametrize("change,named", [
    (["--batch-size", "25"], "batch_size"), (["--lr", "0.05"], "lr"), (["--seed", "3"], "seed"),
    (["--data", "von_mises_circle"], "data"), (["--n", "300"], "n: checkpoint 200"),
])
def test_resume_refuses_changed_settings_and_leaves_the_run_alone(change, named, tmp_path, capsys):
    """Case 10: a resume with other data / batch size / optimiser settings succeeded and rewrote the
    checkpoint's metadata."""
    from mfkernels import cli

    run = tmp_path / "run"
    assert cli.main(_train(run)) == 0
    before = (run / "checkpoint.pt").read_bytes()
    args = _train(run, "--resume")
    for flag, value in zip(change[::2], change[1::2]):
        i = args.index(flag) if flag in args else None
        if i is None:
            args += [flag, value]
        else:
            args[i + 1] = value
    args[args.index("--steps") + 1] = "6"
    capsys.readouterr()
    assert cli.main(args) == 2
    _one_clear_line(capsys, "cannot resume", named)
    assert (run / "checkpoint.pt").read_bytes() == before
    assert cli.main(_train(run, "--resume")) == 0  # the same settings resume


def test_an_existing_run_is_not_overwritten_without_a_word(tmp_path, capsys):
    """Case 11: training into a run folder without --resume wiped its metrics and overwrote its checkpoint."""
    from mfkernels import cli

    run = tmp_path / "run"
    assert cli.main(_train(run)) == 0
    files = {name: (run / name).read_bytes() for name in ("checkpoint.pt", "metrics.jsonl", "metrics.csv")}
    capsys.readouterr()
    assert cli.main(_train(run)) == 2
    _one_clear_line(capsys, "already holds a run", "--resume", "--overwrite")
    assert {name: (run / name).read_bytes() for name in files} == files
    assert cli.main(_train(run, "--overwrite")) == 0
    with pytest.raises(ValueError, match="exclude each other"):
        from mfkernels.training import TrainConfig

        TrainConfig(resume=True, overwrite=True).validate()


def _corrupt_checkpoint(run, edit):
    from mfkernels.training import load_checkpoint, save_checkpoint

    payload = load_checkpoint(run / "checkpoint.pt")
    edit(payload)
    save_checkpoint(run / "checkpoint.pt", payload)


@pytest.mark.parametrize(
    "case",
    [
        "unknown option",
        "wrong option type",
        "unknown data option",
        "missing cuda device",
        "out is a file",
        "out under a file",
        "checkpoint is a folder",
        "sample out is a folder",
        "negative n",
        "eval n 0",
        "no optimizer_state",
        "negative step",
    ],
)
def test_cli_errors_are_one_clear_line(case, tmp_path, capsys):
    """Case 12: each of these printed a traceback (rc 1), NaN as JSON, or resumed from step -5."""
    from mfkernels import cli

    run = tmp_path / "run"
    if case in ("checkpoint is a folder", "sample out is a folder", "negative n", "eval n 0", "no optimizer_state",
                "negative step"):
        assert cli.main(_train(run)) == 0
        capsys.readouterr()
    ckpt = str(run / "checkpoint.pt")
    (tmp_path / "afile").write_text("x")
    calls = {
        "unknown option": (_train(run, "--set", "foo=1"), "unknown option"),
        "wrong option type": (_train(run, "--set", "hidden_features=abc"), "must be int"),
        "unknown data option": (_train(run, "--data-option", "foo=1"), "unknown option"),
        # with a GPU, ask for one index past the last device: every machine has a CUDA device it lacks
        "missing cuda device": ((_train(run, "--device", f"cuda:{torch.cuda.device_count()}"), "CUDA device(s)")
                        if torch.cuda.is_available() else (_train(run, "--device", "cuda"), "no CUDA device")),
        "out is a file": (_train(tmp_path / "afile"), "afile"),
        "out under a file": (_train(tmp_path / "afile" / "run"), "afile"),
        "checkpoint is a folder": (["eval", str(run)], "is a folder"),
        "sample out is a folder": (["sample", ckpt, "-n", "5", "--out", str(tmp_path)], "--out"),
        "negative n": (["sample", ckpt, "-n", "-1", "--out", str(tmp_path / "s.pt")], "-n must be >= 1"),
        "eval n 0": (["eval", ckpt, "--n", "0"], "--n must be >= 1"),
        "no optimizer_state": (_train(run, "--resume"), "no optimizer_state"),
        "negative step": (_train(run, "--resume"), "at step -5"),
    }
    if case == "no optimizer_state":
        _corrupt_checkpoint(run, lambda p: p.pop("optimizer_state"))
    if case == "negative step":
        _corrupt_checkpoint(run, lambda p: p.update(step=-5))
    args, fragment = calls[case]
    assert cli.main(args) == 2
    _one_clear_line(capsys, fragment)


def test_fit_refuses_a_nan_clip_norm():
    """Case 12: fit(clip_norm=nan) silently turned clipping off."""
    from mfkernels.training import TrainConfig

    for bad in (math.nan, -1.0, math.inf):
        with pytest.raises(ValueError, match="'clip_norm' must be a finite float >= 0"):
            TrainConfig(clip_norm=bad).validate()


# ---- errors from inside torch turned into the op's or model's own (case 13) and the float32 range (case 6) ----

def test_model_input_of_another_dtype_is_named(gen):
    model = build_model("dnf", features=4, manifold_dim=2)
    with pytest.raises(ValueError, match="x is torch.float64 on cpu but the model is torch.float32"):
        model.log_prob(torch.randn(3, 4, dtype=torch.float64))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_loss_on_an_empty_batch_raises(name, gen):
    model = _model(name, gen)
    with pytest.raises(ValueError, match=r"\.loss: the batch is empty"):
        model.loss(torch.zeros(0, model.config.features, dtype=torch.float64))


def test_chart_flow_checks_its_input_and_samples_nothing():
    model = build_model("chart")
    with pytest.raises(ValueError, match=r"ChartFlow: expected x of shape \(B, 2\)"):
        model.loss(torch.randn(5, 3))
    with pytest.raises(ValueError, match=r"ChartFlow: expected x of shape \(B, 2\)"):
        model.log_prob(torch.randn(5, 3))
    assert model.sample(0).shape == (0, 2)


def test_spectrum_nan_policy_and_intrinsic_dimension_refuses_nan(device):
    A = torch.randn(2, 4, 4, dtype=torch.float64).to(device)
    A[1, 1, 1] = math.nan
    eigenvalues, vectors = ops.spectrum(A)
    assert torch.isnan(eigenvalues[1]).all() and torch.isnan(vectors[1]).all()
    torch.testing.assert_close(eigenvalues[0], ops.spectrum(A[0])[0])
    with pytest.raises(ValueError, match="mfkernels.ops.intrinsic_dimension: argument 'A' holds NaN"):
        ops.intrinsic_dimension(A)


def test_tril_gaussian_nan_in_A_and_zero_dimensions(device):
    A = torch.eye(4, dtype=torch.float64, device=device)
    A[1, 1] = math.nan
    out = ops.tril_gaussian_log_prob(torch.randn(3, 4, dtype=torch.float64).to(device), A, 0.0)
    assert torch.isnan(out).all()
    z = torch.randn(3, 0, dtype=torch.float64, device=device, requires_grad=True)
    out = ops.tril_gaussian_log_prob(z, torch.zeros(0, 0, dtype=torch.float64, device=device), 0.0)
    assert torch.equal(out, torch.zeros(3, dtype=torch.float64, device=device))  # log N on R^0 = 0
    out.sum().backward()


def test_rq_spline_with_no_bins_names_the_widths():
    x = torch.randn(2, 3)
    with pytest.raises(ValueError, match="'unnormalized_widths' must hold K >= 1 bins"):
        ops.rq_spline(x, torch.randn(2, 3, 0), torch.randn(2, 3, 0), torch.randn(2, 3, 0))


def test_nif_sample_posterior_agrees_with_nif_block_on_a_singular_block(gen):
    x = torch.randn(3, 2, 4, dtype=torch.float64, generator=gen)
    A = torch.randn(2, 4, 2, dtype=torch.float64, generator=gen)
    A[0, :, 1] = 0  # block 0's precision is singular
    b, log_sigma = torch.zeros(2, 4, dtype=torch.float64), torch.zeros(2, 4, dtype=torch.float64)
    _, manifold, _, z_point = ops.nif_block(x, A, b, log_sigma)
    z = ops.nif_sample_posterior(x, A, b, log_sigma, generator=torch.Generator().manual_seed(0))
    assert torch.isnan(z[:, 0]).all() and torch.isnan(z_point[:, 0]).all() and torch.isnan(manifold).all()
    assert torch.isfinite(z[:, 1]).all()


def test_float32_range_of_gram_logdet_is_as_documented(gen):
    """Case 6, documented rather than rescaled: float32 forms J^T J in float32, so |J| ~ 1e20 overflows
    (NaN) and |J| ~ 1e-30 underflows (-inf, 'singular'); float64 gives the true values, and float32
    within the documented range agrees with float64."""
    J = torch.randn(3, 4, 2, dtype=torch.float64, generator=gen)
    for scale in (1e20, 1e-30):
        exact = ops.gram_logdet(scale * J)
        torch.testing.assert_close(exact, ops.gram_logdet(J) + 2 * math.log(scale))  # d log(scale), d = 2
        single = ops.gram_logdet((scale * J).float())
        assert not torch.isfinite(single).any()  # never a finite wrong number
    for scale in (1e15, 1e-15):
        torch.testing.assert_close(ops.gram_logdet((scale * J).float()).double(), ops.gram_logdet(scale * J),
                                   rtol=1e-5, atol=1e-4)


def test_float32_overflow_of_the_gaussian_ops_is_nan_not_a_wrong_number(gen):
    """Case 6 for lowrank, tril (sigma > 0) and nif_block: factors of magnitude 1e20 square past float32's
    range; the documented result is NaN (float64 gives the value), never a finite wrong one."""
    x = torch.randn(3, 5, generator=gen)
    W = torch.randn(5, 2, generator=gen)
    lowrank = ops.lowrank_gaussian_log_prob(x, torch.zeros(5), 1e20 * W, torch.ones(5))
    A = torch.tril(torch.randn(5, 5, generator=gen)) + 3 * torch.eye(5)
    tril = ops.tril_gaussian_log_prob(x, 1e20 * A, 0.1)
    xn, An = torch.randn(3, 2, 4, generator=gen), torch.randn(2, 4, 2, generator=gen)
    nif = ops.nif_block(xn, 1e20 * An, torch.zeros(2, 4), torch.zeros(2, 4))[0]
    for out in (lowrank, tril, nif):
        assert torch.isnan(out).all()
    exact = ops.lowrank_gaussian_log_prob(
        x.double(), torch.zeros(5).double(), 1e20 * W.double(), torch.ones(5).double()
    )
    assert torch.isfinite(exact).all()

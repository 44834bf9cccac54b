"""Model-level benchmarks (`mfkernels bench --models`), each against its
baseline in the same run:

1. The exact Gram density of M-flow (paper 000 eq. 16) for a batch of points through an 8-layer RQ
   spline generator: mfkernels (batched forward tangents + ops.gram_logdet, `manifold_log_prob`) vs
   torch.autograd.functional.jacobian per point + slogdet (gram_timing.time_gram_density), at D = 64,
   d = 8 and on the thin spiral's D = 2, d = 1. The two results are compared as well.
2. DNF training throughput (steps/s): our DNF vs the same architecture with nflows' layers
   (PiecewiseRationalQuadraticCouplingTransform, LULinear, PiecewiseRationalQuadraticCDF) around the
   same conditioner networks, same loss code.
3. Spread-flow training step on the fading square (paper 003, D = 1024): our SpreadFlow vs the same
   model with the autograd twin couplings and torch.distributions.MultivariateNormal for the prior.
4. NIF training step on the 8 x 8 digits with block upsampling (ops.nif_block over 16 blocks) vs the
   dense formulation of the same layer: one 64 x 32 block through ops.nif_block, and
   torch.distributions.LowRankMultivariateNormal with the dense A.

References:
    | The papers listed in docs/papers.md (titles, authors, links and the equation map)
"""

from __future__ import annotations

import copy

import torch

from .. import flows, reference
from ..models import build_model
from .flows import interleaved_step_ms
from .gram_timing import time_gram_density

GRAM_CASES = [  # (D, d, hidden, points, points in quick mode)
    (64, 8, 128, 500, 20),
    (2, 1, 64, 500, 100),
]
# On a GPU: 10,000 points (the size of the M-flow GPU target); the per-point autograd reference is timed on the
# first GPU_GRAM_REFERENCE_POINTS of them and scaled (it costs the same per point).
GPU_GRAM_POINTS, GPU_GRAM_REFERENCE_POINTS = 10_000, 50
DNF_CASES = [  # (D, d, layers, inner layers, hidden, batch)
    (2, 1, 5, 3, 64, 100),
    (64, 8, 8, 4, 128, 256),
]
GPU_DNF_BATCH = 1024  # the D = 64 case's batch on a GPU


def _perturb(model: torch.nn.Module, seed: int, scale: float = 0.02) -> None:
    """Moves the zero-initialised conditioners off the identity so the maps are not trivial. Kept
    small: with 64 features, 0.05 already makes the 16-layer composite expand so fast (~1e10) that
    float32 round trips lose every digit, a broken model rather than a benchmark."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype).to(p.device))


def gram_density_rows(device: str = "cpu", quick: bool = False, seed: int = 0) -> list[dict]:
    rows = []
    for D, d, hidden, points, quick_points in GRAM_CASES:
        model = build_model("mflow", features=D, manifold_dim=d, num_layers=8, inner_layers=2,
                            hidden_features=hidden, seed=seed).to(device).eval()
        _perturb(model, seed)
        # points on the model's manifold, as M-flow's evaluation sees (data near what it learned)
        on_gpu = device.startswith("cuda")
        n = quick_points if quick else (GPU_GRAM_POINTS if on_gpu else points)
        u = torch.randn(n, d, generator=torch.Generator().manual_seed(seed)).to(device)
        with torch.no_grad():
            x = model.decode(u)
        row = time_gram_density(model, x, reference_points=GPU_GRAM_REFERENCE_POINTS if on_gpu and not quick else None)
        rows.append({"case": f"M-flow Gram density, 8 RQ layers, D={D}, d={d}", **row})
    return rows


def _nflows_split_flow(model) -> torch.nn.Module | None:
    """A copy of a split-flow model whose outer and inner flows are nflows transforms (same
    conditioners, same loss); None without nflows."""
    try:
        from nflows.transforms.base import CompositeTransform
        from nflows.transforms.coupling import PiecewiseRationalQuadraticCouplingTransform
        from nflows.transforms.lu import LULinear
        from nflows.transforms.nonlinearities import PiecewiseRationalQuadraticCDF
    except ImportError:
        return None
    c = model.config
    twin = copy.deepcopy(model)

    def convert(stack, features, tail_bound):
        layers = []
        for layer in stack.layers:
            if isinstance(layer, flows.RQSplineCoupling):
                net = layer.conditioner
                transformed = torch.zeros(features, dtype=torch.int)
                transformed[layer.transform_index] = 1
                layers.append(PiecewiseRationalQuadraticCouplingTransform(
                    transformed, lambda n_in, n_out, net=net: net, num_bins=c.num_bins, tails="linear",
                    tail_bound=tail_bound))
            elif isinstance(layer, flows.LULinear):
                layers.append(LULinear(features, identity_init=True))
            elif isinstance(layer, flows.ElementwiseRQSpline):
                layers.append(PiecewiseRationalQuadraticCDF([features], num_bins=c.num_bins, tails="linear",
                                                            tail_bound=tail_bound))
            else:
                raise TypeError(f"no nflows equivalent of {type(layer).__name__}")
        return CompositeTransform(layers)

    twin.outer = convert(model.outer, c.features, c.tail_bound)
    twin.inner = convert(model.inner, c.manifold_dim, c.inner_tail_bound)
    return twin


def _dnf_loss(model, x):
    return model.loss(x)[0]


def dnf_training_rows(device: str = "cpu", quick: bool = False, seed: int = 0) -> list[dict]:
    rows = []
    steps = 10 if quick else 40
    for D, d, layers, inner, hidden, batch in DNF_CASES:
        if device.startswith("cuda") and D == 64:
            batch = GPU_DNF_BATCH
        ours = build_model("dnf", features=D, manifold_dim=d, num_layers=layers, inner_layers=inner,
                           hidden_features=hidden, seed=seed)
        data = torch.randn(batch * steps, D, generator=torch.Generator().manual_seed(seed))
        impls = {"mfkernels": ours, "nflows": _nflows_split_flow(ours)}
        case = f"DNF training step, {layers}+{inner} RQ layers, D={D}, d={d}, batch {batch}"
        torch.manual_seed(seed)
        timed = interleaved_step_ms(
            {name: model.to(device).train() for name, model in impls.items() if model is not None},
            data.to(device),
            batch,
            warmup=3,
            loss_fn=_dnf_loss,
        )
        for name, ms in timed.items():
            rows.append({"case": case, "impl": name, "step_ms": ms, "steps_per_s": 1e3 / ms,
                         "speedup_vs_nflows": timed.get("nflows", float("nan")) / ms})
    return rows


def _spread_twin(model):
    """The same SpreadFlow (weights copied) with autograd twin couplings and a MultivariateNormal prior."""
    from ..models import SpreadFlow

    class SpreadTwin(SpreadFlow):
        def prior_log_prob(self, z):
            L = self.prior_factor()
            cov = L @ L.T + self.config.prior_noise_std**2 * torch.eye(L.shape[0], dtype=L.dtype, device=L.device)
            return torch.distributions.MultivariateNormal(torch.zeros_like(cov[0]), covariance_matrix=cov).log_prob(z)

    twin = SpreadTwin(model.config)
    twin.load_state_dict(model.state_dict())
    for layer in twin.flow.modules():
        if isinstance(layer, flows.AffineCoupling):
            layer.coupling_fn = reference.affine_coupling
    return twin


def _model_loss(model, x):
    return model.loss(x)[0]


def spread_training_rows(device: str = "cpu", quick: bool = False, seed: int = 0) -> list[dict]:
    from ..data.spread import FadingSquare

    steps, batch = (5 if quick else 20), 100
    data, _ = FadingSquare().sample(batch * steps, torch.Generator().manual_seed(seed))
    ours = build_model("spread", features=1024, num_layers=4, seed=seed)
    impls = {"mfkernels": ours, "autograd twin + MultivariateNormal": _spread_twin(ours)}
    return _timed_rows("spread flow training step, fading square D=1024, 4 VP couplings, batch 100", impls,
                       data - data.mean(0), batch, device, seed, "autograd twin + MultivariateNormal")


def _nif_dense_twins(model):
    """Two dense formulations of a block NIF model's layer (weights copied): through ops.nif_block as
    one 64 x 32 block, and through LowRankMultivariateNormal."""
    dense = build_model("nif", {**model.config.to_dict(), "upsample_factor": 0})
    dense.flow.load_state_dict(model.flow.state_dict())
    layer = model.nif
    with torch.no_grad():
        dense.nif.A.copy_(layer.dense_matrix()[None])
        dense.nif.b.copy_(layer._x_flat(layer.b[None])[None, 0])
        dense.nif.log_sigma.copy_(layer._x_flat(layer.log_sigma[None])[None, 0])

    class LowRank(type(dense)):
        def log_prob(self, x):
            y, logabsdet = self.flow(x)
            A, sigma2 = self.nif.A[0], torch.exp(2 * self.nif.log_sigma[0])
            return torch.distributions.LowRankMultivariateNormal(self.nif.b[0], A, sigma2).log_prob(y) + logabsdet

    lowrank = LowRank(dense.config)
    lowrank.load_state_dict(dense.state_dict())
    return dense, lowrank


def nif_training_rows(device: str = "cpu", quick: bool = False, seed: int = 0) -> list[dict]:
    from ..data.digits import Digits

    steps, batch = (5 if quick else 15), 100  # the 1500 training images
    data, _ = Digits(seed=seed).sample(batch * steps, torch.Generator().manual_seed(seed))
    block = build_model("nif", features=64, manifold_dim=32, upsample_factor=2, num_layers=6, hidden_features=128,
                        seed=seed)
    dense, lowrank = _nif_dense_twins(block)
    impls = {"mfkernels block (16 blocks 4x2)": block, "dense, ops.nif_block (one 64x32 block)": dense,
             "dense, LowRankMultivariateNormal": lowrank}
    return _timed_rows("NIF training step, 8x8 digits, 6 RQ layers + NIF 64->32, batch 100", impls, data, batch,
                       device, seed, "dense, LowRankMultivariateNormal")


class _NLLOnly(torch.nn.Module):
    """A pixel-rejection model's loss without its reconstruction pass f⁻¹(u, 0) (same flow, same NLL)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def loss(self, x):
        return -self.model.log_prob(x).mean(), {}


class _NoReuse(torch.nn.Module):
    """A pixel-rejection model whose reconstruction runs the last coupling's conditioner again."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def loss(self, x):
        return self.model.loss(x, reuse_conditioner=False)


def pixel_rejection_rows(device: str = "cpu", quick: bool = False, seed: int = 0) -> list[dict]:
    """What the reconstruction pass costs in a PR training step (NLL + Huber penalty vs the NLL alone),
    and what reusing the forward pass's conditioner output in it saves (possible for one layer only:
    a last coupling v -> v' conditioned on u, `manifold_coupling=True`)."""
    from ..data.clutter import SquareWithClutter

    steps, batch = (5 if quick else 20), 100
    data = SquareWithClutter(size=12, square=4).sample(batch * steps, torch.Generator().manual_seed(seed))[0]
    options = dict(features=144, manifold_dim=2, inner_layers=0, num_layers=4, tail_bound=3.0, delta=0.5,
                   penalty_weight=1440.0, seed=seed)
    ours = build_model("pr", **options)
    tailed = build_model("pr", manifold_coupling=True, **options)
    impls = {"PR-D: NLL + Huber(x, f^-1(u, 0))": ours, "NLL alone (no reconstruction)": _NLLOnly(ours)}
    rows = _timed_rows("pixel-rejection step, 12x12 clutter, 4 RQ layers + LU, d=2, batch 100", impls, data, batch,
                       device, seed, "NLL alone (no reconstruction)")
    impls = {"last coupling's conditioner reused": tailed, "last coupling's conditioner run again": _NoReuse(tailed)}
    return rows + _timed_rows("pixel-rejection step as above + a last coupling v -> v' given u (manifold_coupling)",
                              impls, data, batch, device, seed, "last coupling's conditioner run again")


def _timed_rows(case, impls, data, batch, device, seed, baseline) -> list[dict]:
    torch.manual_seed(seed)
    timed = interleaved_step_ms({name: model.to(device).train() for name, model in impls.items()}, data.to(device),
                                batch, warmup=3, loss_fn=_model_loss)
    return [{"case": case, "impl": name, "step_ms": ms, "steps_per_s": 1e3 / ms, "baseline": baseline,
             "speedup_vs_baseline": timed[baseline] / ms} for name, ms in timed.items()]


def run(device: str = "cpu", quick: bool = False, seed: int = 0) -> dict[str, list[dict]]:
    return {
        "gram_density": gram_density_rows(device, quick, seed),
        "dnf_training": dnf_training_rows(device, quick, seed),
        "spread_training": spread_training_rows(device, quick, seed),
        "nif_training": nif_training_rows(device, quick, seed),
        "pixel_rejection": pixel_rejection_rows(device, quick, seed),
    }


def format_table(report: dict[str, list[dict]]) -> str:
    lines = ["exact Gram density (M-flow eq. 16): mfkernels vs per-point autograd Jacobian + slogdet, same points",
             f"{'case':<46} {'points':>6} {'mfkernels s':>12} {'autograd s':>11} {'speed-up':>9} {'max |diff|':>11}"
             f" {'(autograd timed on)':>20}"]
    for r in report["gram_density"]:
        lines.append(f"{r['case']:<46} {r['points']:>6} {r['mfkernels_s']:>12.4f} {r['autograd_s']:>11.3f} "
                     f"{r['speedup']:>8.1f}x {r['max_abs_diff']:>11.2e} {r.get('autograd_points', r['points']):>20}")
    lines += ["", "DNF training throughput: mfkernels layers vs nflows layers (same conditioners and loss)",
              f"{'case':<58} {'impl':<10} {'step ms':>8} {'steps/s':>8} {'vs nflows':>9}"]
    for r in report["dnf_training"]:
        lines.append(f"{r['case']:<58} {r['impl']:<10} {r['step_ms']:>8.2f} {r['steps_per_s']:>8.1f} "
                     f"{r['speedup_vs_nflows']:>8.2f}x")
    for key, title in (
        ("spread_training", "spread-flow training step (paper 003), same weights and data"),
        ("nif_training", "NIF training step (paper 001), block vs dense formulations, same weights"),
        ("pixel_rejection", "pixel-rejection training step (paper 002): cost of the reconstruction pass"),
    ):
        rows = report.get(key, [])
        if rows:
            lines += ["", title]
        for case in dict.fromkeys(r["case"] for r in rows):  # one block per case, in order
            group = [r for r in rows if r["case"] == case]
            lines += [f"{case}; speed-up vs {group[0]['baseline']}",
                      f"  {'impl':<42} {'step ms':>8} {'steps/s':>8} {'speed-up':>9}"]
            lines += [
                f"  {r['impl']:<42} {r['step_ms']:>8.2f} {r['steps_per_s']:>8.1f} {r['speedup_vs_baseline']:>8.2f}x"
                for r in group
            ]
    return "\n".join(lines)

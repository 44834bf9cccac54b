"""Training-step time of a whole flow, the number a user feels: an 8-layer rational-quadratic
spline coupling stack (D = 64, K = 8) built from mfkernels.flows on
the fused op, the same layers on the autograd twin, and the same architecture built from nflows'
classes (PiecewiseRationalQuadraticCouplingTransform, ReversePermutation, CompositeTransform) around
the identical conditioner networks. One step = forward, Gaussian NLL, backward, Adam update; the
report gives the median step over one epoch after warm-up.
"""

from __future__ import annotations

import time
from typing import Callable

import torch
from torch import nn

from .. import flows, ops, reference
from ..training import make_adam

FEATURES, LAYERS, BINS, HIDDEN, TAIL_BOUND = 64, 8, 8, 128, 3.0


def _mfk_stack(spline_fn) -> flows.Flow:
    layers: list[flows.Transform] = []
    for i in range(LAYERS):
        layers += [flows.RQSplineCoupling(FEATURES, num_bins=BINS, tail_bound=TAIL_BOUND, hidden_features=HIDDEN,
                                          mask=flows.alternating_mask(FEATURES, even=i % 2 == 0), spline_fn=spline_fn),
                   flows.Permutation(FEATURES, "reverse")]
    return flows.Flow(flows.Sequential(*layers), FEATURES)


def _nflows_stack(template: flows.Flow) -> nn.Module | None:
    """nflows' own layers around copies of the template's conditioners (same architecture and
    weights); None without nflows. nflows' mask marks transformed features with 1."""
    try:
        from nflows.distributions.normal import StandardNormal
        from nflows.flows.base import Flow
        from nflows.transforms.base import CompositeTransform
        from nflows.transforms.coupling import PiecewiseRationalQuadraticCouplingTransform
        from nflows.transforms.permutations import ReversePermutation
    except ImportError:
        return None
    import copy

    layers = []
    for i in range(LAYERS):
        ours = template.transform.layers[2 * i]
        net = copy.deepcopy(ours.conditioner)
        transformed = (~flows.alternating_mask(FEATURES, even=i % 2 == 0)).int()
        layers += [PiecewiseRationalQuadraticCouplingTransform(
            transformed, lambda n_in, n_out, net=net: net, num_bins=BINS, tails="linear", tail_bound=TAIL_BOUND),
            ReversePermutation(FEATURES)]
    return Flow(CompositeTransform(layers), StandardNormal([FEATURES]))


def _nll(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return -model.log_prob(x).mean()


def interleaved_step_ms(models: dict[str, nn.Module], data: torch.Tensor, batch: int, warmup: int,
                        loss_fn: Callable[[nn.Module, torch.Tensor], torch.Tensor] = _nll) -> dict[str, float]:
    """Median milliseconds of one training step (loss, backward, Adam) of each model over one pass
    through data, the models taking turns step by step (the order rotating) so that the machine's
    drift over the run (±30 % within minutes on the shared CI machine) falls on all of them alike.
    The optimiser is the trainer's (`training.make_adam`: fused Adam where available)."""
    optimizers = {name: make_adam(model.parameters(), lr=1e-4) for name, model in models.items()}
    times: dict[str, list[float]] = {name: [] for name in models}
    names = list(models)
    for s in range(warmup + len(data) // batch):
        x = data[(s * batch) % len(data):][:batch]
        shift = s % len(names)
        for name in names[shift:] + names[:shift]:
            model, optimizer = models[name], optimizers[name]
            t0 = time.perf_counter()
            loss = loss_fn(model, x)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if data.is_cuda:
                torch.cuda.synchronize()
            if s >= warmup:
                times[name].append(time.perf_counter() - t0)
    return {name: 1e3 * sorted(t)[len(t) // 2] for name, t in times.items()}


def run(device: str = "cpu", batch: int = 512, steps_per_epoch: int = 20, seed: int = 0,
        progress: Callable[[str], None] | None = None) -> list[dict[str, object]]:
    """Median step time (ms) of each implementation over one epoch of `steps_per_epoch` batches."""
    torch.manual_seed(seed)
    template = _mfk_stack(ops.rq_spline)
    data = 1.5 * torch.randn(batch * steps_per_epoch, FEATURES, generator=torch.Generator().manual_seed(seed))
    models = {"mfkernels": template, "twin": _mfk_stack(reference.rq_spline), "nflows": _nflows_stack(template)}
    models["twin"].load_state_dict(template.state_dict())
    if progress:
        progress(", ".join(name for name, model in models.items() if model is not None))
    timed = interleaved_step_ms({name: model.to(device) for name, model in models.items() if model is not None},
                                data.to(device), batch, warmup=3)
    rows = [{"flow": f"{LAYERS}x RQ coupling (D={FEATURES}, K={BINS}, hidden={HIDDEN})", "impl": name,
             "batch": batch, "step_ms": ms} for name, ms in timed.items()]
    base = rows[0]["step_ms"]
    for row in rows:
        row["relative_to_mfkernels"] = row["step_ms"] / base
    return rows


def format_table(rows: list[dict[str, object]]) -> str:
    lines = [f"training step of {rows[0]['flow']}, batch {rows[0]['batch']} (median over one epoch)",
             f"{'impl':<10} {'step ms':>9} {'x mfkernels':>12}"]
    lines += [f"{r['impl']:<10} {r['step_ms']:>9.2f} {r['relative_to_mfkernels']:>11.2f}x" for r in rows]
    return "\n".join(lines)

"""Swap torch.distributions.LowRankMultivariateNormal for mfkernels.ops.lowrank_gaussian_log_prob in
an existing model: factor analysis (x = W z + loc + eps, z ~ N(0, I_K), eps ~ N(0, diag psi): the
Gaussian NIF layer's marginal, paper 001 eq 41) fitted by maximum likelihood with Adam.

    python python/lowrank_prior_swap.py [--dim 512] [--rank 16] [--steps 300]

The model class below is what a user already has; the only change is the one line in `log_prob`
chosen by --impl. Both runs start from the same seed, so their losses agree to rounding, and the
script prints the time per training step of each.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn
from tqdm import trange

from mfkernels.ops import lowrank_gaussian_log_prob


class FactorAnalysis(nn.Module):
    def __init__(self, dim: int, rank: int, impl: str):
        super().__init__()
        self.loc = nn.Parameter(torch.zeros(dim))
        self.W = nn.Parameter(0.1 * torch.randn(dim, rank))
        self.log_psi = nn.Parameter(torch.zeros(dim))
        self.impl = impl

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        psi = self.log_psi.exp()
        if self.impl == "torch":
            return torch.distributions.LowRankMultivariateNormal(self.loc, self.W, psi).log_prob(x)
        return lowrank_gaussian_log_prob(x, self.loc, self.W, psi)  # the swap: same values and gradients


def fit(impl: str, data: torch.Tensor, rank: int, steps: int, seed: int) -> tuple[float, float]:
    torch.manual_seed(seed)
    model = FactorAnalysis(data.shape[1], rank, impl)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-2)
    times = []
    for step in (bar := trange(steps, desc=impl, leave=False)):
        batch = data[(step * 256) % len(data):][:256]
        t0 = time.perf_counter()
        loss = -model.log_prob(batch).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - t0)
        bar.set_postfix(nll=f"{loss.item():.2f}", refresh=False)
    with torch.no_grad():
        nll = -model.log_prob(data).mean().item()
    return nll, 1e3 * sorted(times)[len(times) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    g = torch.Generator().manual_seed(args.seed)
    W_true = torch.randn(args.dim, args.rank, generator=g)
    data = torch.randn(4096, args.rank, generator=g) @ W_true.T + 0.3 * torch.randn(4096, args.dim, generator=g)
    results = {impl: fit(impl, data, args.rank, args.steps, args.seed) for impl in ("torch", "mfkernels")}
    for impl, (nll, ms) in results.items():
        print(f"{impl:>10}: final NLL {nll:.4f} nats/sample, median step {ms:.2f} ms")
    print(f"speed-up of the swap: {results['torch'][1] / results['mfkernels'][1]:.2f}x per training step")


if __name__ == "__main__":
    main()

"""Train a RealNVP-style flow built from mfkernels.flows on two moons and save a PNG of samples.

    python python/two_moons_flow.py [--steps 2000] [--out two_moons_samples.png]

Needs matplotlib for the figure (pip install matplotlib). Samples are drawn by pushing standard
normal noise through the exact inverse of the flow.
"""

import argparse
import math

import torch
from tqdm import trange

from mfkernels import flows
from mfkernels.data import two_moons


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="two_moons_samples.png")
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    flow = flows.Sequential(
        *[flows.AffineCoupling(2, flows.alternating_mask(2, even=i % 2 == 0), mode="softclamp", clamp=3.0)
          for i in range(8)]
    )
    g = torch.Generator().manual_seed(args.seed + 1)
    data, test = two_moons(50000, generator=g), two_moons(5000, generator=g)

    def nll(x):
        z, logabsdet = flow(x)
        return -(-0.5 * z.square().sum(1) - math.log(2 * math.pi) + logabsdet).mean()

    optimizer = torch.optim.Adam(flow.parameters(), lr=2e-3)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, args.steps)
    for step in (bar := trange(args.steps, desc="two moons")):
        loss = nll(data[torch.randint(0, len(data), (512,), generator=g)])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        if step % 100 == 0:
            bar.set_postfix(nll=f"{loss.item():.3f}")
    with torch.no_grad():
        print(f"held-out NLL: {nll(test).item():.3f} nats")
        samples, _ = flow.inverse(torch.randn(5000, 2, generator=g))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 4), sharex=True, sharey=True)
    axes[0].scatter(*test.T, s=1, alpha=0.4)
    axes[0].set_title("data")
    axes[1].scatter(*samples.T, s=1, alpha=0.4, color="C1")
    axes[1].set_title("flow samples")
    for ax in axes:
        ax.set_xlim(-3, 3)
        ax.set_ylim(-3, 3)
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

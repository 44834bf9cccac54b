"""Why manifold methods exist: a standard full-dimensional flow on data on a circle. Its test
log-likelihood keeps climbing with training (the density concentrates onto a measure-zero set, so
the likelihood is unbounded), while samples stay spread around the circle.

    python python/train_standard.py [--rounds 4] [--steps 500]
"""

import argparse

import torch

from mfkernels.data import VonMisesCircle
from mfkernels.models import StandardFlow
from mfkernels.training import fit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--steps", type=int, default=500)
    args = parser.parse_args()

    g = torch.Generator().manual_seed(0)
    circle = VonMisesCircle()
    train, _ = circle.sample(10_000, g)
    test, _ = circle.sample(1000, g)
    model = StandardFlow(features=2)
    for r in range(1, args.rounds + 1):
        fit(model, train, steps=args.steps, batch_size=100, lr=1e-3, progress=False, seed=r)
        with torch.no_grad():
            radius = model.sample(2000).norm(dim=1)
            print(f"after {r * args.steps:>5} steps: test log-likelihood {model.log_prob(test).mean():8.3f}, "
                  f"sample radius {radius.mean():.3f} ± {radius.std():.3f} (data: 1 ± 0)")


if __name__ == "__main__":
    main()

"""PIE (paper 000's baseline: a full-dimensional flow whose off-manifold latents get a narrow
Gaussian) on a von Mises distribution on the unit circle; its density on the circle (the Gram route)
against the exact von Mises density of held-out points.

    python python/train_pie.py [--steps 2000]
"""

import argparse

import torch

from mfkernels.data import VonMisesCircle
from mfkernels.models import PIE
from mfkernels.training import fit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    args = parser.parse_args()

    circle = VonMisesCircle(concentration=2.0)
    g = torch.Generator().manual_seed(0)
    train, _ = circle.sample(10_000, g)
    test, _ = circle.sample(1000, g)
    model = PIE(features=2, manifold_dim=1, off_manifold_std=0.01)
    fit(model, train, steps=args.steps, batch_size=100, lr=1e-3)

    with torch.no_grad():
        learned, true = model.log_prob(test).double(), circle.log_prob(test.double())
    print(f"test log-likelihood on the circle: PIE {learned.mean():.3f}, true {true.mean():.3f}; "
          f"mean |log p - log p_true| {(learned - true).abs().mean():.3f}")


if __name__ == "__main__":
    main()

"""A deep noisy injective flow (paper 001, appendix B.5) on scikit-learn's 8 × 8 digits: a flow on R^64,
a Gaussian NIF layer down to 16 latent dimensions (block upsampling of a 1 × 4 × 4 latent image) and a
small flow on the latent, trained on the ELBO; then an interpolation between two digits on the
learned manifold (s = 0).

    python python/train_nif.py [--steps 2000] [--out nif_digits.png]
"""

import argparse

import torch

from mfkernels.data.digits import Digits
from mfkernels.models import NIF
from mfkernels.training import fit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--out", default="nif_digits.png")
    args = parser.parse_args()

    digits = Digits()
    g = torch.Generator().manual_seed(0)
    train = torch.cat([digits.sample(generator=g)[0] for _ in range(5)])  # 5 dequantisations per image
    test, _ = digits.sample(generator=g, split="test")
    model = NIF(features=64, manifold_dim=16, upsample_factor=2, inner_layers=2, objective="elbo",
                num_layers=4, hidden_features=64)
    fit(model, train, steps=args.steps, batch_size=100, lr=1e-3)

    with torch.no_grad():
        print(f"test bits/dim (importance-weighted, {model.config.num_importance} draws): "
              f"{digits.bits_per_dim(model.log_prob(test)).mean():.3f}")
        ends = model.encode(test[:2])
        weights = torch.linspace(0, 1, 8)[:, None]
        path = model.decode((1 - weights) * ends[0] + weights * ends[1])  # s = 0: on the manifold

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 10, figsize=(10, 1.3))
    images = [digits.to_images(test[:1])[0], *digits.to_images(path), digits.to_images(test[1:2])[0]]
    for ax, image, label in zip(axes, images, ["start", *[""] * 8, "end"]):
        ax.imshow(image, cmap="gray_r", vmin=0, vmax=1)
        ax.set_axis_off()
        ax.set_title(label, fontsize=8)
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

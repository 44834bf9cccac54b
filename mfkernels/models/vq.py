"""Vector-quantised autoencoder that learns chart centres, and the overlapping chart regions of
paper 004 ("The chart regions U_1, …, U_K").

An encoder E: R^D → R^c, a decoder D: R^c → R^D and K codes v_k minimise
‖D(v_{k*}) − x‖² + β‖E(x) − sg(v_{k*})‖², k* = argmin_k ‖E(x) − v_k‖ (straight-through gradient to E),
the codes following either an exponential moving average of their assigned encodings (`codebook="ema"`)
or the loss ‖sg(E(x)) − v_{k*}‖² (`"loss"`). Codes that stop being used are restarted at random
encodings of the current batch (dead-code restarts), so all K charts stay alive.

Chart regions: with d_k(x) = ‖E(x) − v_k‖ and d̃_m(x) the m-th smallest, x ∈ U_k iff
d_k(x) ≤ (1 + ε) d̃_m(x) (the paper writes <; ≤ keeps the m nearest charts even when d̃_m = 0).

References:
    | Chart flows (a poster)
    | docs/papers.md, paper 004
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def chart_membership(encoded: Tensor, codes: Tensor, epsilon: float, m: int = 1) -> Tensor:
    """(B, K) bool: x_b ∈ U_k. Every point is in at least its m nearest charts."""
    if not 1 <= m <= codes.shape[0] or epsilon < 0:
        raise ValueError(f"chart_membership: need 1 <= m <= K = {codes.shape[0]} and epsilon >= 0, got m={m}, "
                         f"epsilon={epsilon}")
    distances = torch.cdist(encoded, codes)
    threshold = distances.kthvalue(m, dim=1, keepdim=True).values
    return distances <= (1 + epsilon) * threshold


def _mlp(n_in: int, n_out: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
                         nn.Linear(hidden, n_out))


class VQAutoencoder(nn.Module):
    def __init__(self, features: int, code_dim: int, num_codes: int, hidden_features: int = 64,
                 commitment: float = 0.25, codebook: str = "ema", decay: float = 0.95,
                 restart_below: float = 0.02, seed: int = 0):
        super().__init__()
        if codebook not in ("ema", "loss"):
            raise ValueError(f"VQAutoencoder: 'codebook' must be 'ema' or 'loss', got {codebook!r}")
        if not 0 < decay < 1 or num_codes < 1 or code_dim < 1:
            raise ValueError(f"VQAutoencoder: need 0 < decay < 1, num_codes >= 1, code_dim >= 1, got {decay}, "
                             f"{num_codes}, {code_dim}")
        self.encoder = _mlp(features, code_dim, hidden_features)
        self.decoder = _mlp(code_dim, features, hidden_features)
        self.commitment, self.codebook, self.decay, self.restart_below = commitment, codebook, decay, restart_below
        codes = torch.randn(num_codes, code_dim, generator=torch.Generator().manual_seed(seed))
        if codebook == "ema":
            self.register_buffer("codes", codes)
        else:
            self.codes = nn.Parameter(codes)
        self.register_buffer("usage", torch.full((num_codes,), 1.0 / num_codes))  # EMA of assignment shares
        self.register_buffer("code_sums", codes.clone())  # EMA of the sums of assigned encodings
        self.register_buffer("initialized", torch.tensor(False))

    @property
    def num_codes(self) -> int:
        return self.codes.shape[0]

    def nearest(self, encoded: Tensor) -> Tensor:
        return torch.cdist(encoded, self.codes).argmin(1)

    @torch.no_grad()
    def _update_codes(self, encoded: Tensor, index: Tensor) -> None:
        if not bool(self.initialized):  # start the codes on data: random encodings of the first batch
            pick = torch.randint(len(encoded), (self.num_codes,), device=encoded.device)
            self.codes.copy_(encoded[pick])
            self.code_sums.copy_(self.codes * self.usage[:, None])
            self.initialized.fill_(True)
            return
        onehot = F.one_hot(index, self.num_codes).to(encoded.dtype)
        share = onehot.mean(0)
        self.usage.mul_(self.decay).add_((1 - self.decay) * share)
        if self.codebook == "ema":
            self.code_sums.mul_(self.decay).add_((1 - self.decay) * onehot.T @ encoded / len(encoded))
            self.codes.copy_(self.code_sums / self.usage.clamp_min(1e-8)[:, None])
        dead = self.usage < self.restart_below / self.num_codes
        if dead.any():  # restart unused codes at random encodings of this batch
            pick = torch.randint(len(encoded), (int(dead.sum()),), device=encoded.device)
            self.codes[dead] = encoded[pick] + 1e-3 * torch.randn_like(encoded[pick])
            self.usage[dead] = 1.0 / self.num_codes
            self.code_sums[dead] = self.codes[dead] * self.usage[dead][:, None]

    def loss(self, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        encoded = self.encoder(x)
        index = self.nearest(encoded.detach())
        if self.training:
            self._update_codes(encoded.detach(), index)
            index = self.nearest(encoded.detach())
        quantized = self.codes[index]
        straight_through = encoded + (quantized - encoded).detach()
        reconstruction = (self.decoder(straight_through) - x).square().sum(1).mean()
        commitment = (encoded - quantized.detach()).square().sum(1).mean()
        loss = reconstruction + self.commitment * commitment
        if self.codebook == "loss":
            loss = loss + (encoded.detach() - quantized).square().sum(1).mean()
        used = torch.unique(index).numel()
        return loss, {"vq_reconstruction": reconstruction.detach(), "commitment": commitment.detach(),
                      "codes_used": torch.tensor(float(used))}

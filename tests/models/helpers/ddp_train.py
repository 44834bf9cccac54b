"""Run under torchrun by tests/models/test_training.py: a few DDP steps of a DNF, then each rank saves its
parameters (and rank 0 the index of every sample it saw in step 0) to OUT/rank{R}.pt."""

import os
import sys

import torch

from mfkernels.data import ThinSpiral
from mfkernels.models import build_model
from mfkernels.training import fit

out = sys.argv[1]
data, _ = ThinSpiral().sample(400, torch.Generator().manual_seed(0))
model = build_model("dnf", num_layers=2, inner_layers=1, hidden_features=16)
fit(model, data, steps=6, batch_size=40, seed=3, out_dir=os.path.join(out, "run"), checkpoint_every=3,
    progress=False, device="cpu")
torch.save({k: v.detach().clone() for k, v in model.state_dict().items()},
           os.path.join(out, f"rank{os.environ['RANK']}.pt"))

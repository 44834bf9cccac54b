"""The training loop every model shares: `fit(model, data, config)`.

Adam with optional cosine decay and gradient-norm clipping; tqdm progress; metrics to
`metrics.csv` and `metrics.jsonl`; checkpoints written atomically (write to a temporary file, fsync,
rename) every `checkpoint_every` steps and at the end. Runs are reproducible bit for bit: the data
order of each epoch comes from a generator seeded by (seed, epoch) and the noise of each step (DNF's
inflation) from the global RNG reseeded by (seed, step, rank), so a run resumed from a checkpoint
(`resume=True`) continues exactly as the uninterrupted run would have.

Started under `torchrun`, fit trains data-parallel with DistributedDataParallel (gloo on CPU, nccl
on GPU) with no other change: each rank takes its share of every global batch, gradients are
averaged, rank 0 writes logs and checkpoints.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .models import Model, build_model

CHECKPOINT_FORMAT = "mfkernels-checkpoint"
CHECKPOINT_VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used: corrupt, truncated, or of another model/run."""


@dataclasses.dataclass
class TrainConfig:
    """steps: optimiser steps in total (one global batch of batch_size each); lr and a cosine decay
    to 0 (schedule="cosine") or constant lr; clip_norm: max gradient norm (0 disables);
    out_dir: where metrics and checkpoint.pt go (None: no files); device: "cpu", "cuda", or None
    (cuda:LOCAL_RANK when available, else cpu)."""

    steps: int = 1000
    batch_size: int = 100
    lr: float = 1e-3
    schedule: str = "cosine"
    weight_decay: float = 0.0
    clip_norm: float = 5.0
    seed: int = 0
    out_dir: str | None = None
    checkpoint_every: int = 500
    log_every: int = 50
    resume: bool = False
    overwrite: bool = False
    device: str | None = None
    progress: bool = True
    desc: str | None = None

    def validate(self) -> None:
        if self.steps < 0 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError(f"TrainConfig: need steps >= 0, batch_size >= 1, lr > 0; got {self.steps}, "
                             f"{self.batch_size}, {self.lr}")
        if self.schedule not in ("cosine", "constant"):
            raise ValueError(f"TrainConfig: 'schedule' must be 'cosine' or 'constant', got {self.schedule!r}")
        if self.checkpoint_every < 1 or self.log_every < 1:
            raise ValueError("TrainConfig: 'checkpoint_every' and 'log_every' must be >= 1")
        if not (isinstance(self.clip_norm, (int, float)) and 0 <= self.clip_norm < math.inf):
            raise ValueError(f"TrainConfig: 'clip_norm' must be a finite float >= 0 (0 disables clipping), "
                             f"got {self.clip_norm!r}")
        if self.resume and self.overwrite:
            raise ValueError("TrainConfig: 'resume' and 'overwrite' exclude each other")


@dataclasses.dataclass
class _Distributed:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        return self.world_size > 1


def _init_distributed(device: torch.device | None) -> _Distributed:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Distributed()
    import torch.distributed as dist

    if not dist.is_initialized():
        backend = "nccl" if device is not None and device.type == "cuda" else "gloo"
        dist.init_process_group(backend)
    return _Distributed(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def _pick_device(requested: str | None, local_rank: int) -> torch.device:
    if requested:
        try:
            device = torch.device(requested)
        except RuntimeError:
            raise ValueError(f"fit: device {requested!r} is not a torch device (cpu, cuda, cuda:N)") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"fit: device {requested!r} requested but torch sees no CUDA device "
                             f"(torch {torch.__version__}, CUDA {torch.version.cuda or 'not built'})")
        if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"fit: device {requested!r} requested but torch sees {torch.cuda.device_count()} "
                             f"CUDA device(s)")
        if device.type == "cuda" and device.index is None and int(os.environ.get("WORLD_SIZE", "1")) > 1:
            device = torch.device("cuda", local_rank)
        return device
    if torch.cuda.is_available():
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def _step_seed(seed: int, step: int, rank: int) -> int:
    return (seed * 1_000_003 + step * 7919 + rank * 104_729) % (2**63 - 1)


def epoch_permutation(n: int, seed: int, epoch: int) -> Tensor:
    """The data order of one epoch: fixed by (seed, epoch), so a resumed run sees the same batches."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(_step_seed(seed, epoch, 99991)))


def batch_indices(n: int, batch_size: int, seed: int, step: int, rank: int = 0, world_size: int = 1) -> Tensor:
    """Indices of this rank's part of global batch `step` (epochs of n // batch_size batches)."""
    per_epoch = max(n // batch_size, 1)
    epoch, position = divmod(step, per_epoch)
    order = epoch_permutation(n, seed, epoch)
    batch = order[position * batch_size:(position + 1) * batch_size]
    return batch[rank::world_size]


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> None:
    """torch.save to a temporary file in the same folder, fsync, then rename over `path`: a kill at
    any moment leaves either the old checkpoint or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        torch.save(payload, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Reads and validates a checkpoint; a corrupt, truncated or foreign file raises CheckpointError."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"checkpoint {str(path)!r} is a folder; pass the checkpoint.pt inside it")
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch.load raises many types (EOFError, RuntimeError, UnpicklingError...)
        raise CheckpointError(f"checkpoint {str(path)!r} is corrupt or truncated and cannot be read "
                              f"({type(exc).__name__}: {exc}); delete it or pass an intact one") from exc
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{str(path)!r} is not an mfkernels checkpoint (no '{CHECKPOINT_FORMAT}' header)")
    if payload.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(f"checkpoint {str(path)!r} has format version {payload.get('version')}, "
                              f"this mfkernels reads version {CHECKPOINT_VERSION}")
    missing = {"model_name", "model_config", "model_state", "step"} - set(payload)
    if missing:
        raise CheckpointError(f"checkpoint {str(path)!r} is incomplete: missing {sorted(missing)}")
    return payload


def model_from_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> tuple[Model, dict]:
    """Rebuilds the model a checkpoint was written for, with its trained parameters (eval mode)."""
    payload = load_checkpoint(path, map_location)
    model = build_model(payload["model_name"], payload["model_config"])
    try:
        model.load_state_dict(payload["model_state"])
    except RuntimeError as exc:
        raise CheckpointError(f"checkpoint {str(path)!r}: parameters do not fit its model config ({exc})") from exc
    return model.eval(), payload


class _MetricsLog:
    """Appends one row per log step to metrics.csv and metrics.jsonl (truncated back to `step` on resume)."""

    def __init__(self, out_dir: Path | None, resume_step: int):
        self.out_dir = out_dir
        self.fields: list[str] | None = None
        if out_dir is None:
            return
        out_dir.mkdir(parents=True, exist_ok=True)
        jsonl = out_dir / "metrics.jsonl"
        rows = []
        if resume_step > 0 and jsonl.exists():
            rows = [json.loads(line) for line in jsonl.read_text().splitlines() if line.strip()]
            rows = [r for r in rows if r["step"] <= resume_step]
        jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows))
        (out_dir / "metrics.csv").unlink(missing_ok=True)
        for row in rows:
            self._csv(row)

    def _csv(self, row: dict[str, Any]) -> None:
        path = self.out_dir / "metrics.csv"
        if self.fields is None or not path.exists():
            self.fields = list(row)
            with open(path, "w", newline="") as f:
                csv.DictWriter(f, self.fields, extrasaction="ignore").writeheader()
        with open(path, "a", newline="") as f:
            csv.DictWriter(f, self.fields, extrasaction="ignore").writerow(row)

    def write(self, row: dict[str, Any]) -> None:
        if self.out_dir is None:
            return
        with open(self.out_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")
        self._csv(row)


def make_adam(params, lr: float, weight_decay: float = 0.0) -> torch.optim.Adam:
    """Adam, on torch's fused kernel where the parameters' devices and dtypes allow it (one pass per
    tensor instead of about ten, which matters for big parameters such as the spread flow's 1024 x 1024
    prior factor), else the per-tensor implementation."""
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=True)
    except RuntimeError:  # fused=True refuses devices or dtypes it has no kernel for
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)


# Settings a resumed run must share with its checkpoint: anything else would silently continue
# another experiment under the old run's name. `steps` may grow (training a run for longer; the
# cosine schedule then stretches over the new length, recorded in the checkpoint's train_config).
_RESUME_TRAIN_KEYS = ("batch_size", "lr", "schedule", "weight_decay", "clip_norm", "seed")


def _check_resume_settings(path: Path, payload: dict[str, Any], config: TrainConfig, metadata: dict | None) -> None:
    for key in ("optimizer_state", "scheduler_state"):
        if key not in payload:
            raise CheckpointError(f"checkpoint {str(path)!r} has no {key}: it was not written by fit and cannot be "
                                  f"resumed (model_from_checkpoint still loads its weights)")
    step = payload["step"]
    if not isinstance(step, int) or not 0 <= step <= config.steps:
        raise CheckpointError(f"checkpoint {str(path)!r} is at step {step!r}, not one of 0..{config.steps} (steps)")
    saved = payload.get("train_config") or {}
    diffs = [f"{k}: checkpoint {saved[k]!r}, now {getattr(config, k)!r}" for k in _RESUME_TRAIN_KEYS
             if k in saved and saved[k] != getattr(config, k)]
    saved_meta = payload.get("metadata") or {}
    diffs += [f"{k}: checkpoint {saved_meta[k]!r}, now {v!r}" for k, v in (metadata or {}).items()
              if k in saved_meta and saved_meta[k] != v]
    if diffs:
        raise CheckpointError(f"cannot resume {str(path)!r} with other settings than it was trained with "
                              f"({'; '.join(diffs)}); use the same settings, or start a new run elsewhere")


def fit(model: Model, data: Tensor, config: TrainConfig | None = None, metadata: dict[str, Any] | None = None,
        **options) -> dict[str, Any]:
    """Trains `model` on `data` (N, D) in place; returns a summary (final step, last logged terms).
    `metadata` (plain values, e.g. which data set) is stored in the checkpoint for `mfkernels eval`.

    With out_dir set: metrics.csv / metrics.jsonl and checkpoint.pt (model name, config, parameters,
    optimiser and scheduler state, step) every checkpoint_every steps and at the end; resume=True
    continues from out_dir/checkpoint.pt (an error if there is none, or it belongs to another model).
    """
    config = dataclasses.replace(config or TrainConfig(), **options)
    config.validate()
    if data.dim() != 2 or data.shape[0] < 1:
        raise ValueError(f"fit: 'data' must be (N, D) with N >= 1, got shape {tuple(data.shape)}")
    device = _pick_device(config.device, int(os.environ.get("LOCAL_RANK", "0")))
    dist_info = _init_distributed(device)
    out_dir = Path(config.out_dir) if config.out_dir and dist_info.rank == 0 else None
    ckpt_path = Path(config.out_dir) / "checkpoint.pt" if config.out_dir else None

    model.to(device)
    optimizer = make_adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    if config.schedule == "cosine":
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, config.steps) / max(config.steps, 1))))
    else:
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)

    start = 0
    if config.out_dir and not config.resume and not config.overwrite and dist_info.rank == 0:
        held = [
            name for name in ("checkpoint.pt", "metrics.csv", "metrics.jsonl") if (Path(config.out_dir) / name).exists()
        ]
        if held:
            raise ValueError(f"fit: {config.out_dir!r} already holds a run ({', '.join(held)}); resume it "
                             f"(resume=True, --resume) or start over (overwrite=True, --overwrite)")
    if config.resume:
        if ckpt_path is None:
            raise ValueError("fit: resume=True needs out_dir (where checkpoint.pt is)")
        payload = load_checkpoint(ckpt_path, map_location=device)
        if payload["model_name"] != model.name:
            raise CheckpointError(f"checkpoint {str(ckpt_path)!r} belongs to model {payload['model_name']!r}, "
                                  f"not to this {model.name!r} model")
        now = model.config.to_dict()
        if payload["model_config"] != now:
            saved = payload["model_config"]
            diffs = [f"{k}: checkpoint {saved.get(k)!r}, now {now.get(k)!r}" for k in sorted(set(saved) | set(now))
                     if saved.get(k) != now.get(k)]
            raise CheckpointError(f"cannot resume {str(ckpt_path)!r} with another model configuration "
                                  f"({'; '.join(diffs)}); use the same settings, or start a new run elsewhere")
        _check_resume_settings(ckpt_path, payload, config, metadata)
        model.load_state_dict(payload["model_state"])
        optimizer.load_state_dict(payload["optimizer_state"])
        scheduler.load_state_dict(payload["scheduler_state"])
        start = int(payload["step"])

    train_module: nn.Module = model
    if dist_info.active:
        from torch.nn.parallel import DistributedDataParallel

        # find_unused_parameters: M-flow's phases leave one of its two flows out of each step.
        train_module = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                               find_unused_parameters=True)

    log = _MetricsLog(out_dir, start)
    data_device = data.to(device)
    n = data.shape[0]
    if config.batch_size > n:
        raise ValueError(f"fit: batch_size {config.batch_size} exceeds the {n} data points")
    if config.batch_size % dist_info.world_size:
        raise ValueError(f"fit: batch_size {config.batch_size} is not divisible by the {dist_info.world_size} ranks")

    def checkpoint(step: int) -> None:
        if out_dir is None:
            return
        save_checkpoint(ckpt_path, {
            "format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION,
            "model_name": model.name, "model_config": model.config.to_dict(),
            "model_state": model.state_dict(), "optimizer_state": optimizer.state_dict(),
            "scheduler_state": scheduler.state_dict(), "step": step,
            "train_config": dataclasses.asdict(config), "metadata": metadata or {},
        })

    from tqdm.auto import tqdm

    bar = tqdm(total=config.steps, initial=start, desc=config.desc or f"train {model.name}",
               disable=not config.progress or dist_info.rank != 0, dynamic_ncols=True)
    model.train()
    last: dict[str, float] = {}
    for step in range(start, config.steps):
        model.begin_step(step)
        torch.manual_seed(_step_seed(config.seed, step, dist_info.rank))
        x = data_device[batch_indices(n, config.batch_size, config.seed, step, dist_info.rank,
                                      dist_info.world_size).to(device)]
        loss, terms = train_module(x)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"fit: the loss of {model.name} became {loss.item()} at step {step} "
                f"(terms: { {k: float(v) for k, v in terms.items()} }); lower lr or check the data"
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = (torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip_norm)
                     if config.clip_norm > 0 else torch.zeros(()))
        optimizer.step()
        scheduler.step()
        done = step + 1
        if done % config.log_every == 0 or done == config.steps:
            last = {"step": done, "loss": float(loss.detach()), **{k: float(v) for k, v in terms.items()},
                    "grad_norm": float(grad_norm), "lr": scheduler.get_last_lr()[0]}
            log.write(last)
            bar.set_postfix(loss=f"{last['loss']:.3f}")
        if done % config.checkpoint_every == 0 or done == config.steps:
            checkpoint(done)
        bar.update(1)
    bar.close()
    model.eval()
    return {"model": model.name, "steps": config.steps, "last": last}

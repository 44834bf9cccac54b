"""Several seeds of one reproduction (`mfkernels reproduce NAME --seeds 0,1,2`): each seed's run in
OUT/seed<N>/, then OUT/summary.json with the mean and standard deviation over the seeds of every
number in the runs' metrics, beside the seeds' wall times, the versions and the machine, and
OUT/summary.md, the same numbers as one flat table (metric path | mean ± std | per seed)."""

from __future__ import annotations

import datetime
import json
import math
import platform
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import torch


def parse_seeds(text: str) -> list[int]:
    """"0,1,2" -> [0, 1, 2]; a clear error for anything else."""
    try:
        seeds = [int(part) for part in text.split(",") if part.strip() != ""]
    except ValueError:
        raise ValueError(f"--seeds must be integers separated by commas, e.g. 0,1,2; got {text!r}") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds needs at least one seed and no repeats, got {text!r}")
    return seeds


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def aggregate(runs: Sequence[Any]) -> Any:
    """Per leaf across runs of the same structure: numbers -> {mean, std (sample, over finite values),
    values}; equal non-numbers -> that value; differing ones -> the list of them."""
    first = runs[0]
    if isinstance(first, dict) and all(isinstance(r, dict) for r in runs):
        keys = [k for k in first if all(k in r for r in runs)]
        return {k: aggregate([r[k] for r in runs]) for k in keys}
    if all(_is_number(r) for r in runs):  # non-finite values (a KL of inf) are left out, shown as null
        finite = [float(r) for r in runs if math.isfinite(r)]
        if not finite:
            return {"mean": None, "std": None, "values": [None] * len(runs)}
        mean = sum(finite) / len(finite)
        std = math.sqrt(sum((v - mean) ** 2 for v in finite) / (len(finite) - 1)) if len(finite) > 1 else 0.0
        return {"mean": mean, "std": std, "values": [float(r) if math.isfinite(r) else None for r in runs]}
    return first if all(r == first for r in runs) else list(runs)


def _finite_json(value: Any) -> Any:
    """NaN and infinities (not JSON) anywhere in a result become null."""
    if isinstance(value, dict):
        return {k: _finite_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_json(v) for v in value]
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _flat_rows(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    if isinstance(node, dict) and "mean" in node and "values" in node:
        return [(path, node)]
    if isinstance(node, dict):
        return [row for key, value in node.items() for row in _flat_rows(value, f"{path}.{key}" if path else key)]
    return []


def summary_markdown(summary: dict[str, Any]) -> str:
    """summary.json as one table: every number's path in the metrics, mean ± sample std, per-seed values."""
    seeds = summary["seeds"]
    lines = [f"# {summary['experiment']}: {len(seeds)} seed(s) {', '.join(map(str, seeds))}"
             f"{' (quick)' if summary['quick'] else ''}", "",
             f"{summary['date']}; mfkernels {summary['versions']['mfkernels']}, torch {summary['versions']['torch']}; "
             f"{summary['machine']['processor']}, {summary['machine']['threads']} thread(s), "
             f"{summary['machine']['device']}; wall time per seed: "
             + ", ".join(f"{float(v) / 60:.1f} min" for v in summary["wall_seconds"].values()), "",
             "| metric | mean ± std | per seed |", "| --- | --- | --- |"]

    def number(v: Any) -> str:
        return "null" if v is None else f"{v:.4g}"

    for path, cell in _flat_rows(summary["over_seeds"]):
        lines.append(f"| {path} | {number(cell['mean'])} ± {number(cell['std'])} | "
                     f"{', '.join(number(v) for v in cell['values'])} |")
    return "\n".join(lines) + "\n"


def run_seeds(experiment: Callable[..., dict[str, Any]], name: str, out_dir: str | Path, seeds: Sequence[int],
              quick: bool, device: str | None) -> dict[str, Any]:
    out = Path(out_dir)
    results, seconds = [], {}
    for seed in seeds:
        start = time.perf_counter()
        results.append(experiment(out_dir=out / f"seed{seed}", quick=quick, seed=seed, device=device))
        seconds[str(seed)] = time.perf_counter() - start
    from .._version import __version__

    summary = {
        "experiment": name, "quick": quick, "seeds": list(seeds), "wall_seconds": seconds,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "versions": {"mfkernels": __version__, "torch": torch.__version__, "python": platform.python_version()},
        "machine": {"processor": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
                    "device": device or ("cuda" if torch.cuda.is_available() else "cpu")},
        "over_seeds": aggregate(results),
    }
    out.mkdir(parents=True, exist_ok=True)
    summary = _finite_json(summary)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, allow_nan=False))
    (out / "summary.md").write_text(summary_markdown(summary))
    return summary

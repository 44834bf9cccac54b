"""The `mfkernels` command line (also `python -m mfkernels`): info, bench, train, eval, sample, reproduce.

References:
    | The papers listed in docs/papers.md (titles, authors, links and the equation map)
"""

from __future__ import annotations

import argparse
import json
import sys

from .. import reproduce


def _info(args) -> int:
    from . import info

    report = info.collect()
    print(json.dumps(report, indent=2) if args.json else info.format_report(report))
    return 0


def _bench(args) -> int:
    from .. import bench, cpu_memory

    if args.retain_freed_memory and not cpu_memory.retain_freed_memory():
        print("mfkernels bench: --retain-freed-memory needs glibc's mallopt, which this platform lacks",
              file=sys.stderr)
        return 2
    try:
        report = bench.run(ops=args.ops, device=args.device, dtype=args.dtype, quick=args.quick,
                           seed=args.seed)
    except (KeyError, ValueError) as exc:
        print(f"mfkernels bench: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return 2
    print(bench.format_table(report))
    if args.flows:
        report["flow_steps"] = bench.flows.run(device=args.device, steps_per_epoch=5 if args.quick else 20)
        print("\n" + bench.flows.format_table(report["flow_steps"]))
    if args.models:
        report["models"] = bench.models.run(device=args.device, quick=args.quick, seed=args.seed)
        print("\n" + bench.models.format_table(report["models"]))
    if args.profile:
        report["profile"] = bench.profile.run(ops=args.ops, dtype=args.dtype, quick=args.quick, seed=args.seed)
        print("\n" + bench.profile.format_table(report["profile"]))
    if args.exact:
        report["exact_training"] = bench.exact_training.run(quick=args.quick, seed=args.seed)
        print("\n" + bench.exact_training.format_table(report["exact_training"]))
    if args.json:
        bench.write_json(report, args.json)
        print(f"\nwrote {args.json}")
    return 0


def _train(args) -> int:
    from . import commands

    train_options = {"steps": args.steps, "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed,
                     "out_dir": args.out, "resume": args.resume, "overwrite": args.overwrite, "device": args.device,
                     "checkpoint_every": args.checkpoint_every}
    summary = commands.train(args.model, args.data, args.n, commands.parse_options(args.data_option),
                             commands.parse_options(args.set), train_options)
    print(json.dumps(summary, indent=2))
    return 0


def _eval(args) -> int:
    from . import commands

    print(json.dumps(commands.evaluate(args.checkpoint, args.n), indent=2))
    return 0


def _sample(args) -> int:
    from . import commands

    path = commands.sample(args.checkpoint, args.n, args.out, args.temperature, args.seed)
    print(f"wrote {path}")
    return 0


def _reproduce(args) -> int:
    from ..reproduce import EXPERIMENTS

    out = args.out or args.experiment
    if args.seeds is not None:
        from ..reproduce.seeds import parse_seeds, run_seeds

        summary = run_seeds(EXPERIMENTS[args.experiment], args.experiment, out, parse_seeds(args.seeds),
                            args.quick, args.device)
        print(json.dumps(summary["over_seeds"], indent=2))
        print(f"\nwrote seed<N>/ (metrics.json, figures) and summary.json (mean ± std over seeds) under {out}/")
        return 0
    results = EXPERIMENTS[args.experiment](out_dir=out, quick=args.quick, seed=args.seed, device=args.device)
    print(json.dumps(results, indent=2))
    print(f"\nwrote metrics.json and figures (PNG) under {out}/")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mfkernels", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("info", help="versions, build, devices, and the dispatch keys of every op")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=_info)

    p = sub.add_parser("bench", help="time every op against its pure-torch twin")
    p.add_argument("--ops", nargs="+", metavar="NAME", help="ops to run (default: all)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--quick", action="store_true", help="short timing runs (about a second per op)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random inputs")
    p.add_argument("--flows", action="store_true",
                   help="also time a training step of an 8-layer RQ spline flow (mfkernels, twin, nflows)")
    p.add_argument("--models", action="store_true",
                   help="also time M-flow's exact Gram density vs autograd Jacobians and DNF training vs nflows")
    p.add_argument("--exact", action="store_true",
                   help="also time training by the exact manifold likelihood (exact and stochastic log-volume "
                        "steps vs plain torch; CPU)")
    p.add_argument("--profile", action="store_true",
                   help="also split each op's CPU forward + backward into its compiled kernels, the rest of the "
                        "call, the first touch of the kernels' outputs and a copy of the op's bytes")
    p.add_argument("--retain-freed-memory", action="store_true",
                   help="keep freed CPU memory in the process (glibc mallopt; see mfkernels.cpu_memory), so that "
                        "fresh outputs do not page-fault; ops and baselines alike")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    p.set_defaults(func=_bench)

    from ..data import DATASETS
    from ..models import MODELS

    p = sub.add_parser("train", help="train a model on a generated data set (checkpoints, metrics, --resume)")
    p.add_argument("model", choices=sorted(MODELS))
    p.add_argument("--data", required=True, choices=sorted(DATASETS))
    p.add_argument("--n", type=int, default=10000, help="training points (default 10000)")
    p.add_argument("--steps", type=int, default=10000)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="run", help="folder for checkpoint.pt and metrics (default ./run)")
    p.add_argument("--checkpoint-every", type=int, default=500)
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt (same settings)")
    p.add_argument("--overwrite", action="store_true", help="start over in an OUT that already holds a run")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    # action="extend": repeated --set / --data-option groups all apply (the default "store" kept the last)
    p.add_argument("--set", nargs="*", action="extend", metavar="KEY=VALUE",
                   help="model options, e.g. noise_std=0.1 penalty=1 num_layers=5 (see mfkernels.models)")
    p.add_argument("--data-option", nargs="*", action="extend", metavar="KEY=VALUE",
                   help="data set options, e.g. alpha=4.19")
    p.set_defaults(func=_train)

    p = sub.add_parser("eval", help="test metrics of a trained checkpoint on fresh data")
    p.add_argument("checkpoint")
    p.add_argument("--n", type=int, default=2000)
    p.set_defaults(func=_eval)

    p = sub.add_parser("sample", help="draw samples from a checkpoint into a .pt file or a .png plot")
    p.add_argument("checkpoint")
    p.add_argument("-n", type=int, default=2000)
    p.add_argument("--out", required=True, help="PATH.pt or PATH.png")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_sample)

    p = sub.add_parser(
        "reproduce",
        help="rerun a paper's experiment (dnf-spiral: paper 000, figure 2; "
        "spread-dimension: paper 003, figures 3-5; nif-digits: paper 001, tables 2 and figure 3 on 8x8 digits; "
        "pixel-rejection: paper 002, table 1 and figure 4 on squares with clutter; "
        "chart-flows: paper 004's toy figure, RealNVP vs chart flows on circles, a knot, a sphere with holes)",
    )
    p.add_argument("experiment", choices=list(reproduce.MODULES))
    p.add_argument("--quick", action="store_true", help="short training (under 5 minutes on 2 CPU cores)")
    p.add_argument("--out", default=None, help="output folder (default: ./EXPERIMENT)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seeds", default=None, metavar="LIST",
                   help="several seeds, e.g. 0,1,2: each in OUT/seed<N>/, mean ± std in OUT/summary.json")
    p.add_argument("--device", default=None)
    p.set_defaults(func=_reproduce)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, OSError, RuntimeError) as exc:  # OSError: --out a file, unwritable, a folder as checkpoint
        if args.command in ("bench", "info"):
            raise
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"mfkernels {args.command}: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())

"""The `mfkernels` command line (also `python -m mfkernels`): `info` and `bench`."""

from __future__ import annotations

import argparse
import json
import sys


def _info(args) -> int:
    from . import info

    report = info.collect()
    print(json.dumps(report, indent=2) if args.json else info.format_report(report))
    return 0


def _bench(args) -> int:
    from . import bench

    try:
        report = bench.run(ops=args.ops, device=args.device, dtype=args.dtype, quick=args.quick,
                           seed=args.seed)
    except (KeyError, ValueError) as exc:
        print(f"mfkernels bench: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return 2
    print(bench.format_table(report))
    if args.flows:
        from . import bench_flows

        report["flow_steps"] = bench_flows.run(device=args.device, steps_per_epoch=5 if args.quick else 20)
        print("\n" + bench_flows.format_table(report["flow_steps"]))
    if args.json:
        bench.write_json(report, args.json)
        print(f"\nwrote {args.json}")
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
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    p.set_defaults(func=_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())

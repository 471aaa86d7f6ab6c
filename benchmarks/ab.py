"""A/B test two settings of train_throughput.py, run alternately in fresh processes.

    python benchmarks/ab.py --model dcgan --batch 64 --rounds 6 \
        --b-arg=--no-cpu-defaults [--a-env MALLOC_ARENA_MAX=16] [--steps 10]

Each round runs A then B (B then A on odd rounds) back to back; the report gives each side's
ms/step per round, the medians and the median of the per-round ratios B / A. Use it to check
that a knob helps on a machine whose load drifts (shared CPUs): the per-round ratio cancels
most of the drift that a comparison of two separate series would not.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from compare import run_one  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="dcgan")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--rounds", type=int, default=5)
    for side in "ab":
        p.add_argument(f"--{side}-arg", action="append", default=[], help="extra argument")
        p.add_argument(f"--{side}-env", action="append", default=[], help="KEY=VALUE")
    p.add_argument("--timeout", type=float, default=900)
    args = p.parse_args(argv)

    base = [sys.executable, os.path.join(HERE, "train_throughput.py"), "--model", args.model]
    base += ["--batch", str(args.batch), "--steps", str(args.steps), "--warmup", str(args.warmup)]
    sides = {
        "A": (base + args.a_arg, dict(kv.split("=", 1) for kv in args.a_env)),
        "B": (base + args.b_arg, dict(kv.split("=", 1) for kv in args.b_env)),
    }
    ms = {"A": [], "B": []}
    ratios = []
    for r in range(args.rounds):
        order = ["A", "B"] if r % 2 == 0 else ["B", "A"]
        got = {}
        for side in order:
            cmd, env = sides[side]
            rec = run_one(cmd, args.timeout, env={**os.environ, **env})
            if "ms_per_step" not in rec:
                sys.exit(f"{side} failed: {rec.get('error')}")
            got[side] = rec["ms_per_step"]
            ms[side].append(rec["ms_per_step"])
        ratios.append(got["B"] / got["A"])
        print(f"round {r}: A {got['A']:8.2f} ms  B {got['B']:8.2f} ms  B/A {ratios[-1]:.3f}")
    summary = {
        "model": args.model,
        "batch": args.batch,
        "a": {"args": args.a_arg, "env": args.a_env, "ms": ms["A"]},
        "b": {"args": args.b_arg, "env": args.b_env, "ms": ms["B"]},
        "median_ms_a": statistics.median(ms["A"]),
        "median_ms_b": statistics.median(ms["B"]),
        "median_ratio_b_over_a": statistics.median(ratios),
        "load_avg": os.getloadavg(),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()

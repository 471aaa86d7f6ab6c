"""A/B test two settings of train_throughput.py, run alternately in fresh processes.

Run from the repository root:

    python benchmarks/ab.py --model=dcgan --batch_size=64 --rounds=6 \\
        --b_arg=--no_cpu_defaults [--a_env=MALLOC_ARENA_MAX=16] [--steps=10] [--warmup=3]

`--a_arg`/`--b_arg` are comma-separated lists of extra train_throughput.py flags for side A/B
(e.g. `--b_arg=--conv_backend=onednn,--log_norms`), `--a_env`/`--b_env` comma-separated
KEY=VALUE settings added to that side's environment (which is otherwise this process's as it
was launched, before the CPU defaults).

Each round runs A then B (B then A on odd rounds) back to back; the report gives each side's
ms/step per round, the medians and the median of the per-round ratios B / A (one JSON line at
the end). Use it to check that a knob helps on a machine whose load drifts (shared CPUs): the
per-round ratio cancels most of the drift that a comparison of two separate series would not.
"""

from __future__ import annotations

import json
import os
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from compare import LAUNCH_ENV, run_one  # noqa: E402  (benchmarks/ on sys.path; puts the repo there)

from genimg import cli  # noqa: E402


def define_flags():
    cli.define_string("model", "dcgan", "train_throughput.py --model.")
    cli.batch_size_flag(64, "Images per step.")
    cli.define_integer("steps", 10, "Timed steps per run.", lower_bound=1)
    cli.define_integer("warmup", 3, "Untimed steps before the timed ones.", lower_bound=0)
    cli.define_integer("rounds", 5, "Alternating rounds.", lower_bound=1)
    for side in "ab":
        cli.define_list(
            f"{side}_arg", [], f"Extra train_throughput.py flags of side {side.upper()}."
        )
        cli.define_list(
            f"{side}_env", [], f"KEY=VALUE environment settings of side {side.upper()}."
        )
    cli.define_float("timeout", 900, "Seconds per subprocess.")


def _env(items: list[str], flag: str) -> dict:
    bad = [kv for kv in items if "=" not in kv or not kv.split("=", 1)[0]]
    if bad:
        cli.fail(f"--{flag}: expected KEY=VALUE, got {', '.join(bad)}")
    return dict(kv.split("=", 1) for kv in items)


def main(args):
    base = [sys.executable, os.path.join(HERE, "train_throughput.py"), f"--model={args.model}"]
    base += [f"--batch_size={args.batch_size}", f"--steps={args.steps}"]
    base += [f"--warmup={args.warmup}"]
    sides = {
        "A": (base + args.a_arg, {**LAUNCH_ENV, **_env(args.a_env, "a_env")}),
        "B": (base + args.b_arg, {**LAUNCH_ENV, **_env(args.b_env, "b_env")}),
    }
    ms = {"A": [], "B": []}
    ratios = []
    for r in range(args.rounds):
        order = ["A", "B"] if r % 2 == 0 else ["B", "A"]
        got = {}
        for side in order:
            cmd, env = sides[side]
            rec = run_one(cmd, args.timeout, env=env)
            if "ms_per_step" not in rec:
                cli.fail(f"side {side} failed: {rec.get('error')}")
            got[side] = rec["ms_per_step"]
            ms[side].append(rec["ms_per_step"])
        ratios.append(got["B"] / got["A"])
        print(f"round {r}: A {got['A']:8.2f} ms  B {got['B']:8.2f} ms  B/A {ratios[-1]:.3f}")
    summary = {
        "model": args.model,
        "batch": args.batch_size,
        "a": {"args": args.a_arg, "env": args.a_env, "ms": ms["A"]},
        "b": {"args": args.b_arg, "env": args.b_env, "ms": ms["B"]},
        "median_ms_a": statistics.median(ms["A"]),
        "median_ms_b": statistics.median(ms["B"]),
        "median_ratio_b_over_a": statistics.median(ratios),
        "load_avg": os.getloadavg(),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    cli.run(main, __doc__, define_flags)

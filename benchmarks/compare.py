"""genimg (JAX) vs the PyTorch peer: training throughput, back to back, with ratios.

Run from the repository root:

    python benchmarks/compare.py [--models=dcgan,mlpgan,convvae] [--batch_sizes=64,256]
        [--rounds=2] [--steps=S] [--warmup=W] [--threads=N] [--torch_python=PYTHON]
        [--torch_peer=benchmarks/torch_peer.py] [--jax_arg=--conv_backend=onednn,...]

For every (model, batch size) it runs `benchmarks/train_throughput.py` (under this python) and
the torch peer `benchmarks/torch_peer.py` (under `--torch_python`) as separate subprocesses,
alternating which goes first from round to round so that slow drift in machine load hits both
sides alike. It prints a table of img/s (median over rounds) and the ratio jax / torch (median
of the per-round ratios: each ratio compares two runs made back to back), and writes every raw
record to `benchmarks/results/<host>-<UTC date and time>.json` (or `--out`).

`--jax_arg` is a comma-separated list of extra train_throughput.py flags, e.g.
`--jax_arg=--conv_backend=xla` (the JAX side runs the configs' default, `conv_backend=auto`,
unless told otherwise) or `--jax_arg=--no_cpu_defaults,--log_norms`. Both sides
inherit this process's environment as it was at start-up (before the CPU defaults), so each
applies its own settings.

If torch is not installed the JAX side still runs and the table has no ratios. Install the CPU
build with `pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu` (a
plain `pip install torch` pulls a multi-GB CUDA build), e.g. in a venv of its own that the
peer runs under: it needs torch only, not genimg.
"""

from __future__ import annotations

import datetime
import importlib.util
import json
import os
import platform
import socket
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)

from genimg import cli  # noqa: E402  (repo root on sys.path first)

DEFAULT_PEER = os.path.join(HERE, "torch_peer.py")
# The environment the children get: this process's as it was launched, before cli.run's CPU
# defaults append to XLA_FLAGS (a child asked for --no_cpu_defaults must not inherit them).
LAUNCH_ENV = dict(os.environ)
MODELS = ("dcgan", "mlpgan", "convvae")
# Timed and warm-up steps per model at batch 64 (scaled by 64 / batch for other batches), so
# that each measurement lasts a few seconds on a 2-core CPU.
STEPS = {"dcgan": 20, "mlpgan": 200, "convvae": 100}
WARMUP = {"dcgan": 5, "mlpgan": 20, "convvae": 10}


def run_one(cmd: list[str], timeout: float, env: dict | None = None) -> dict:
    """Run a benchmark subprocess (in `env`, default `LAUNCH_ENV`); returns its last stdout
    line as JSON (or an error record)."""
    env = LAUNCH_ENV if env is None else env
    try:
        out = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, check=True, env=env
        )
        return json.loads(out.stdout.strip().splitlines()[-1])
    except subprocess.CalledProcessError as e:
        return {"error": f"exit {e.returncode}: {e.stderr.strip()[-2000:]}"}
    except (subprocess.TimeoutExpired, json.JSONDecodeError, IndexError) as e:
        return {"error": f"{type(e).__name__}: {e}"}


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def define_flags():
    cli.define_list("models", list(MODELS), f"Models to run, of {', '.join(MODELS)}.")
    cli.define_list("batch_sizes", ["64", "256"], "Batch sizes to run.")
    cli.define_integer("rounds", 2, "Alternating rounds per (model, batch size).", lower_bound=1)
    cli.define_integer(
        "steps", None, "Timed steps per run (default: per model, see STEPS).", lower_bound=1
    )
    cli.define_integer(
        "warmup", None, "Untimed steps per run (default: per model, see WARMUP).", lower_bound=0
    )
    cli.define_string("torch_peer", DEFAULT_PEER, "Path to the PyTorch peer script.")
    cli.define_string(
        "torch_python",
        sys.executable,
        "Python that runs the peer (e.g. a venv holding the CPU build of torch).",
    )
    cli.define_integer(
        "threads", None, "Threads for both sides (default: all CPUs).", lower_bound=1
    )
    cli.define_list(
        "jax_arg", [], "Extra train_throughput.py flags, e.g. --jax_arg=--conv_backend=onednn."
    )
    cli.define_float("timeout", 900, "Seconds per subprocess.")
    cli.define_string("out", None, "Results JSON path (default: benchmarks/results/<host>-...).")


def main(args):
    unknown = [m for m in args.models if m not in MODELS]
    if unknown:
        cli.fail(f"--models: unknown {', '.join(unknown)}; expected some of {', '.join(MODELS)}")
    try:
        batch_sizes = [int(b) for b in args.batch_sizes]
    except ValueError:
        cli.fail(f"--batch_sizes={','.join(args.batch_sizes)}: expected integers like 64,256")
    if not args.models or not batch_sizes or min(batch_sizes) < 1:
        cli.fail("--models and --batch_sizes need at least one value each, batch sizes >= 1")

    if args.torch_python == sys.executable:
        have_torch = importlib.util.find_spec("torch") is not None
    else:
        probe = [args.torch_python, "-c", "import torch"]
        try:
            have_torch = subprocess.run(probe, capture_output=True).returncode == 0
        except OSError as err:
            cli.fail(f"--torch_python={args.torch_python}: cannot run it ({err})")
    peer = os.path.abspath(args.torch_peer)
    if not have_torch:
        print(
            f"torch is not importable by {args.torch_python}, so only the JAX side runs. For "
            "ratios install the CPU build:\n    pip install torch==2.13.0 "
            "--index-url https://download.pytorch.org/whl/cpu",
            file=sys.stderr,
        )
    elif not os.path.exists(peer):
        cli.fail(f"torch peer not found at {peer}; pass --torch_peer=PATH")

    records = []
    for model in args.models:
        for batch in batch_sizes:
            steps = args.steps or max(3, round(STEPS[model] * 64 / batch))
            warmup = args.warmup
            if warmup is None:
                warmup = max(2, round(WARMUP[model] * 64 / batch))
            common = [f"--model={model}", f"--batch_size={batch}", f"--steps={steps}"]
            common += [f"--warmup={warmup}"]
            common += [f"--threads={args.threads}"] if args.threads else []
            jax_cmd = [sys.executable, os.path.join(HERE, "train_throughput.py"), *common]
            jax_cmd += args.jax_arg
            torch_cmd = [args.torch_python, peer, *common]
            for r in range(args.rounds):
                sides = [("jax", jax_cmd)] + ([("torch", torch_cmd)] if have_torch else [])
                if r % 2:
                    sides.reverse()
                for side, cmd in sides:
                    rec = run_one(cmd, args.timeout)
                    rec.update(side=side, round=r, model=model, batch=batch)
                    records.append(rec)
                    print(
                        f"  {model:8s} b{batch:<4d} round {r} {side:5s} "
                        + (
                            f"{rec['img_per_s']:9.1f} img/s" if "img_per_s" in rec else rec["error"]
                        ),
                        file=sys.stderr,
                        flush=True,
                    )

    summary = summarize(records, args.models, batch_sizes, args.rounds)
    print(format_table(summary))
    now = datetime.datetime.now(datetime.UTC)
    path = args.out or os.path.join(
        HERE, "results", f"{socket.gethostname()}-{now:%Y%m%d-%H%M%S}.json"
    )
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(
            {
                "date": now.isoformat(timespec="seconds"),
                "host": socket.gethostname(),
                "cpu": cpu_model(),
                "cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
                "load_avg": os.getloadavg() if hasattr(os, "getloadavg") else None,
                "python": sys.version.split()[0],
                "jax_args": args.jax_arg,
                "threads": args.threads,
                "torch_python": args.torch_python,
                "summary": summary,
                "records": records,
            },
            f,
            indent=1,
        )
    print(f"wrote {path}", file=sys.stderr)


def summarize(records, models, batches, rounds) -> list[dict]:
    """Per (model, batch): median img/s of each side and the median per-round ratio."""
    rows = []
    for model in models:
        for batch in batches:
            by = {}
            for rec in records:
                if rec["model"] == model and rec["batch"] == batch and "img_per_s" in rec:
                    by.setdefault(rec["side"], {})[rec["round"]] = rec["img_per_s"]
            jax_s, torch_s = by.get("jax", {}), by.get("torch", {})
            ratios = [jax_s[r] / torch_s[r] for r in range(rounds) if r in jax_s and r in torch_s]
            med = lambda d: statistics.median(d.values()) if d else None
            rows.append(
                {
                    "model": model,
                    "batch": batch,
                    "jax_img_per_s": med(jax_s),
                    "torch_img_per_s": med(torch_s),
                    "ratio": statistics.median(ratios) if ratios else None,
                    "ratios": [round(x, 3) for x in ratios],
                    "jax_runs": [jax_s[r] for r in sorted(jax_s)],
                    "torch_runs": [torch_s[r] for r in sorted(torch_s)],
                }
            )
    return rows


def format_table(rows) -> str:
    fmt = lambda v, spec: "n/a" if v is None else format(v, spec)
    lines = [
        f"{'model':8s} {'batch':>5s} {'jax img/s':>10s} {'torch img/s':>12s} {'jax/torch':>9s}"
        "  per-round ratios"
    ]
    for r in rows:
        lines.append(
            f"{r['model']:8s} {r['batch']:5d} {fmt(r['jax_img_per_s'], '10.1f')} "
            f"{fmt(r['torch_img_per_s'], '12.1f')} {fmt(r['ratio'], '8.2f')}x  "
            + ", ".join(f"{x:.2f}" for x in r["ratios"])
        )
    return "\n".join(lines)


if __name__ == "__main__":
    cli.run(main, __doc__, define_flags)

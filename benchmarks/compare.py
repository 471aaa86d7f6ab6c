"""genimg (JAX) vs the PyTorch peer: training throughput, back to back, with ratios.

Run from the repository root:

    python benchmarks/compare.py [--models dcgan mlpgan convvae] [--batches 64 256]
        [--rounds 2] [--threads N] [--torch-peer ../shared/bench/torch_peer.py]
        [--torch-python PYTHON] [--jax-arg=--no-cpu-defaults]

For every (model, batch) it runs `benchmarks/train_throughput.py` and the torch peer as
separate subprocesses (fresh interpreters, same python), alternating which goes first from
round to round so that slow drift in machine load hits both sides alike. It prints a table of
img/s (median over rounds) and the ratio jax / torch (median of the per-round ratios: each
ratio compares two runs made back to back), and writes every raw record to
`benchmarks/results/<host>-<UTC date and time>.json`.

If torch is not installed the JAX side still runs and the table has no ratios. Install the CPU
build with `pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu` (a
plain `pip install torch` pulls a multi-GB CUDA build).
"""

from __future__ import annotations

import argparse
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
DEFAULT_PEER = os.path.join(REPO, "..", "shared", "bench", "torch_peer.py")
# Timed and warm-up steps per model at batch 64 (scaled by 64 / batch for other batches), so
# that each measurement lasts a few seconds on a 2-core CPU.
STEPS = {"dcgan": 20, "mlpgan": 200, "convvae": 100}
WARMUP = {"dcgan": 5, "mlpgan": 20, "convvae": 10}


def run_one(cmd: list[str], timeout: float, env: dict | None = None) -> dict:
    """Run a benchmark subprocess; returns its last stdout line as JSON (or an error record)."""
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


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["dcgan", "mlpgan", "convvae"])
    p.add_argument("--batches", nargs="+", type=int, default=[64, 256])
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--steps", type=int, default=None, help="override the per-model step count")
    p.add_argument("--torch-peer", default=DEFAULT_PEER, help="path to torch_peer.py")
    p.add_argument(
        "--torch-python",
        default=sys.executable,
        help="python that runs the peer (e.g. a venv holding the CPU build of torch)",
    )
    p.add_argument(
        "--threads", type=int, default=None, help="threads for both sides (default: all CPUs)"
    )
    p.add_argument(
        "--jax-arg",
        action="append",
        default=[],
        help="extra train_throughput.py argument (repeatable): --jax-arg=--no-cpu-defaults",
    )
    p.add_argument("--timeout", type=float, default=900, help="seconds per subprocess")
    p.add_argument("--out", default=None, help="results JSON path (default: results/<host>-...)")
    args = p.parse_args(argv)

    if args.torch_python == sys.executable:
        have_torch = importlib.util.find_spec("torch") is not None
    else:
        probe = [args.torch_python, "-c", "import torch"]
        have_torch = subprocess.run(probe, capture_output=True).returncode == 0
    peer = os.path.abspath(args.torch_peer)
    if not have_torch:
        print(
            "torch is not installed, so only the JAX side runs. For ratios install the CPU build:"
            "\n    pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu",
            file=sys.stderr,
        )
    elif not os.path.exists(peer):
        sys.exit(f"torch peer not found at {peer}; pass --torch-peer PATH")

    records = []
    for model in args.models:
        for batch in args.batches:
            steps = args.steps or max(3, round(STEPS[model] * 64 / batch))
            warmup = max(2, round(WARMUP[model] * 64 / batch))
            common = ["--model", model, "--batch", str(batch), "--steps", str(steps)]
            common += ["--warmup", str(warmup)]
            common += ["--threads", str(args.threads)] if args.threads else []
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

    summary = summarize(records, args.models, args.batches, args.rounds)
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
    main()

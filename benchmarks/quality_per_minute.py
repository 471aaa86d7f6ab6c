"""Sample quality per CPU-minute: the DCGAN experiment (default or `--preset`) against the
PyTorch peer's DCGAN, each trained on the same Fashion-MNIST images for the same wall-clock
budget.

Run from the repository root (the domain classifier comes from
`python -m experiments.classifier --workdir=runs/classifier`):

    python benchmarks/quality_per_minute.py --extractor=domain:runs/classifier \\
        [--minutes=2,5,10,20] [--sides=genimg,torch] [--torch_python=PY] \\
        [--preset=classic] [--set=optim.g_lr=2e-4,model.ema_decay=0.99] [--name=default] \\
        [--out=runs/quality_per_minute] [--num_samples=10000] [--plot=docs/PNG]

What is timed. Each side trains once, for the largest budget of `--minutes`, and keeps its
generator at the first step past every mark; the clock starts before the training images are
read, so it includes data loading and (for genimg) compilation: what a user waits for.
- genimg: `experiments.dcgan.get_config(--preset)` with the `--set` overrides, run in this
  process by the experiment's own loop (`train_from_config`: logging, sample grids and
  checkpoints at their default intervals) with `train.max_minutes` as the budget. At each mark
  the whole state is copied to the host (a few ms); the samples are drawn after training, from
  the EMA generator as `python -m genimg.sample` draws them.
- torch: `benchmarks/torch_peer.py --train_minutes=...` under `--torch_python` (the peer's
  DCGAN and iteration, same batch size, the images shuffled per epoch); its clock pauses while
  it writes samples, with batch norm both in eval mode (running statistics) and in train mode
  (each sampled batch's statistics); the table keeps both.
The two sides run one after the other, never at the same time.

Scoring: `--num_samples` samples per mark against the 10k test images, with
`genimg.metrics.sample_quality` (FID, KID, precision/recall/density/coverage) in the features
of `--extractor`. Writes `<out>/<name>/results.json` (one record per side and mark), prints a
table, and with `--plot` draws domain-FID against minutes for every row (needs matplotlib;
`--replot=A/results.json,B/results.json --plot=PNG` only draws, from earlier results).
`--out/<name>` must not hold an earlier run's genimg workdir: a resumed run would not be timed
from a cold start.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from loop_overhead import apply_sets, experiment_config  # noqa: E402  (benchmarks/, this file's folder)

from genimg import cli  # noqa: E402  (repo root on sys.path first)

SIDES = ("genimg", "torch")
METRICS = ("fid", "kid", "pr")
KEYS = ("fid", "kid", "precision", "recall", "density", "coverage")


def parse_marks(items) -> list[float]:
    try:
        marks = sorted({float(m) for m in items})
    except ValueError:
        cli.fail(f"--minutes={','.join(items)}: expected numbers of minutes, e.g. 2,5,10,20")
    if not marks or marks[0] <= 0:
        cli.fail("--minutes needs at least one budget, every one > 0")
    return marks


class Snapshots:
    """A training-loop callback: at the first step past each mark (minutes since ``clock``),
    the host copy of the state and the step."""

    def __init__(self, marks: list[float], clock: float):
        self.marks, self.clock = list(marks), clock
        self.taken: list[dict] = []

    def __call__(self, ctx) -> None:
        import jax  # noqa: PLC0415

        elapsed = time.perf_counter() - self.clock
        if not self.marks or elapsed < 60.0 * self.marks[0]:
            return
        self.taken.append({"minutes": self.marks.pop(0), "train_s": round(elapsed, 1),
                           "step": int(ctx.step), "state": jax.device_get(ctx.state)})  # fmt: skip


def train_genimg(args, marks, folder: pathlib.Path) -> list[dict]:
    """The DCGAN experiment (``--preset``, ``--set``) for ``max(marks)`` minutes; its samples
    at every mark."""
    from genimg import images as images_lib  # noqa: PLC0415
    from genimg import synthesis  # noqa: PLC0415
    from genimg.train import checkpoint as ckpt  # noqa: PLC0415
    from genimg.train.loop import Callback, train_from_config  # noqa: PLC0415

    workdir = folder / "genimg_run"
    if ckpt.finished_steps(workdir):
        cli.fail(f"{workdir} holds an earlier run; give another --name or --out (cold start)")
    config = apply_sets(experiment_config(f"dcgan:{args.preset}"), args.set)
    config.train.steps = 10**9
    config.train.max_minutes = max(marks)
    config.train.progress = False
    snapshots = Snapshots(marks, time.perf_counter())
    train_from_config(config, workdir, [Callback(1, snapshots, at_end=True)])
    _, family, _, _ = ckpt.restore_run(workdir)
    records = []
    for snap in snapshots.taken:
        images, _ = synthesis.generate(family, snap.pop("state"), args.num_samples, seed=0,
                                       batch_size=500, progress=False)  # fmt: skip
        path = folder / f"genimg_{snap['minutes']:g}min.npz"
        images_lib.write_npz(str(path), images, None)
        batch = config.train.batch_size
        records.append({"impl": "genimg", "sampling": "ema" if config.model.ema_decay else "raw",
                        **snap, "images_seen": snap["step"] * batch, "file": str(path),
                        "preset": args.preset, "set": list(args.set)})  # fmt: skip
    return records


def train_torch(args, marks, folder: pathlib.Path) -> list[dict]:
    """The peer's DCGAN for ``max(marks)`` minutes under ``--torch_python``."""
    import numpy as np  # noqa: PLC0415

    from genimg import data as data_lib  # noqa: PLC0415

    images = folder / "train_images.npy"
    np.save(images, data_lib.load("fashion_mnist", "train").images)
    cmd = [args.torch_python, os.path.join(HERE, "torch_peer.py"), "--model=dcgan",
           f"--train_minutes={','.join(f'{m:g}' for m in marks)}", f"--data={images}",
           f"--out={folder}", f"--num_samples={args.num_samples}"]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True)
    images.unlink()
    if out.returncode:
        last = (out.stderr.strip().splitlines() or ["no output"])[-1]
        cli.fail(f"torch peer under {args.torch_python} failed (exit {out.returncode}): {last}")
    records = []
    for line in out.stdout.splitlines():
        peer = json.loads(line)
        peer["step"] = peer.pop("steps")
        for mode, path in peer.pop("files").items():
            records.append({**peer, "sampling": f"batch norm {mode}", "file": path})
    return records


def score(records: list[dict], spec: str, num_samples: int) -> None:
    """Adds the sample-quality numbers of each record's file to it."""
    import numpy as np  # noqa: PLC0415

    from genimg.metrics import extractors  # noqa: PLC0415
    from genimg.metrics.sample_quality import sample_quality  # noqa: PLC0415

    extractor = extractors.make_extractor(spec)  # loaded once for every record
    for record in records:
        with np.load(record["file"]) as f:
            fakes = f["images"][:num_samples]
        numbers = sample_quality(fakes, "fashion_mnist", "test", extractor, METRICS,
                                 progress=False)  # fmt: skip
        record.update({k: round(float(numbers[k]), 4) for k in KEYS})
        record["extractor"] = numbers["extractor"]


def table(records: list[dict]) -> str:
    head = f"{'side':8s} {'sampling':18s} {'min':>5s} {'steps':>6s}" + "".join(
        f" {k:>9s}" for k in KEYS
    )
    lines = [head]
    for r in sorted(records, key=lambda r: (r["impl"], r["sampling"], r["minutes"])):
        lines.append(f"{r['impl']:8s} {r['sampling']:18s} {r['minutes']:5g} {r['step']:6d}"
                     + "".join(f" {r[k]:9.4f}" for k in KEYS))  # fmt: skip
    return "\n".join(lines)


def plot(records: list[dict], path: str) -> None:
    """Domain-FID (log scale) against training minutes, one line per side and sampling (or per
    record's ``label``, where one is given)."""
    import matplotlib  # noqa: PLC0415
    import matplotlib.ticker  # noqa: PLC0415

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt  # noqa: PLC0415

    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    lines: dict[str, list] = {}
    for r in sorted(records, key=lambda r: r["minutes"]):
        preset = f":{r['preset']}" if r.get("preset") else ""
        label = r.get("label") or (
            f"{r['impl']}{preset} ({r['sampling']})" + "".join(f" {s}" for s in r.get("set", []))
        )
        lines.setdefault(label, []).append((r["minutes"], r["fid"]))
    for label, points in sorted(lines.items()):
        xs, ys = zip(*points, strict=True)
        ax.plot(xs, ys, marker="o", label=label)
    ax.set_xlabel("training minutes (wall clock, data loading and compile included)")
    ax.set_ylabel("domain-FID against the test set (lower is better)")
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xticks(sorted({r["minutes"] for r in records}))
    ax.set_title("DCGAN on Fashion-MNIST, 2-core CPU", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def define_flags():
    cli.define_string("extractor", None, "Feature network, e.g. domain:runs/classifier.")
    cli.define_list("minutes", ["2", "5", "10", "20"], "Wall-clock marks, in minutes.")
    cli.define_list("sides", list(SIDES), f"Which to train, of {', '.join(SIDES)}.")
    cli.define_string("torch_python", sys.executable, "Python that runs the torch peer.")
    cli.define_string("preset", "", "Presets of experiments/dcgan.py for genimg, e.g. classic.")
    cli.define_list("set", [], "genimg config overrides, e.g. optim.g_lr=2e-4,model.ema_decay=0.9.")
    cli.define_string("name", "default", "Name of this comparison (a folder under --out).")
    cli.define_string("out", "runs/quality_per_minute", "Folder for samples and results.")
    cli.define_integer("num_samples", 10000, "Samples scored per mark.", lower_bound=2)
    cli.define_string("plot", None, "Also draw FID against minutes into this PNG.")
    cli.define_list("replot", [], "Only draw --plot from these results.json files.")


def main(args):
    if args.replot:
        if not args.plot:
            cli.fail("--replot needs --plot=PNG")
        records = [r for path in args.replot for r in json.loads(pathlib.Path(path).read_text())]
        plot(records, args.plot)
        return
    if not args.extractor:
        cli.fail("--extractor is required, e.g. --extractor=domain:runs/classifier")
    marks = parse_marks(args.minutes)
    unknown = [s for s in args.sides if s not in SIDES]
    if unknown or not args.sides:
        cli.fail(f"--sides: expected some of {', '.join(SIDES)}, got {','.join(args.sides)}")
    folder = pathlib.Path(args.out) / args.name
    folder.mkdir(parents=True, exist_ok=True)
    records = []
    for side in args.sides:
        train = train_genimg if side == "genimg" else train_torch
        records += train(args, marks, folder)
    score(records, args.extractor, args.num_samples)
    load = [round(x, 2) for x in os.getloadavg()]
    for record in records:
        record.update(load_avg_at_end=load, cpu=os.cpu_count())
    (folder / "results.json").write_text(json.dumps(records, indent=1) + "\n")
    print(table(records))
    if args.plot:
        plot(records, args.plot)


if __name__ == "__main__":
    cli.run(main, __doc__, define_flags)

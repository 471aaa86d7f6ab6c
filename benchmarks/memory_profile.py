"""Where the host memory of an experiment's default run goes: resident set after each phase.

Run from the repository root (prints a table on stderr and one JSON line on stdout):

    python benchmarks/memory_profile.py [--experiment=dcgan] [--steps=60] [--mark_every=10]

It runs what `python -m experiments.<name>` runs (`train_from_config` on the default config,
its data source, progress bar, metrics.jsonl + TensorBoard, sample grids and Orbax checkpoints;
`train.steps=--steps`, and `train.sample_every` / `train.checkpoint_every` set to half of it so
that one of each falls inside) in a temporary workdir, and reads this process's `VmRSS`
(resident now) and `VmHWM` (peak so far) from /proc/self/status after: the interpreter and jax's
backend, the experiment's imports, the data set load, then from a loop callback every
`--mark_every` steps (the first mark's peak holds the state init, the step's compilation and
the first steps), and at the end. The CPU defaults (`genimg.platform`) are applied first, as
the experiment's entry point does; their malloc settings keep freed heap in the process, so
the resident size only grows and each phase's increase is what it added.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from loop_overhead import experiment_config  # noqa: E402  (benchmarks/, this file's folder)

from genimg import cli, platform  # noqa: E402  (repo root on sys.path first)


def status_mb() -> tuple[int, int]:
    """(VmRSS, VmHWM) of this process in MB."""
    fields = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0]) // 1024
    return fields["VmRSS"], fields["VmHWM"]


def run(args) -> dict:
    marks = []

    def mark(name):
        rss, hwm = status_mb()
        marks.append({"phase": name, "rss_mb": rss, "peak_mb": hwm})

    import jax

    jax.devices()
    mark("python + jax backend")
    config = experiment_config(args.experiment)
    from genimg import data as data_lib
    from genimg.train import loop

    mark("imports (experiment, genimg)")
    config.train.update(
        steps=args.steps,
        sample_every=max(1, args.steps // 2),
        checkpoint_every=max(1, args.steps // 2),
        progress=False,
    )
    loaded = data_lib.load(config.data.source, config.data.split, config.data.image_size or None)
    mark(f"data set loaded ({loaded.images.nbytes // 2**20} MB of uint8 images)")
    del loaded  # train_from_config loads it again; the page cache makes that cheap

    def at_step(ctx):
        mark(f"step {ctx.step}")

    with tempfile.TemporaryDirectory() as workdir:
        loop.train_from_config(config, workdir, [loop.Callback(args.mark_every, at_step)])
    mark("end (after the final checkpoint)")
    width = max(len(m["phase"]) for m in marks)
    print(f"{'phase':{width}s} {'RSS MB':>7s} {'peak MB':>8s}", file=sys.stderr)
    for m in marks:
        print(f"{m['phase']:{width}s} {m['rss_mb']:7d} {m['peak_mb']:8d}", file=sys.stderr)
    return {
        "experiment": args.experiment,
        "steps": args.steps,
        "marks": marks,
        "peak_rss_mb": marks[-1]["peak_mb"],
        "torch_imported": "torch" in sys.modules,
        "load_avg": [round(x, 2) for x in os.getloadavg()],
        "cpu_defaults": args.cpu_defaults,
    }


def define_flags():
    cli.define_string("experiment", "dcgan", "Module under experiments/ [:presets].")
    cli.define_integer("steps", 60, "Training steps.", lower_bound=2)
    cli.define_integer("mark_every", 10, "Steps between two readings.", lower_bound=1)


def main(args):
    args.cpu_defaults = platform.configure_cpu_defaults()
    print(json.dumps(run(args)))


if __name__ == "__main__":
    cli.run(main, __doc__, define_flags)

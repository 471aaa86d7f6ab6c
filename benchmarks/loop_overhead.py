"""The full training loop against the bare train step: is the step, not the host, the bottleneck?

Run from the repository root (prints one JSON line):

    python benchmarks/loop_overhead.py [--experiment=dcgan] [--steps=550] [--bare_steps=60]
        [--data=synthetic|real] [--set=train.log_every=10,train.sample_every=0] [--top=N]

1. Loop: `genimg.train.loop.train` with the experiment's default config
   (`experiments.<name>.get_config()`: logging, progress bar, metrics.jsonl + TensorBoard,
   periodic sample grids and Orbax checkpoints at their default intervals; no periodic
   evaluation callbacks) runs `--steps` steps in a temporary workdir. The rate is taken over every
   logged interval after the first (which holds the compile): it includes the periodic
   checkpoint and sample grid that fall inside (at step 500 for the DCGAN defaults), but not
   the one-off final checkpoint, which comes after the last logged interval.
2. Bare: the same family's train step, `jax.jit` with the state donated, on one fixed
   device-resident batch, called back to back.

`loop_over_bare` = loop steps/s / bare steps/s. The loop runs under cProfile; the record's
`host_s` block says where the host's wall time went (seconds; `host_fraction_of_total` divides
by the whole `train` call, compile included): `wait_device` is time blocked in
`jax.device_get` for the metrics (the host idles while queued steps finish), the other pieces
are host work during which the device may run dry.
`--data=synthetic` (default) uses random uint8 images of the experiment's data shape
(60000 x 28 x 28 x 1 for Fashion-MNIST), `real` loads `config.data.source`. `--set` takes
comma-separated `section.key=value` overrides of the config (`--top=N` also prints the
cProfile top N to stderr).
"""

from __future__ import annotations

import cProfile
import importlib
import json
import os
import pstats
import resource
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from train_throughput import time_steps  # noqa: E402  (benchmarks/, this file's folder, is on sys.path)

from genimg import cli, platform  # noqa: E402  (repo root on sys.path first)

# Host-side pieces of the loop, by (file suffix, function name) in the cProfile table.
PIECES = {
    "wait_device": ("jax/_src/api.py", "device_get"),
    "checkpoint": ("genimg/train/checkpoint.py", "save"),
    "samples": ("genimg/train/loop.py", "save_samples"),
    "data_batch": ("genimg/data/pipeline.py", "batch"),
    "log_write": ("genimg/train/loop.py", "scalars"),
}


def experiment_config(spec: str):
    """The config of ``--experiment=name[:presets]`` (e.g. ``dcgan:classic``), as
    ``python -m experiments.name --config=experiments/name.py:presets`` builds it."""
    name, _, presets = spec.partition(":")
    try:
        module = importlib.import_module(f"experiments.{name}")
    except ModuleNotFoundError as err:
        cli.fail(f"--experiment={spec}: {err}")
    try:
        return module.get_config(presets or None)
    except ValueError as err:
        cli.fail(f"--experiment={spec}: {err}")


def _config(args):
    config = apply_sets(experiment_config(args.experiment), args.set)
    config.train.steps = args.steps
    config.train.progress = True
    return config


def apply_sets(config, items):
    """``config`` with the ``--set`` overrides ``section.key=value`` applied (the value
    converted to the key's type); a one-line failure for a key the config lacks."""
    for item in items:
        key, _, value = item.partition("=")
        section, _, name = key.partition(".")
        if not value or section not in config or name not in config[section]:
            cli.fail(f"--set={item}: expected section.key=value with a key of the config")
        kind = type(config[section][name])
        if kind is bool:
            config[section][name] = value.lower() in ("1", "true", "t", "yes")
        else:
            config[section][name] = kind(value)
    return config


def _data(config, args):
    import numpy as np

    from genimg import data as data_lib

    if args.data == "real":
        loaded = data_lib.load(config.data.source, "train")
        return loaded.images, loaded.labels, loaded.num_classes
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (60000, 28, 28, 1), dtype=np.uint8)
    return images, rng.integers(0, 10, 60000).astype(np.int32), 10


def _cumtime(stats: pstats.Stats, suffix: str, name: str) -> float:
    return sum(
        cum
        for (path, _, fn), (_, _, _, cum, _) in stats.stats.items()
        if fn == name and path.replace(os.sep, "/").endswith(suffix)
    )


def run(args) -> dict:
    import jax

    from genimg import data as data_lib
    from genimg.train import loop
    from genimg.train.family import build_family  # the experiment's import registered it

    config = _config(args)
    images, labels, num_classes = _data(config, args)
    family = build_family(config, images.shape[1:], num_classes)
    data = data_lib.TrainData(
        images,
        labels,
        global_batch=config.train.batch_size * family.batch_multiplier,
        seed=0,
        scale=family.data_scale,
    )

    # 1. The loop, profiled.
    with tempfile.TemporaryDirectory() as workdir:
        profiler = cProfile.Profile()
        t0 = time.perf_counter()
        profiler.enable()
        loop.train(config, workdir, family, data, run_info={"data": args.data}, callbacks=())
        profiler.disable()
        total_s = time.perf_counter() - t0
        with open(os.path.join(workdir, "metrics.jsonl")) as f:
            logged = [json.loads(line) for line in f if '"steps_per_s"' in line]
    timed = logged[1:]  # the first interval holds compilation
    if not timed:
        cli.fail("no logged interval after the first: raise --steps or lower train.log_every")
    steps = [b["step"] - a["step"] for a, b in zip(logged, logged[1:], strict=False)]
    loop_s = sum(n / r["steps_per_s"] for n, r in zip(steps, timed, strict=True))
    loop_rate = sum(steps) / loop_s
    stats = pstats.Stats(profiler)
    if args.top:
        stats.stream = sys.stderr
        stats.sort_stats("tottime").print_stats(args.top)
    host = {k: round(_cumtime(stats, *v), 2) for k, v in PIECES.items()}

    # 2. The bare step on one fixed batch.
    step = jax.jit(family.make_train_step(None), donate_argnums=0)
    state, batch, rng = family.init_state(jax.random.key(0)), data.batch(0), jax.random.key(1)
    *_, seconds = time_steps(step, state, batch, rng, warmup=3, steps=args.bare_steps)
    bare_rate = args.bare_steps / seconds

    return {
        "experiment": args.experiment,
        "batch": config.train.batch_size,
        "steps": args.steps,
        "log_every": config.train.log_every,
        "checkpoint_every": config.train.checkpoint_every,
        "sample_every": config.train.sample_every,
        "loop_steps_per_s": round(loop_rate, 3),
        "bare_steps_per_s": round(bare_rate, 3),
        "loop_over_bare": round(loop_rate / bare_rate, 3),
        "timed_steps": sum(steps),
        "total_s": round(total_s, 1),
        "host_s": host,
        "host_fraction_of_total": {k: round(v / total_s, 3) for k, v in host.items()},
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "data": args.data,
        "load_avg": [round(x, 2) for x in os.getloadavg()],
        "cpu_defaults": args.cpu_defaults,
    }


def define_flags():
    cli.define_string("experiment", "dcgan", "Module under experiments/ [:presets].")
    cli.define_integer("steps", 550, "Loop steps (past step 500's saves).", lower_bound=1)
    cli.define_integer("bare_steps", 60, "Timed calls of the bare step.", lower_bound=1)
    cli.define_enum("data", "synthetic", ["synthetic", "real"], "Training images.")
    cli.define_list("set", [], "Config overrides, e.g. train.log_every=10,train.sample_every=0.")
    cli.define_integer("top", 0, "Also print the cProfile top N to stderr.", lower_bound=0)


def main(args):
    # Applied already by cli.run (idempotent): this call only reports what was done.
    args.cpu_defaults = platform.configure_cpu_defaults()
    print(json.dumps(run(args)))


if __name__ == "__main__":
    cli.run(main, __doc__, define_flags)

"""Where the default DCGAN experiment's step time goes: its bare train step with one piece off.

Run from the repository root (prints a table on stderr and one JSON line on stdout):

    python benchmarks/step_breakdown.py [--experiment=dcgan] [--batch_size=64] [--steps=10]
        [--rounds=3] [--variants=default,no_norms,...]

Each variant is the experiment's default config (`experiments.<name>.get_config()`, built with
the family's own builder and train step, as `python -m experiments.<name>` runs it) with one
setting changed:

- default: the config as shipped (for the DCGAN: hinge loss, spectrally normalised D, EMA of
  G at 0.999, gradient/parameter norm metrics, `model.conv_backend="auto"`);
- xla / onednn: `model.conv_backend` forced to XLA's convolutions / oneDNN's;
- subpixel: `model.upsample_impl="subpixel"` (the transposed convolutions' form before
  "native", oneDNN's own, became the CPU default under oneDNN);
- no_norms: `train.log_norms=False`; no_ema: `model.ema_decay=0`; no_sn:
  `model.spectral_norm=False`; bare: all three off (the step benchmarks/compare.py times,
  except for the loss).

All variants are compiled first (jax.jit, state donated, one fixed device-resident batch),
then timed in `--rounds` interleaved rounds of `--steps` steps each, so that the load of a
shared machine hits them alike; the table gives the median ms per step, the JSON line every
round. `sample_grid` is the jitted `family.sample` of the loop's sample grid
(`train.num_samples` images, every `train.sample_every` steps), timed alike.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from loop_overhead import experiment_config  # noqa: E402  (benchmarks/, this file's folder)

from genimg import cli, platform  # noqa: E402  (repo root on sys.path first)

VARIANTS = {
    "default": {},
    "xla": {"model.conv_backend": "xla"},
    "onednn": {"model.conv_backend": "onednn"},
    "subpixel": {"model.upsample_impl": "subpixel"},
    "no_norms": {"train.log_norms": False},
    "no_ema": {"model.ema_decay": 0.0},
    "no_sn": {"model.spectral_norm": False},
    "bare": {"train.log_norms": False, "model.ema_decay": 0.0, "model.spectral_norm": False},
}


def _config(experiment: str, batch: int, overrides: dict):
    config = experiment_config(experiment)
    config.train.batch_size = batch
    for key, value in overrides.items():
        section, _, name = key.partition(".")
        if name not in config[section]:
            cli.fail(f"{experiment}'s config has no {key}")
        config[section][name] = value
    return config


def build(experiment: str, batch: int, overrides: dict, image_shape=(28, 28, 1)):
    """(jitted step, state, batch dict, rng, family) of the variant, compiled."""
    import jax
    import jax.numpy as jnp

    from genimg.train.family import build_family

    config = _config(experiment, batch, overrides)
    family = build_family(config, image_shape, 10)
    state = jax.jit(family.init_state)(jax.random.key(0))
    lo = -1.0 if family.data_scale == "-1_1" else 0.0
    images = jax.random.uniform(jax.random.key(1), (batch, *image_shape), minval=lo, maxval=1.0)
    data = {"image": images, "label": jnp.zeros((batch,), jnp.int32)}
    rng = jax.random.key(2)
    step = jax.jit(family.make_train_step(None), donate_argnums=0)
    step = step.lower(state, data, rng).compile()
    state, _ = step(state, data, rng)  # warm-up
    jax.block_until_ready(state)
    return step, state, data, rng, family, config


def run(args) -> dict:
    import jax

    built = {}
    for name in args.variants:
        if name not in VARIANTS:
            cli.fail(f"--variants: unknown {name}; expected some of {', '.join(VARIANTS)}")
        t0 = time.perf_counter()
        built[name] = list(build(args.experiment, args.batch_size, VARIANTS[name]))
        print(f"compiled {name} in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    step, state, data, rng, family, config = built[args.variants[0]]
    sample = None
    if family.sample is not None:
        sample = jax.jit(family.sample, static_argnums=2)
        n = config.train.num_samples
        jax.block_until_ready(sample(state, jax.random.key(3), n))

    times = {name: [] for name in args.variants}
    sample_ms = []
    for r in range(args.rounds):
        order = args.variants if r % 2 == 0 else list(reversed(args.variants))
        for name in order:
            step, state, data, rng = built[name][:4]
            jax.block_until_ready(state)
            t0 = time.perf_counter()
            for _ in range(args.steps):
                state, metrics = step(state, data, rng)
            jax.block_until_ready((state, metrics))
            times[name].append(1000 * (time.perf_counter() - t0) / args.steps)
            built[name][1] = state
        if sample is not None:
            t0 = time.perf_counter()
            jax.block_until_ready(sample(built[args.variants[0]][1], jax.random.key(r), n))
            sample_ms.append(1000 * (time.perf_counter() - t0))
    rows = {name: round(statistics.median(v), 1) for name, v in times.items()}
    ref = rows[args.variants[0]]
    head = f"{'variant':10s} {'ms/step':>8s} {'vs ' + args.variants[0]:>12s}  rounds"
    print(head, file=sys.stderr)
    for name, ms in rows.items():
        rounds = ", ".join(f"{t:.0f}" for t in times[name])
        print(f"{name:10s} {ms:8.1f} {ms / ref:11.2f}x  {rounds}", file=sys.stderr)
    if sample_ms:
        print(f"sample grid ({n} images): {statistics.median(sample_ms):.1f} ms", file=sys.stderr)
    return {
        "experiment": args.experiment,
        "batch": args.batch_size,
        "steps": args.steps,
        "ms_per_step": rows,
        "rounds_ms": {k: [round(t, 1) for t in v] for k, v in times.items()},
        "sample_grid_ms": round(statistics.median(sample_ms), 1) if sample_ms else None,
        "load_avg": [round(x, 2) for x in os.getloadavg()],
        "cpu_defaults": args.cpu_defaults,
    }


def define_flags():
    cli.define_string("experiment", "dcgan", "Module under experiments/ [:presets].")
    cli.batch_size_flag(64, "Images per step.")
    cli.define_integer("steps", 10, "Timed steps per variant and round.", lower_bound=1)
    cli.define_integer("rounds", 3, "Interleaved rounds.", lower_bound=1)
    cli.define_list("variants", list(VARIANTS), "Variants to time (the first is the reference).")


def main(args):
    args.cpu_defaults = platform.configure_cpu_defaults()
    print(json.dumps(run(args)))


if __name__ == "__main__":
    cli.run(main, __doc__, define_flags)

"""Training throughput of genimg's own models and train steps, the JAX peer of torch_peer.py.

Run from the repository root (prints exactly one JSON line on stdout, the keys of
torch_peer.py plus JAX extras):

    python benchmarks/train_throughput.py --model=dcgan --batch_size=64 --steps=30 --warmup=5
        [--threads=N] [--upsample_impl=auto|native|subpixel|transpose]
        [--conv_backend=auto|xla|onednn]
        [--ema_decay=D] [--log_norms] [--no_cpu_defaults] [--per_step]

    {"impl": "jax", "jax": "0.10.2", "model": "dcgan", "batch": 64, "device": "cpu",
     "threads": 2, "img_per_s": ..., "ms_per_step": ..., "steps": 30, "compile": true,
     "compile_s": ..., "upsample_impl": "auto", "cpu_defaults": {...}, "xla_flags": "..."}

The networks are those of benchmarks/torch_peer.py, built the way the experiments build them:

- dcgan, mlpgan: `genimg.families.gan.build_models` on the default `model_config("dcgan")` /
  `model_config("mlp")` (the tutorial DCGAN at width 64; the 100-256-512-1024 / 784-512-256
  MLPs) and `genimg.families.gan.make_gan_train_step` (non-saturating loss, one D update on
  real + fake then one G update, Adam(2e-4, 0.5, 0.999) each). The project step can also keep
  an EMA of G and log gradient/parameter norms; the peer does neither, so both are off by
  default (`--ema_decay=0`, the step's own switch that skips the EMA; `--log_norms` turns the
  norms on, as in the experiments' defaults).
- convvae: `genimg.models.vae.make_vae("conv", ...)` (latent 16, Bernoulli logits) and
  `genimg.families.vae.make_vae_train_step` (negative ELBO with analytic KL, no
  binarisation, one Adam(1e-3) step); norms only with `--log_norms`.

As in torch_peer.py: one fixed synthetic batch (uniform in [-1, 1], or [0, 1] for the
sigmoid/Bernoulli models), already on the device; latent noise is drawn inside the step;
only the `steps` iterations after `warmup` are timed, ending with `block_until_ready`.
`compile_s` is the time to lower and compile the step (jax.jit, state donated).
`genimg.platform.configure_cpu_defaults()` runs first unless `--no_cpu_defaults`.
`--threads=N` pins the process to N CPUs (XLA:CPU sizes its thread pool by CPU affinity),
the counterpart of torch_peer.py's `--threads=N`, which sets torch's thread count.
"""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from genimg import cli, platform  # noqa: E402  (repo root on sys.path first)

MODELS = ("dcgan", "mlpgan", "convvae")
IMAGE_SHAPE = (28, 28, 1)
Z_VAE = 16


def build_gan(
    model: str,
    batch: int,
    upsample_impl: str,
    ema_decay: float,
    log_norms: bool,
    conv: str,
    image_shape=IMAGE_SHAPE,
    dtype: str = "float32",
):
    """(state, train_step, batch dict) for the dcgan / mlpgan of torch_peer.py (at another
    `image_shape` and compute `dtype` for benchmarks/accelerator_check.py)."""
    import jax
    import optax

    from genimg.families import gan

    if model == "dcgan":
        model_cfg = gan.model_config("dcgan")
        model_cfg.update(upsample_impl=upsample_impl, conv_backend=conv)
    else:
        model_cfg = gan.model_config("mlp")
    model_cfg.dtype = dtype
    g, d, scale = gan.build_models(model_cfg, image_shape)
    lo = -1.0 if scale == "-1_1" else 0.0
    adam = lambda: optax.adam(2e-4, b1=0.5, b2=0.999)
    z_dim = model_cfg.z_dim
    state = gan.create_gan_state(g, d, adam(), adam(), jax.random.key(0), z_dim, image_shape)
    step = gan.make_gan_train_step(
        g, d, z_dim=z_dim, loss="nonsaturating", ema_decay=ema_decay, log_norms=log_norms
    )
    real = jax.random.uniform(jax.random.key(1), (batch, *image_shape), minval=lo, maxval=1.0)
    return state, step, {"image": real}


def build_vae(batch: int, log_norms: bool, conv: str, dtype: str = "float32"):
    """(state, train_step, batch dict) for the convvae of torch_peer.py (computing in
    `dtype`)."""
    import jax
    import optax

    from genimg.families.vae import make_vae_train_step
    from genimg.models import precision
    from genimg.models.vae import make_vae
    from genimg.train.common import create_state

    model = make_vae("conv", IMAGE_SHAPE, Z_VAE, 1, conv_backend=conv)  # 1 channel of logits
    model = precision.wrap(model, dtype)
    x = jax.random.uniform(jax.random.key(1), (batch, *IMAGE_SHAPE))
    state = create_state(model, optax.adam(1e-3), jax.random.key(0), x[:1], jax.random.key(2))
    step = make_vae_train_step(
        model, likelihood="bernoulli", binarize_mode="none", beta=1.0, log_norms=log_norms
    )
    return state, step, {"image": x}


def time_steps(step, state, batch, rng, warmup: int, steps: int):
    """Runs `warmup` untimed then `steps` timed calls of `step`; (state, metrics, seconds)."""
    import jax

    for _ in range(warmup):
        state, _ = step(state, batch, rng)
    jax.block_until_ready(state)
    t0 = time.perf_counter()
    for _ in range(steps):
        state, metrics = step(state, batch, rng)
    jax.block_until_ready((state, metrics))
    return state, metrics, time.perf_counter() - t0


def per_step_ms(step, state, batch, rng, steps: int):
    """Runs `steps` calls of `step`, waiting for each: (state, list of ms per call)."""
    import jax

    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        state, metrics = step(state, batch, rng)
        jax.block_until_ready((state, metrics))
        times.append(1000 * (time.perf_counter() - t0))
    return state, times


def run(args) -> dict:
    """Build, compile, warm up and time; returns the JSON record."""
    import jax

    from genimg.ops.onednn import resolve_conv_backend

    if args.model == "convvae":
        state, train_step, batch = build_vae(args.batch_size, args.log_norms, args.conv_backend)
    else:
        state, train_step, batch = build_gan(
            args.model,
            args.batch_size,
            args.upsample_impl,
            args.ema_decay,
            args.log_norms,
            args.conv_backend,
        )
    rng = jax.random.key(42)
    state, batch = jax.block_until_ready(jax.device_put((state, batch)))

    t0 = time.perf_counter()
    step = jax.jit(train_step, donate_argnums=0).lower(state, batch, rng).compile()
    compile_s = time.perf_counter() - t0

    state, metrics, seconds = time_steps(step, state, batch, rng, args.warmup, args.steps)
    spread = {}
    if args.per_step:  # then each step again, waited for one by one
        state, step_ms = per_step_ms(step, state, batch, rng, args.steps)
        qs = np.percentile(step_ms, [0, 10, 50, 90, 100])
        names = ("min", "p10", "p50", "p90", "max")
        spread = {"per_step_ms": {k: round(float(q), 2) for k, q in zip(names, qs, strict=True)}}

    finite = all(bool(jax.numpy.isfinite(v).all()) for v in jax.tree.leaves(metrics))
    return {
        "impl": "jax",
        "jax": jax.__version__,
        "model": args.model,
        "batch": args.batch_size,
        "device": jax.default_backend(),
        "threads": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "img_per_s": round(args.batch_size * args.steps / seconds, 1),
        "ms_per_step": round(1000 * seconds / args.steps, 2),
        "steps": args.steps,
        "compile": True,  # always jax.jit-compiled
        "compile_s": round(compile_s, 2),
        "upsample_impl": args.upsample_impl,
        "ema_decay": args.ema_decay,
        "log_norms": args.log_norms,
        "conv_backend": args.conv_backend,
        "conv_backend_resolved": resolve_conv_backend(args.conv_backend),
        "finite": finite,
        "cpu_defaults": args.cpu_defaults,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        **spread,
    }


def define_flags():
    cli.define_enum("model", "dcgan", MODELS, "Network and train step (see the docstring).")
    cli.batch_size_flag(64, "Images per step.")
    cli.define_integer("steps", 30, "Timed iterations.", lower_bound=1)
    cli.define_integer("warmup", 5, "Untimed iterations before the timed ones.", lower_bound=0)
    cli.define_enum(
        "upsample_impl",
        "auto",
        ["auto", "native", "subpixel", "transpose"],
        "layers.ConvTranspose implementation (dcgan only; convvae uses the default).",
    )
    cli.define_integer(
        "threads",
        None,
        "Restrict the process to this many CPUs (XLA:CPU sizes its pool by affinity).",
        lower_bound=1,
    )
    cli.define_enum(
        "conv_backend",
        "auto",
        ["auto", "xla", "onednn"],
        "Who runs the convolutions (dcgan, convvae): auto (the configs' default: oneDNN on CPU "
        "where available), XLA, or oneDNN through the FFI.",
    )
    cli.define_float("ema_decay", 0.0, "G EMA decay (GAN step); 0 skips the EMA update.")
    cli.define_bool(
        "log_norms",
        False,
        "Also compute the gradient/parameter norm metrics (the experiments' default).",
    )
    cli.define_bool("no_cpu_defaults", False, "Skip genimg.platform.configure_cpu_defaults().")
    cli.define_bool(
        "per_step",
        False,
        "Then time `steps` more calls one by one (each waited for) and add their spread "
        "(per_step_ms: min, p10, p50, p90, max) to the record.",
    )


def cpu_defaults_opted_out(argv: list[str]) -> bool:
    """Whether `argv` sets --no_cpu_defaults. `cli.run` applies the CPU defaults before it
    parses any flag, so this one is read from the raw command line first."""
    opted_out = False
    for arg in argv[1:]:
        name, has_value, value = arg.partition("=")
        if name == "--no_cpu_defaults":
            opted_out = not has_value or value.lower() in ("true", "t", "1")
        elif name == "--nono_cpu_defaults":
            opted_out = False
    return opted_out


def main(args) -> None:
    if args.no_cpu_defaults and os.environ.get(platform.DISABLE_ENV, "") in ("", "0"):
        cli.fail("give --no_cpu_defaults on the command line (it must be read before jax starts)")
    if args.threads:  # before jax creates its thread pools
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[: args.threads])
    # Applied already by cli.run (idempotent): this call only reports what was done.
    args.cpu_defaults = None if args.no_cpu_defaults else platform.configure_cpu_defaults()
    print(json.dumps(run(args)))


if __name__ == "__main__":
    if cpu_defaults_opted_out(sys.argv):
        os.environ[platform.DISABLE_ENV] = "1"
    cli.run(main, __doc__, define_flags)

"""Training throughput of genimg's own models and train steps, the JAX peer of torch_peer.py.

Run (prints exactly one JSON line on stdout, the keys of torch_peer.py plus JAX extras):

    python benchmarks/train_throughput.py --model dcgan --batch 64 --steps 30 --warmup 5

    {"impl": "jax", "jax": "0.10.2", "model": "dcgan", "batch": 64, "device": "cpu",
     "threads": 2, "img_per_s": ..., "ms_per_step": ..., "steps": 30, "compile": true,
     "compile_s": ..., "upsample_impl": "auto", "cpu_defaults": {...}, "xla_flags": "..."}

The networks are the ones of shared/bench/torch_peer.py, built from the project's modules:

- dcgan, mlpgan: `genimg.models.gan` G/D and `genimg.train.gan.make_gan_train_step`
  (non-saturating loss, one D update on real + fake then one G update, Adam(2e-4, 0.5, 0.999)
  each). The project step can also keep an EMA of G and log gradient/parameter norms; the
  peer does neither, so both are off by default (`--ema-decay 0`, the step's own switch that
  skips the EMA; `--log-norms` turns the norms on, as in the experiments' defaults).
- convvae: `genimg.models.vae.make_vae("conv", ...)` (latent 16, Bernoulli logits) and
  `genimg.train.vae.make_vae_train_step` (negative ELBO with analytic KL, no binarisation,
  one Adam(1e-3) step); norms only with `--log-norms`.

As in torch_peer.py: one fixed synthetic batch (uniform in [-1, 1], or [0, 1] for the
sigmoid/Bernoulli models), already on the device; latent noise is drawn inside the step;
only the `steps` iterations after `warmup` are timed, ending with `block_until_ready`.
`compile_s` is the time to lower and compile the step (jax.jit, state donated).
`configure_cpu_defaults()` runs first unless `--no-cpu-defaults`. `--threads N` pins the
process to N CPUs, the way torch_peer.py's `--threads N` sets torch's thread count.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from genimg import platform  # noqa: E402  (must not import jax backends before configuring)

IMAGE_SHAPE = (28, 28, 1)
Z_GAN, Z_VAE = 100, 16


def build_gan(
    model: str, batch: int, upsample_impl: str, ema_decay: float, log_norms: bool, conv: str
):
    """(state, train_step, batch dict) for the dcgan / mlpgan of torch_peer.py."""
    import jax
    import optax

    from genimg.models import gan
    from genimg.train.gan import create_gan_state, make_gan_train_step

    if model == "dcgan":
        g = gan.DCGANGenerator(
            IMAGE_SHAPE, width=64, kernel_size=5, upsample_impl=upsample_impl, conv_backend=conv
        )
        d = gan.DCGANDiscriminator(width=64, kernel_size=5, conv_backend=conv)
        lo = -1.0
    else:
        g = gan.MLPGenerator(IMAGE_SHAPE, hidden=(256, 512, 1024))
        d = gan.MLPDiscriminator(hidden=(512, 256))
        lo = 0.0
    adam = lambda: optax.adam(2e-4, b1=0.5, b2=0.999)
    state = create_gan_state(g, d, adam(), adam(), jax.random.key(0), Z_GAN, IMAGE_SHAPE)
    step = make_gan_train_step(
        g, d, z_dim=Z_GAN, loss="nonsaturating", ema_decay=ema_decay, log_norms=log_norms
    )
    real = jax.random.uniform(jax.random.key(1), (batch, *IMAGE_SHAPE), minval=lo, maxval=1.0)
    return state, step, {"image": real}


def build_vae(batch: int, log_norms: bool, conv: str):
    """(state, train_step, batch dict) for the convvae of torch_peer.py."""
    import jax
    import optax

    from genimg.models.vae import make_vae
    from genimg.train.vae import create_state, make_vae_train_step

    model = make_vae("conv", IMAGE_SHAPE, Z_VAE, 1, conv_backend=conv)  # 1 channel of logits
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


def run(args) -> dict:
    """Build, compile, warm up and time; returns the JSON record."""
    import jax

    if args.model == "convvae":
        state, train_step, batch = build_vae(args.batch, args.log_norms, args.conv_backend)
    else:
        state, train_step, batch = build_gan(
            args.model,
            args.batch,
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

    finite = all(bool(jax.numpy.isfinite(v).all()) for v in jax.tree.leaves(metrics))
    return {
        "impl": "jax",
        "jax": jax.__version__,
        "model": args.model,
        "batch": args.batch,
        "device": jax.default_backend(),
        "threads": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "img_per_s": round(args.batch * args.steps / seconds, 1),
        "ms_per_step": round(1000 * seconds / args.steps, 2),
        "steps": args.steps,
        "compile": True,  # always jax.jit-compiled
        "compile_s": round(compile_s, 2),
        "upsample_impl": args.upsample_impl,
        "ema_decay": args.ema_decay,
        "log_norms": args.log_norms,
        "conv_backend": args.conv_backend,
        "finite": finite,
        "cpu_defaults": args.cpu_defaults,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", choices=["dcgan", "mlpgan", "convvae"], default="dcgan")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=30, help="timed iterations")
    p.add_argument("--warmup", type=int, default=5, help="untimed iterations first")
    p.add_argument(
        "--upsample-impl",
        choices=["auto", "subpixel", "transpose"],
        default="auto",
        help="layers.ConvTranspose implementation (dcgan only; convvae uses the default)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="restrict the process to this many CPUs (XLA:CPU sizes its pool by affinity)",
    )
    p.add_argument(
        "--conv-backend",
        choices=["xla", "onednn"],
        default="xla",
        help="who runs the convolutions (dcgan, convvae): XLA, or oneDNN through the FFI",
    )
    p.add_argument("--ema-decay", type=float, default=0.0, help="G EMA decay (GAN step)")
    p.add_argument(
        "--log-norms",
        action="store_true",
        help="also compute the gradient/parameter norm metrics (the experiments' default)",
    )
    p.add_argument(
        "--no-cpu-defaults", action="store_true", help="skip platform.configure_cpu_defaults()"
    )
    args = p.parse_args(argv)
    if args.threads:  # before jax creates its thread pools
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[: args.threads])
    args.cpu_defaults = None if args.no_cpu_defaults else platform.configure_cpu_defaults()
    print(json.dumps(run(args)))


if __name__ == "__main__":
    main()

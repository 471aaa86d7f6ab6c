"""Pieces every model family shares: the Family record, device helpers, norms, EMA."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

# (state, batch, rng) -> (state, metrics)
TrainStep = Callable[[Any, dict, jax.Array], tuple[Any, dict]]


@dataclasses.dataclass(frozen=True)
class Family:
    """What a model family plugs into the shared loop, sampler and evaluator.

    Built by ``genimg.train.<family>.build(config, image_shape, num_classes)``.
    """

    name: str
    data_scale: str  # "-1_1" or "0_1": how the data pipeline scales pixels for this model
    init_state: Callable[[jax.Array], Any]  # rng -> unreplicated state with a ``.step``
    make_train_step: Callable[[str | None], TrainStep]  # axis_name -> pure train step
    # (state, rng, n) -> float images [n, H, W, C] in [0, 1] (EMA weights when present).
    sample: Callable[[Any, jax.Array, int], jax.Array] | None = None
    # (state, images in data scale) -> reconstructions in [0, 1], for autoencoders.
    reconstruct: Callable[[Any, jax.Array], jax.Array] | None = None
    batch_multiplier: int = 1  # images per example slot, e.g. n_critic real batches per step


def to_unit_range(images: jax.Array, scale: str) -> jax.Array:
    """Map images from the model's data scale to [0, 1]."""
    if scale == "-1_1":
        return jnp.clip((images + 1.0) * 0.5, 0.0, 1.0)
    if scale == "0_1":
        return jnp.clip(images, 0.0, 1.0)
    raise ValueError(f"unknown data scale '{scale}'; expected '-1_1' or '0_1'")


def maybe_pmean(tree, axis_name: str | None):
    """``lax.pmean`` over ``axis_name``, or the identity on one device."""
    return tree if axis_name is None else jax.lax.pmean(tree, axis_name)


def device_rng(rng: jax.Array, axis_name: str | None) -> jax.Array:
    """A key that differs per device under pmap (for dropout and other local noise)."""
    return rng if axis_name is None else jax.random.fold_in(rng, jax.lax.axis_index(axis_name))


def global_normal(rng: jax.Array, local_batch: int, shape, axis_name: str | None) -> jax.Array:
    """Standard normal noise ``[local_batch, *shape]`` that is this device's slice of one
    global draw, so N devices see exactly the noise one device sees for the same global batch."""
    if axis_name is None:
        return jax.random.normal(rng, (local_batch, *shape))
    n = jax.lax.axis_size(axis_name)
    noise = jax.random.normal(rng, (n * local_batch, *shape))
    start = jax.lax.axis_index(axis_name) * local_batch
    return jax.lax.dynamic_slice_in_dim(noise, start, local_batch)


def ema_update(ema, params, decay: float):
    """Exponential moving average: ``decay * ema + (1 - decay) * params``."""
    return optax.incremental_update(params, ema, step_size=1.0 - decay)


def ema_warmup(decay: float, step) -> jax.Array:
    """``min(decay, (1 + step) / (10 + step))``: early on the average forgets the random
    initialisation quickly (as tf.train.ExponentialMovingAverage with num_updates)."""
    step = jnp.asarray(step, jnp.float32)
    return jnp.minimum(decay, (1.0 + step) / (10.0 + step))


def norms(prefix: str, grads, params, enabled: bool = True) -> dict:
    """Global L2 norms of gradients and parameters, named for the metrics log.

    ``enabled=False`` (``train.log_norms=False``) returns no metrics: the two extra reads of
    every parameter cost about 15% of a small MLP step on CPU, next to nothing for a conv net.
    """
    if not enabled:
        return {}
    return {
        f"{prefix}grad_norm": optax.tree.norm(grads),
        f"{prefix}param_norm": optax.tree.norm(params),
    }


def replicate(tree, devices=None):
    """Copy a pytree onto every local device (new leading device axis), for pmap."""
    devices = devices or jax.local_devices()
    sharding = jax.sharding.NamedSharding(
        jax.sharding.Mesh(np.array(devices), ("d",)), jax.sharding.PartitionSpec("d")
    )
    stack = lambda x: jnp.broadcast_to(jnp.asarray(x)[None], (len(devices), *jnp.shape(x)))
    return jax.device_put(jax.tree.map(stack, tree), sharding)


def unreplicate(tree):
    """The first device's copy of a replicated pytree."""
    return jax.tree.map(lambda x: x[0], tree)


def compile_step(train_step: TrainStep, n_devices: int, axis_name: str = "batch"):
    """Wrap a pure step once: ``jax.jit`` on one device, ``jax.pmap`` over several.

    The state argument is donated. Under pmap the rng is broadcast (``in_axes=None``): the
    step folds in the device index itself where it needs per-device randomness.
    """
    if n_devices == 1:
        return jax.jit(train_step, donate_argnums=0)
    return jax.pmap(train_step, axis_name=axis_name, in_axes=(0, 0, None), donate_argnums=0)

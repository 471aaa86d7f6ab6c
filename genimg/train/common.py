"""Pieces every family's train step shares: device helpers, the gradient update, norms, EMA."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.training import train_state

from genimg.train.family import TrainStep


class State(train_state.TrainState):
    """step, params, opt_state (+ static apply_fn, tx): the state of one-network families."""


def create_state(model, tx: optax.GradientTransformation, rng: jax.Array, *init_args) -> State:
    """Initialise ``model`` on ``init_args`` (a batch of one) and its optimizer."""
    params = model.init(rng, *init_args)["params"]
    return State.create(apply_fn=model.apply, params=params, tx=tx)


def optimizer_step(params, opt_state, grads, tx: optax.GradientTransformation, axis_name):
    """Average ``grads`` over devices, then one ``tx`` update: ``(params, opt_state, grads)``
    with the averaged gradients (for the norms)."""
    grads = maybe_pmean(grads, axis_name)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, grads


def apply_gradients(state, grads, axis_name, *, log_norms: bool, **replace):
    """`optimizer_step` on a ``TrainState``: ``(new_state, norm metrics)``; the norms are of
    the averaged gradients and the parameters before the update. ``replace`` sets other
    fields of the new state (e.g. ``batch_stats``)."""
    params, opt_state, grads = optimizer_step(
        state.params, state.opt_state, grads, state.tx, axis_name
    )
    new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state, **replace)
    return new_state, norms("", grads, state.params, log_norms)


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


def global_batch_op(fn, rng, x, axis_name: str | None):
    """``fn(rng, x)`` applied to the whole global batch; returns this device's slice.

    Random per-example ops (binarisation, corruptions) then draw exactly the noise one device
    draws for the same global batch, so N devices reproduce a 1-device run.
    """
    if axis_name is None:
        return fn(rng, x)
    full = jax.lax.all_gather(x, axis_name, tiled=True)  # [n * b, ...]
    out = fn(rng, full)
    start = jax.lax.axis_index(axis_name) * x.shape[0]
    return jax.lax.dynamic_slice_in_dim(out, start, x.shape[0])


def device_rng(rng: jax.Array, axis_name: str | None) -> jax.Array:
    """A key that differs per device under pmap (for dropout and other local noise)."""
    return rng if axis_name is None else jax.random.fold_in(rng, jax.lax.axis_index(axis_name))


def _global_draw(draw, rng: jax.Array, local_batch: int, axis_name: str | None) -> jax.Array:
    """``draw(rng, n)`` for the global batch; returns this device's ``local_batch`` rows."""
    if axis_name is None:
        return draw(rng, local_batch)
    n = jax.lax.axis_size(axis_name)
    start = jax.lax.axis_index(axis_name) * local_batch
    return jax.lax.dynamic_slice_in_dim(draw(rng, n * local_batch), start, local_batch)


def global_normal(rng: jax.Array, local_batch: int, shape, axis_name: str | None) -> jax.Array:
    """Standard normal noise ``[local_batch, *shape]`` that is this device's slice of one
    global draw, so N devices see exactly the noise one device sees for the same global batch."""
    return _global_draw(
        lambda key, n: jax.random.normal(key, (n, *shape)), rng, local_batch, axis_name
    )


def global_randint(rng: jax.Array, local_batch: int, maxval: int, axis_name: str | None):
    """Integers ``[local_batch]`` uniform in ``[0, maxval)`` (e.g. class labels), this
    device's slice of one global draw, as `global_normal`."""
    return _global_draw(
        lambda key, n: jax.random.randint(key, (n,), 0, maxval), rng, local_batch, axis_name
    )


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
    """The first local device's copy of a replicated pytree.

    With several processes the copy is fetched to the host (numpy) without running a
    computation: an indexing op would be one more launch on a device whose queue the
    processes must keep in the same order (collectives), and may wait on the others."""
    if jax.process_count() == 1:
        return jax.tree.map(lambda x: x[0], tree)
    return jax.tree.map(
        lambda x: np.asarray(x.addressable_data(0))[0] if isinstance(x, jax.Array) else x[0], tree
    )


def compile_step(train_step: TrainStep, n_devices: int, axis_name: str = "batch"):
    """Wrap a pure step once: ``jax.jit`` on one device, ``jax.pmap`` over several.

    The state argument is donated. Under pmap the rng is broadcast (``in_axes=None``): the
    step folds in the device index itself where it needs per-device randomness.
    """
    if n_devices == 1:
        return jax.jit(train_step, donate_argnums=0)
    return jax.pmap(train_step, axis_name=axis_name, in_axes=(0, 0, None), donate_argnums=0)

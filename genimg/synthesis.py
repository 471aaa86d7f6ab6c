"""Synthesis on any family, through the capabilities of its `Family` record: drawing samples
(optionally for chosen classes) and walking a latent space.

Everything here takes ``(family, state, ...)`` and works for every family that has the
pieces it needs (``sample``, or ``encode`` and ``decode``); it never names a family.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import tqdm

from genimg import images as images_lib
from genimg.data import decode_inputs
from genimg.errors import UserError
from genimg.train.family import Family


def _jitted_sampler(family: Family):
    """``jax.jit(family.sample)`` with ``num`` static, cached on the family record."""
    fn = getattr(family, "_jitted_sample", None)
    if fn is None:
        fn = jax.jit(family.sample, static_argnums=2)
        object.__setattr__(family, "_jitted_sample", fn)  # the record is frozen; a cache
    return fn


def generate(
    family: Family,
    state,
    num: int,
    seed: int = 0,
    batch_size: int = 256,
    labels=None,
    progress: bool = True,
):
    """``(images uint8 [num, H, W, C], labels int32 [num] or None)``.

    Drawn in fixed-size batches (one compilation) from ``fold_in(key(seed), start)``.
    ``labels`` (conditional families only) asks for those classes, one per sample; without
    them a conditional family draws balanced classes per batch.
    """
    if family.sample is None:
        raise UserError(f"family '{family.name}' cannot sample")
    if num < 1:
        raise UserError(f"the number of samples must be >= 1, got {num}")
    labels = family.check_labels(labels, num)
    sample = _jitted_sampler(family)
    rng = jax.random.key(seed)
    images, drawn = [], []
    for start in tqdm.trange(
        0, num, batch_size, desc="sampling", unit="batch", disable=not progress
    ):
        chunk = None
        if labels is not None:
            chunk = labels[start : start + batch_size]
            chunk = jnp.asarray(np.resize(chunk, batch_size))  # pad by repetition
        x, y = sample(state, jax.random.fold_in(rng, start), batch_size, chunk)
        keep = min(batch_size, num - start)
        images.append(np.asarray(jax.device_get(x))[:keep])
        if y is not None:
            drawn.append(np.asarray(jax.device_get(y), np.int32)[:keep])
    out_labels = np.concatenate(drawn) if drawn else None
    return images_lib.to_uint8(np.concatenate(images)), out_labels


def latent_traversal(
    family: Family, state, x, labels=None, num_dims: int = 10, num_steps: int = 11, span=3.0
):
    """Images ``[D * S, H, W, C]``: row ``d`` sweeps latent dimension ``d`` over
    ``linspace(-span, span, S)`` around the code of ``x[:1]``, the other dimensions fixed."""
    if family.encode is None or family.decode is None:
        raise UserError(f"family '{family.name}' has no encoder and decoder to traverse")
    labels = None if labels is None else jnp.asarray(labels)[:1]
    code = family.encode(state, x[:1], labels)  # [1, L]
    dims = min(num_dims, code.shape[-1])
    values = jnp.linspace(-span, span, num_steps)
    z = jnp.tile(code, (dims * num_steps, 1))  # [D * S, L]
    rows = jnp.repeat(jnp.arange(dims), num_steps)
    z = z.at[jnp.arange(dims * num_steps), rows].set(jnp.tile(values, dims))
    tiled = None if labels is None else jnp.repeat(labels, dims * num_steps)
    return family.decode(state, z, tiled)


def translate_all(
    family: Family,
    state,
    inputs: np.ndarray,
    input_classes: int | None = None,
    batch_size: int = 256,
    rng=None,
    progress: bool = True,
) -> np.ndarray:
    """uint8 ``[N, H, W, C]`` translations of paired-data inputs (uint8 ``[N, H, W, C']``, label
    ids when ``input_classes`` is set) by an image-to-image family, in fixed-size batches (the
    last one padded, so the network compiles once). ``rng`` turns the family's noise on."""
    if family.translate is None:
        raise UserError(f"family '{family.name}' does not translate inputs to images")
    inputs = np.asarray(inputs)
    fn = getattr(family, "_jitted_translate", None)
    if fn is None:
        fn = jax.jit(family.translate)
        object.__setattr__(family, "_jitted_translate", fn)  # the record is frozen; a cache
    batch = min(batch_size, len(inputs))
    out = []
    for start in tqdm.trange(
        0, len(inputs), batch, desc="translating", unit="batch", disable=not progress
    ):
        chunk = inputs[start : start + batch]
        keep = len(chunk)
        if keep < batch:
            chunk = np.concatenate([chunk, np.zeros((batch - keep, *chunk.shape[1:]), chunk.dtype)])
        x = decode_inputs(chunk, input_classes)
        key = None if rng is None else jax.random.fold_in(rng, start)
        y = fn(state, x) if key is None else fn(state, x, key)
        out.append(np.asarray(jax.device_get(y))[:keep])
    return images_lib.to_uint8(np.concatenate(out))

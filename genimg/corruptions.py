"""Image corruptions for denoising autoencoders (Vincent et al. 2008).

Every corruption is a pure function ``(rng, x, ...) -> x_tilde`` on float images
``[B, H, W, C]`` in [0, 1]; pixel-level corruptions hit all channels of a pixel together.
``make_corruption(kind, ...)`` binds the parameters from a config into ``(rng, x) -> x_tilde``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp

Array = jax.Array
CORRUPTIONS = ("none", "gaussian", "salt_and_pepper", "pixel_mask", "block_mask")


def _check_images(x: Array) -> None:
    if x.ndim != 4:
        raise ValueError(f"corruptions expect images [B, H, W, C], got shape {x.shape}")


def _check_fraction(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value}")


def gaussian_noise(rng: Array, x: Array, std: float, clip: bool = True) -> Array:
    """Additive ``N(0, std^2)`` noise per pixel and channel, clipped to [0, 1] when ``clip``."""
    _check_images(x)
    if std < 0:
        raise ValueError(f"noise std must be >= 0, got {std}")
    y = x + std * jax.random.normal(rng, x.shape, x.dtype)
    return jnp.clip(y, 0.0, 1.0) if clip else y


def salt_and_pepper(rng: Array, x: Array, fraction: float, salt_ratio: float = 0.5) -> Array:
    """Each pixel independently, with probability ``fraction``, becomes white (with probability
    ``salt_ratio``) or black."""
    _check_images(x)
    _check_fraction("salt-and-pepper fraction", fraction)
    _check_fraction("salt_ratio", salt_ratio)
    hit_rng, salt_rng = jax.random.split(rng)
    shape = x.shape[:3] + (1,)
    hit = jax.random.bernoulli(hit_rng, fraction, shape)
    salt = jax.random.bernoulli(salt_rng, salt_ratio, shape)
    return jnp.where(hit, salt.astype(x.dtype), x)


def pixel_mask(rng: Array, x: Array, fraction: float, fill: float = 0.0) -> Array:
    """Sets exactly ``round(fraction * H * W)`` pixels per image, chosen uniformly, to ``fill``."""
    _check_images(x)
    _check_fraction("masked pixel fraction", fraction)
    b, h, w, _ = x.shape
    n = round(fraction * h * w)
    # The n pixels with the smallest uniform keys: a uniform random subset of size n.
    keys = jax.random.uniform(rng, (b, h * w))
    ranks = jnp.argsort(jnp.argsort(keys, axis=1), axis=1)
    mask = (ranks < n).reshape(b, h, w, 1)
    return jnp.where(mask, jnp.asarray(fill, x.dtype), x)


def block_mask(rng: Array, x: Array, size: int, fill: float = 0.0) -> Array:
    """Sets one ``size x size`` square per image, placed uniformly inside it, to ``fill``."""
    _check_images(x)
    b, h, w, _ = x.shape
    if not 0 <= size <= min(h, w):
        raise ValueError(f"block size must be in [0, {min(h, w)}] for {h}x{w} images, got {size}")
    row_rng, col_rng = jax.random.split(rng)
    top = jax.random.randint(row_rng, (b, 1, 1, 1), 0, h - size + 1)
    left = jax.random.randint(col_rng, (b, 1, 1, 1), 0, w - size + 1)
    rows = jnp.arange(h)[None, :, None, None]
    cols = jnp.arange(w)[None, None, :, None]
    mask = (rows >= top) & (rows < top + size) & (cols >= left) & (cols < left + size)
    return jnp.where(mask, jnp.asarray(fill, x.dtype), x)


def make_corruption(
    kind: str,
    *,
    noise_std: float = 0.5,
    fraction: float = 0.25,
    block_size: int = 14,
    clip: bool = True,
) -> Callable[[Array, Array], Array]:
    """``(rng, x) -> x_tilde`` for ``kind`` in ``CORRUPTIONS``.

    Args:
      kind: "none", "gaussian" (uses ``noise_std``, ``clip``), "salt_and_pepper" and
        "pixel_mask" (use ``fraction``), "block_mask" (uses ``block_size``, in pixels).
    """
    if kind == "none":
        return lambda rng, x: x
    if kind == "gaussian":
        return functools.partial(gaussian_noise, std=noise_std, clip=clip)
    if kind == "salt_and_pepper":
        _check_fraction("salt-and-pepper fraction", fraction)
        return functools.partial(salt_and_pepper, fraction=fraction)
    if kind == "pixel_mask":
        _check_fraction("masked pixel fraction", fraction)
        return functools.partial(pixel_mask, fraction=fraction)
    if kind == "block_mask":
        return functools.partial(block_mask, size=block_size)
    raise ValueError(f"unknown corruption '{kind}'; expected one of {', '.join(CORRUPTIONS)}")

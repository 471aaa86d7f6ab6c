"""Turning model outputs into pictures: image grids and PNG files."""

from __future__ import annotations

import functools
import math
import os
import pathlib

import jax
import numpy as np
import tqdm
from PIL import Image


def make_grid(images, ncols: int | None = None, pad: int = 2, pad_value: float = 1.0):
    """Tile float images ``[N, H, W, C]`` in [0, 1] into one uint8 picture ``[h, w, C]``."""
    images = np.asarray(images, np.float32)
    if images.ndim != 4:
        raise ValueError(f"make_grid expects images [N, H, W, C], got shape {images.shape}")
    n, h, w, c = images.shape
    ncols = ncols or math.ceil(math.sqrt(n))
    nrows = math.ceil(n / ncols)
    grid = np.full((nrows * (h + pad) + pad, ncols * (w + pad) + pad, c), pad_value, np.float32)
    for i, image in enumerate(images):
        r, q = divmod(i, ncols)
        y, x = pad + r * (h + pad), pad + q * (w + pad)
        grid[y : y + h, x : x + w] = image
    return np.round(np.clip(grid, 0.0, 1.0) * 255.0).astype(np.uint8)


def save_png(path, picture: np.ndarray) -> None:
    """Write a uint8 ``[h, w, C]`` picture atomically (a reader never sees half a file)."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    array = picture[..., 0] if picture.shape[-1] == 1 else picture
    tmp = path.with_name(path.name + ".tmp")
    Image.fromarray(array).save(tmp, format="PNG", optimize=True)
    os.replace(tmp, path)


@functools.lru_cache(maxsize=16)
def jitted_sampler(family):
    """``jax.jit(family.sample)`` (``num`` static), built once per family so repeated calls
    (sample grids, periodic evaluation) reuse one compilation."""
    return jax.jit(family.sample, static_argnums=2)


def generate(family, state, num: int, seed: int = 0, batch_size: int = 256) -> np.ndarray:
    """``num`` uint8 NHWC samples, drawn in fixed-size batches (one compile) with a bar."""
    if family.sample is None:
        raise ValueError(f"model family '{family.name}' cannot sample")
    sample = jitted_sampler(family)
    rng = jax.random.key(seed)
    chunks = []
    for i in tqdm.trange(0, num, batch_size, desc="sampling", unit="batch"):
        images = sample(state, jax.random.fold_in(rng, i), batch_size)
        chunks.append(np.asarray(jax.device_get(images))[: num - i])
    images = np.concatenate(chunks) if chunks else np.zeros((0,), np.float32)
    return np.round(np.clip(images, 0.0, 1.0) * 255.0).astype(np.uint8)


def write_npz(path, images: np.ndarray, labels: np.ndarray | None = None) -> None:
    """Atomically write ``images`` (+ ``labels``) to ``path``."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    arrays = {"images": images} if labels is None else {"images": images, "labels": labels}
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, path)

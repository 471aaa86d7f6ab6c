"""Pictures on disk: image grids, PNG files and ``.npz`` sample files, each written atomically
(to a temporary name, then renamed) so that a reader never sees half a file."""

from __future__ import annotations

import math
import os
import pathlib

import numpy as np
from PIL import Image, PngImagePlugin

from genimg.watermark import Provenance


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


def to_uint8(images) -> np.ndarray:
    """Float images in [0, 1] -> uint8 [0, 255] (rounded, clipped)."""
    return np.round(np.clip(np.asarray(images, np.float32), 0.0, 1.0) * 255.0).astype(np.uint8)


def save_png(path, picture: np.ndarray, provenance: Provenance | None = None) -> np.ndarray:
    """Write a uint8 ``[h, w, C]`` picture (C in {1, 3, 4}); returns the pixels written.

    With ``provenance`` (every image a model generated), the file carries it as PNG text and,
    unless it is switched off or the picture is too small, as an invisible watermark
    (``genimg.watermark``); ``python -m genimg.provenance check FILE`` reads both.
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    info = None
    if provenance is not None:
        picture, marked = provenance.mark(picture)
        info = PngImagePlugin.PngInfo()
        for name, value in provenance.text(marked).items():
            info.add_text(name, value)
    array = picture[..., 0] if picture.shape[-1] == 1 else picture
    tmp = path.with_name(path.name + ".tmp")
    Image.fromarray(array).save(tmp, format="PNG", optimize=True, pnginfo=info)
    os.replace(tmp, path)
    return picture


def save_pngs(folder, images: np.ndarray, provenance: Provenance | None = None) -> None:
    """One PNG per uint8 image ``[N, H, W, C]``: ``folder/000000.png``, ..."""
    folder = pathlib.Path(folder)
    for i, image in enumerate(images):
        save_png(folder / f"{i:06d}.png", image, provenance)


def write_npz(path, images: np.ndarray, labels: np.ndarray | None = None) -> None:
    """Write ``images`` (+ ``labels``) to ``path``, the format ``load("npz:FILE")`` reads."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    arrays = {"images": images} if labels is None else {"images": images, "labels": labels}
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, path)

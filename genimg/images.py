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


def label_palette(num_classes: int) -> np.ndarray:
    """The PASCAL VOC colour map: float [K, 3] in [0, 1], class 0 black."""
    colours = np.zeros((num_classes, 3), np.float32)
    for k in range(num_classes):
        c, r, g, b = k, 0, 0, 0
        for shift in range(7, -1, -1):
            r |= ((c >> 0) & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        colours[k] = (r / 255.0, g / 255.0, b / 255.0)
    return colours


def show_inputs(inputs, input_classes: int | None = None) -> np.ndarray:
    """Paired-data inputs float [N, H, W, C'] as pictures in [0, 1]: one-hot label maps
    (``input_classes`` set) in `label_palette` colours, 1- or 3-channel inputs as they are,
    any other channel count by its first channel."""
    x = np.asarray(inputs, np.float32)
    if input_classes:
        return label_palette(input_classes)[np.argmax(x, axis=-1)]
    return x if x.shape[-1] in (1, 3) else x[..., :1]


def translation_grid(inputs, outputs, targets, per_row: int = 4) -> np.ndarray:
    """uint8 grid of ``input | output | target`` triplets, ``per_row`` triplets per row; the
    three float [N, H, W, *] arrays in [0, 1] are shown in RGB if any of them is."""
    parts = [np.asarray(p, np.float32) for p in (inputs, outputs, targets)]
    if any(p.shape[-1] == 3 for p in parts):
        parts = [np.repeat(p, 3, axis=-1) if p.shape[-1] == 1 else p for p in parts]
    n = len(parts[0])
    triplets = np.stack(parts, axis=1).reshape(3 * n, *parts[0].shape[1:])
    return make_grid(triplets, ncols=3 * min(per_row, n))


def write_npz_splits(path, splits: dict) -> None:
    """Write ``{split: (images, labels)}`` as ``<split>_images`` / ``<split>_labels``, which
    ``load("npz:FILE", split)`` reads as that split."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    arrays = {}
    for split, (images, labels) in splits.items():
        arrays[f"{split}_images"] = images
        if labels is not None:
            arrays[f"{split}_labels"] = labels
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, path)

"""Caption fidelity and domain-FID of captioned scenes (``genimg.data.scenes``).

A scene is read cell by cell: a 28x28 cell with fewer than `MIN_INK` pixels brighter than
`INK_LEVEL` is empty (all but about 1 in 10,000 Fashion-MNIST items have more; a black
cell has none), and a domain classifier names the item in every other cell. A scene is correct
when its cells are exactly what the caption asks for (`genimg.data.scenes.satisfies`): every
named item of the right class at the right place, every other cell empty, and for a "size"
caption the item of the right size.

Size: an item is small when the bounding box of its ink pixels is at most `SMALL_SIDE` px on
its longer side (a "small" item of the generator is `scenes.SMALL` = 18 px; on Fashion-MNIST's
test items 0.4 % of full-size items are this small, none of the scaled ones is larger). A small
item is classified from the centre `scenes.SMALL`-px square of its cell scaled back to 28 px,
the inverse of the generator's `scenes.shrink`, so the classifier sees items at the size it
was trained on.

Domain-FID compares scenes in the classifier's penultimate features of the four cells,
concatenated in reading order (so a wrong layout moves a scene's features as much as a
wrong item does), by the Fréchet distance.

``correct(..., classes=False)`` scores the layout alone (items in the right cells, whatever
their class), which separates "puts things in the right place" from "draws the right things".

`nearest_captions` is the memorisation baseline: the training caption with the fewest
differing tokens (position by position; ties go to the first), whose scene is retrieved.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from genimg.data import scenes
from genimg.metrics import extractors as extractors_lib
from genimg.metrics.fid import fid_from_features

INK_LEVEL = 64  # a pixel above this (of 255) is ink
MIN_INK = 10  # a cell with fewer ink pixels is empty
SMALL_SIDE = 21  # px: an item whose ink bounding box is at most this on its longer side is small


def cut_cells(images: np.ndarray) -> np.ndarray:
    """uint8 [N, 56, 56, C] -> [N, 4, 28, 28, C]: the cells in reading order."""
    n, g, c = len(images), scenes.GRID, scenes.CELL
    x = images.reshape(n, g, c, g, c, images.shape[-1]).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(n, g * g, c, c, images.shape[-1])


def empty(cells: np.ndarray) -> np.ndarray:
    """bool [...] for uint8 cells [..., 28, 28, C]: fewer than `MIN_INK` ink pixels."""
    return np.sum(cells > INK_LEVEL, axis=(-3, -2, -1)) < MIN_INK


def ink_side(cells: np.ndarray) -> np.ndarray:
    """int [...]: the longer side of the bounding box of the ink pixels of uint8 cells
    [..., 28, 28, C] (0 for a cell without ink)."""
    ink = np.any(cells > INK_LEVEL, axis=-1)  # [..., 28, 28]
    sides = []
    for axis in (-1, -2):  # rows that hold ink, columns that hold ink
        any_ink = np.any(ink, axis=axis)
        n = any_ink.shape[-1]
        first = np.argmax(any_ink, axis=-1)
        last = n - 1 - np.argmax(any_ink[..., ::-1], axis=-1)
        sides.append(np.where(np.any(any_ink, axis=-1), last - first + 1, 0))
    return np.maximum(*sides)


def grow(cell: np.ndarray) -> np.ndarray:
    """The centre `scenes.SMALL`-px square of a uint8 cell [28, 28, C] scaled to 28 px."""
    lo, n = (scenes.CELL - scenes.SMALL) // 2, scenes.SMALL
    out = np.zeros_like(cell)
    for ch in range(cell.shape[-1]):
        img = Image.fromarray(cell[lo : lo + n, lo : lo + n, ch])
        out[..., ch] = np.asarray(img.resize((scenes.CELL, scenes.CELL), Image.BILINEAR))
    return out


def read_scenes(images: np.ndarray, extractor, batch_size: int = 500):
    """``(grids int [N, 2, 2] with -1 for empty cells, small bool [N, 2, 2], features
    [N, 4 F])`` of uint8 scenes (small items are read from their `grow`n crop)."""
    cells = cut_cells(np.asarray(images, np.uint8))
    flat = cells.reshape((-1,) + cells.shape[2:])
    is_empty = empty(flat)
    small = ~is_empty & (ink_side(flat) <= SMALL_SIDE)
    flat = flat.copy()
    for i in np.flatnonzero(small):
        flat[i] = grow(flat[i])
    out = extractors_lib.extract(extractor, flat, batch_size, progress=False)
    classes = np.where(is_empty, -1, np.argmax(out.logits, -1))
    g = scenes.GRID
    shape = (len(images), g, g)
    return classes.reshape(shape), small.reshape(shape), out.features.reshape(len(images), -1)


def correct(
    grids: np.ndarray, tokens: np.ndarray, small=None, classes: bool = True
) -> tuple[np.ndarray, list[str]]:
    """``(bool [N], relation type per scene)``: does scene i show caption i (``small``
    [N, 2, 2] from `read_scenes`, needed for "size" captions)? With ``classes=False``: are
    its items in cells the caption allows (the layout alone, whatever classes and sizes)?"""
    specs = [scenes.parse(scenes.TOKENIZER.decode(t)) for t in tokens]
    if small is None:
        small = [None] * len(specs)
    ok = [
        scenes.satisfies(s, g, classes, small=m)
        for s, g, m in zip(specs, grids, small, strict=True)
    ]
    return np.array(ok), [s.relation for s in specs]


def size_accuracy(grids: np.ndarray, small: np.ndarray, tokens: np.ndarray) -> float | None:
    """The fraction of "size" captions whose named cell holds an item of the named size
    (whatever its class); None without "size" captions."""
    hits = []
    for g, m, t in zip(grids, small, tokens, strict=True):
        spec = scenes.parse(scenes.TOKENIZER.decode(t))
        if spec.relation == "size":
            hits.append(g[spec.cell] >= 0 and bool(m[spec.cell]) == (spec.size == "small"))
    return float(np.mean(hits)) if hits else None


def accuracy_by_relation(ok: np.ndarray, relations: list[str], prefix: str) -> dict:
    """``{prefix/all, prefix/<relation>: accuracy}`` over the relation types present."""
    relations = np.asarray(relations)
    out = {f"{prefix}/all": float(np.mean(ok))}
    for rel in scenes.RELATION_TYPES:
        if np.any(relations == rel):
            out[f"{prefix}/{rel}"] = float(np.mean(ok[relations == rel]))
    return out


def nearest_captions(queries: np.ndarray, pool: np.ndarray, chunk: int = 256) -> np.ndarray:
    """Index into ``pool [M, L]`` of the token sequence nearest each of ``queries [N, L]``
    (fewest differing positions; the first on ties)."""
    found = []
    for start in range(0, len(queries), chunk):
        q = queries[start : start + chunk]
        distance = np.sum(q[:, None, :] != pool[None, :, :], axis=-1)  # [n, M]
        found.append(np.argmin(distance, axis=-1))
    return np.concatenate(found) if found else np.zeros(0, int)


def scene_fid(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """Fréchet distance between two sets of `read_scenes` features."""
    return float(fid_from_features(features_a, features_b))

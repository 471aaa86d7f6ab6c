"""Deterministic image -> layout transforms that turn any image set into paired data.

Both take uint8 images ``[N, H, W, C]`` (C = 1 or 3; RGB is reduced to ITU-R 601 luma) and
return uint8 maps ``[N, H, W]``; they are pure functions of each image (no randomness, no
dependence on the other images of the batch), so the same transform applied to a generated
image measures how well it kept the layout it was asked for (``genimg.metrics.layout``).

`semantic_label_map`: four classes that cover every pixel exactly once,

  0 background  pixels within ``BACKGROUND_TOL`` grey levels of the image's border colour (the
                median of its one-pixel frame) that are 4-connected to the frame; dark pixels
                enclosed by the object count as object;
  1 body        object pixels that are neither of the two below;
  2 outline     object pixels with a 4-neighbour in the background (the silhouette, 1 px);
  3 interior    object pixels off the outline where the intensity slope (Sobel of the image
                smoothed with a Gaussian of ``SMOOTH_SIGMA`` px, in grey levels per pixel)
                exceeds ``INTERIOR_SLOPE``: seams, folds, prints, straps. The slope is taken on
                the image with its background filled by the local object intensity, so the
                silhouette itself does not count as interior structure.

On the Fashion-MNIST test set the classes cover 52 / 22 / 11 / 15 % of the pixels.

`edge_map`: a Canny edge detector (Gaussian ``SMOOTH_SIGMA``, Sobel gradients, non-maximum
suppression along four directions, hysteresis between ``EDGE_LOW`` and ``EDGE_HIGH`` grey
levels per pixel with 8-connectivity): 1 on edges, 0 elsewhere.
"""

from __future__ import annotations

import numpy as np
import scipy.ndimage as ndi

LABEL_CLASSES = ("background", "body", "outline", "interior")
EDGE_CLASSES = ("none", "edge")
BACKGROUND_TOL = 12  # grey levels from the border colour that still count as background
SMOOTH_SIGMA = 1.0  # px, the Gaussian before the gradients
INTERIOR_SLOPE = 10.0  # grey levels per pixel
EDGE_LOW, EDGE_HIGH = 20.0, 40.0  # Canny hysteresis thresholds, grey levels per pixel

_LUMA = np.array([0.299, 0.587, 0.114], np.float32)
_FILL_SIGMA = 2.0  # px, the neighbourhood whose object intensity fills the background
# 4-connectivity within each image, none across the batch axis.
_CROSS = np.zeros((3, 3, 3), bool)
_CROSS[1] = ndi.generate_binary_structure(2, 1)
_SQUARE = np.zeros((3, 3, 3), bool)
_SQUARE[1] = True


def _gray(images: np.ndarray) -> np.ndarray:
    """uint8 [N, H, W, C] -> float32 [N, H, W] grey levels 0..255."""
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(
            f"layout transforms take uint8 images [N, H, W, C] with C in (1, 3), got "
            f"{images.dtype} {images.shape}"
        )
    x = images.astype(np.float32)
    return x[..., 0] if x.shape[-1] == 1 else x @ _LUMA


def _slope(x: np.ndarray) -> np.ndarray:
    """Gradient magnitude in grey levels per pixel of each smoothed image [N, H, W]."""
    smooth = ndi.gaussian_filter(x, sigma=(0, SMOOTH_SIGMA, SMOOTH_SIGMA), mode="nearest")

    # Sobel within each image (ndi.sobel would also smooth across the batch axis): a central
    # difference along one axis, [1, 2, 1] along the other; / 8 gives grey levels per pixel.
    def sobel(axis, other):
        d = ndi.correlate1d(smooth, [-1.0, 0.0, 1.0], axis=axis, mode="nearest")
        return ndi.correlate1d(d, [1.0, 2.0, 1.0], axis=other, mode="nearest") / 8.0

    gy, gx = sobel(1, 2), sobel(2, 1)
    return gy, gx, np.hypot(gy, gx)


def background_mask(images: np.ndarray) -> np.ndarray:
    """bool [N, H, W]: near the border colour and 4-connected to the image's frame."""
    x = _gray(images)
    frame = np.concatenate([x[:, 0, :], x[:, -1, :], x[:, :, 0], x[:, :, -1]], axis=1)
    near = np.abs(x - np.median(frame, axis=1)[:, None, None]) <= BACKGROUND_TOL
    components, _ = ndi.label(near, structure=_CROSS)
    edge = np.concatenate(
        [components[:, 0, :], components[:, -1, :], components[:, :, 0], components[:, :, -1]],
        axis=1,
    )
    touching = np.unique(edge)
    return np.isin(components, touching[touching > 0])


def semantic_label_map(images: np.ndarray) -> np.ndarray:
    """uint8 [N, H, W] class ids in ``LABEL_CLASSES`` (see the module docstring)."""
    x = _gray(images)
    background = background_mask(images)
    obj = ~background
    inner = ndi.binary_erosion(obj, structure=_CROSS, border_value=0)
    # Fill the background with the nearby object intensity (normalised convolution), so the
    # step at the silhouette does not look like interior structure.
    sigma = (0, _FILL_SIGMA, _FILL_SIGMA)
    weight = ndi.gaussian_filter(obj.astype(np.float32), sigma, mode="nearest")
    local = ndi.gaussian_filter(x * obj, sigma, mode="nearest") / np.maximum(weight, 1e-6)
    _, _, slope = _slope(np.where(obj, x, local))
    out = np.zeros(x.shape, np.uint8)
    out[obj] = 1
    out[obj & ~inner] = 2
    out[inner & (slope > INTERIOR_SLOPE)] = 3
    return out


def edge_map(images: np.ndarray) -> np.ndarray:
    """uint8 [N, H, W]: 1 on Canny edges, 0 elsewhere (see the module docstring)."""
    gy, gx, mag = _slope(_gray(images))
    # Non-maximum suppression: keep pixels larger than the neighbour behind and not smaller
    # than the one ahead along the gradient direction, quantised to 0, 45, 90 and 135
    # degrees (a tie, as across a sharp step, keeps one pixel of the two).
    angle = np.rad2deg(np.arctan2(gy, gx)) % 180.0
    sector = (((angle + 22.5) // 45.0).astype(np.int64)) % 4  # 0: x, 1: diagonal, 2: y, 3: anti
    padded = np.pad(mag, ((0, 0), (1, 1), (1, 1)))
    h, w = mag.shape[1:]

    def shifted(dy, dx):
        return padded[:, 1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]

    offsets = {0: (0, 1), 1: (1, 1), 2: (1, 0), 3: (1, -1)}
    keep = np.zeros(mag.shape, bool)
    for s, (dy, dx) in offsets.items():
        peak = (mag >= shifted(dy, dx)) & (mag > shifted(-dy, -dx))
        keep |= (sector == s) & peak
    thin = np.where(keep, mag, 0.0)
    strong = thin >= EDGE_HIGH
    candidates = thin >= EDGE_LOW
    components, n = ndi.label(candidates, structure=_SQUARE)  # 8-connected within an image
    has_strong = np.zeros(n + 1, bool)
    has_strong[np.unique(components[strong])] = True
    has_strong[0] = False
    return has_strong[components].astype(np.uint8)


TRANSFORMS = {"labelmap": (semantic_label_map, LABEL_CLASSES), "edges": (edge_map, EDGE_CLASSES)}

"""Resizing images to the FID Inception's 299x299 input, as the two reference FID codes do.

- "clean" (clean-fid's `mode="clean"`): each channel of the image, as float32 values in [0, 255],
  is resized with PIL's bicubic filter in mode "F" (PIL antialiases when downsampling); the
  result is divided by 255. Not clipped: bicubic overshoot stays, as in clean-fid.
- "legacy" (pytorch-fid): `F.interpolate(x, (299, 299), mode="bilinear", align_corners=False)`
  on the [0, 1] float image: half-pixel centres, no antialiasing.

Both return float32 [N, 299, 299, 3] for `genimg.models.inception.FIDInceptionV3`. Grayscale
([N, H, W, 1]) is replicated to three channels. uint8 input is read as [0, 255], float input
must already be in [0, 1].
"""

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from genimg.models.inception import INPUT_SIZE

MODES = ("clean", "legacy")


def _to_unit_float(images) -> np.ndarray:
    """[N, H, W, C] uint8 or float in [0, 1], C in {1, 3} -> float32 [N, H, W, 3] in [0, 1]."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(
            f"Expected images of shape [N, H, W, 1 or 3], got {images.shape}; add a batch or "
            "channel axis (e.g. images[None] or images[..., None])."
        )
    if images.dtype == np.uint8:
        images = images.astype(np.float32) / 255.0
    elif np.issubdtype(images.dtype, np.floating):
        lo, hi = (float(images.min()), float(images.max())) if images.size else (0.0, 0.0)
        if lo < 0.0 or hi > 1.0:
            raise ValueError(
                f"Float images must be in [0, 1], got values in [{lo:.4g}, {hi:.4g}] "
                "(map [-1, 1] outputs with (x + 1) / 2)."
            )
        images = images.astype(np.float32)
    else:
        raise ValueError(f"Expected uint8 or float images, got dtype {images.dtype}.")
    if images.shape[-1] == 1:
        images = np.repeat(images, 3, axis=-1)
    return images


def resize_clean(images: np.ndarray, size: int = INPUT_SIZE) -> np.ndarray:
    """clean-fid's resize of float32 [N, H, W, C] in [0, 1]: PIL bicubic per channel, mode "F"."""
    images = np.asarray(images, np.float32)
    n, _, _, c = images.shape
    out = np.empty((n, size, size, c), np.float32)
    for i in range(n):
        for ch in range(c):
            # A 2-D float32 array becomes a mode "F" image. PIL resizes on the [0, 255] scale, as
            # clean-fid feeds it; the filter is linear, but that scale keeps the rounding the same.
            channel = Image.fromarray(images[i, :, :, ch] * np.float32(255.0))
            out[i, :, :, ch] = np.asarray(channel.resize((size, size), Image.Resampling.BICUBIC))
    return out / np.float32(255.0)


def resize_legacy(images: jax.Array, size: int = INPUT_SIZE) -> jax.Array:
    """pytorch-fid's resize of [N, H, W, C] floats: bilinear, align_corners=False, no antialias.

    Traceable (usable inside jit). Matches torch's `F.interpolate` exactly up to float32
    rounding: both sample at half-pixel centres and clamp at the borders.
    """
    n, _, _, c = images.shape
    return jax.image.resize(
        jnp.asarray(images, jnp.float32), (n, size, size, c), method="bilinear", antialias=False
    )


def resize_for_inception(images, mode: str = "clean") -> np.ndarray:
    """Images -> float32 [N, 299, 299, 3] in [0, 1] for the FID Inception.

    Args:
      images: [N, H, W, 3] or [N, H, W, 1]; uint8 in [0, 255] or float in [0, 1].
      mode: "clean" (clean-fid, PIL bicubic with antialiasing; the recommended default) or
        "legacy" (pytorch-fid, bilinear without antialiasing). Images already 299x299 are
        returned unchanged in both modes.
    """
    if mode not in MODES:
        raise ValueError(f"Unknown resize mode {mode!r}; expected one of {MODES}.")
    images = _to_unit_float(images)
    if images.shape[1:3] == (INPUT_SIZE, INPUT_SIZE):
        return images
    if mode == "clean":
        return resize_clean(images)
    return np.asarray(resize_legacy(images))

"""Image corruptions for denoising autoencoders (Vincent et al. 2008).

Every corruption is a pure function ``(rng, x, ...) -> x_tilde`` on float images
``[B, H, W, C]`` in [0, 1]; pixel-level corruptions hit all channels of a pixel together.
``make_corruption(kind, ...)`` binds the parameters from a config into ``(rng, x) -> x_tilde``.

`blur_jpeg` is the exception: a host-side (numpy, PIL) augmentation of uint8 images, because
JPEG re-encoding has no XLA kernel; the data pipeline applies it to each training batch.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import scipy.fft
import scipy.ndimage
from PIL import Image

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


def blur_jpeg(
    images: np.ndarray,
    rng: np.random.Generator,
    *,
    blur_prob: float = 0.5,
    blur_sigma: float = 3.0,
    jpeg_prob: float = 0.5,
    jpeg_quality: tuple[int, int] = (30, 100),
) -> np.ndarray:
    """The blur + JPEG augmentation of Wang et al. 2020 ("CNN-generated images are surprisingly
    easy to spot... for now"), on uint8 ``[B, H, W, C]`` numpy images, per image: with
    probability ``blur_prob`` a Gaussian blur of sigma ~ U[0, ``blur_sigma``] (per channel,
    reflected borders), then with probability ``jpeg_prob`` a JPEG round trip (PIL) at a
    quality drawn uniformly from the integers of ``jpeg_quality`` (both ends included).

    Deterministic in ``rng``: every image draws its four numbers in a fixed order.
    """
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(
            f"blur_jpeg expects uint8 images [B, H, W, C] with C in (1, 3), got "
            f"{images.dtype} {images.shape}"
        )
    _check_fraction("blur_prob", blur_prob)
    _check_fraction("jpeg_prob", jpeg_prob)
    lo, hi = jpeg_quality
    if not 1 <= lo <= hi <= 100 or blur_sigma < 0:
        raise ValueError(
            f"need 1 <= jpeg_quality[0] <= jpeg_quality[1] <= 100 and blur_sigma >= 0, got "
            f"{tuple(jpeg_quality)} and {blur_sigma}"
        )
    b = images.shape[0]
    blur = rng.random(b) < blur_prob
    sigma = rng.uniform(0.0, blur_sigma, b)
    jpeg = rng.random(b) < jpeg_prob
    quality = rng.integers(lo, hi + 1, b)
    out = images.copy()
    for i in range(b):
        x = out[i]
        if blur[i] and sigma[i] > 0:
            blurred = scipy.ndimage.gaussian_filter(
                x.astype(np.float32), sigma=(sigma[i], sigma[i], 0), mode="reflect"
            )
            x = np.clip(np.rint(blurred), 0, 255).astype(np.uint8)
        if jpeg[i]:
            x = _jpeg_round_trip(x, int(quality[i]))
        out[i] = x
    return out


def _jpeg_round_trip(image: np.ndarray, quality: int) -> np.ndarray:
    """uint8 [H, W, C] -> the same image encoded as JPEG at ``quality`` and decoded (PIL)."""
    gray = image.shape[-1] == 1
    buffer = io.BytesIO()
    Image.fromarray(image[..., 0] if gray else image).save(buffer, "JPEG", quality=quality)
    decoded = np.asarray(Image.open(io.BytesIO(buffer.getvalue())))
    return decoded[..., None] if gray else decoded


# The luminance quantisation table of the JPEG standard (ITU T.81, Annex K), quality 50.
_JPEG_LUMA_TABLE = np.array(
    [
        [16, 11, 10, 16, 24, 40, 51, 61],
        [12, 12, 14, 19, 26, 58, 60, 55],
        [14, 13, 16, 24, 40, 57, 69, 56],
        [14, 17, 22, 29, 51, 87, 80, 62],
        [18, 22, 37, 56, 68, 109, 103, 77],
        [24, 35, 55, 64, 81, 104, 113, 92],
        [49, 64, 78, 87, 103, 121, 120, 101],
        [72, 92, 95, 98, 112, 100, 103, 99],
    ],
    np.float32,
)


def jpeg_table(quality) -> Array:
    """The 8x8 luminance table at ``quality`` (1..100, may be traced), scaled as libjpeg does."""
    q = jnp.clip(jnp.asarray(quality, jnp.float32), 1.0, 100.0)
    scale = jnp.where(q < 50, 5000.0 / q, 200.0 - 2.0 * q)
    return jnp.clip(jnp.floor((_JPEG_LUMA_TABLE * scale + 50.0) / 100.0), 1.0, 255.0)


def jpeg_like(x: Array, quality) -> Array:
    """A differentiable stand-in for a JPEG round trip of ``x`` (float ``[B, H, W, C]`` in
    [0, 1]): every channel is coded like JPEG's luma (level shift, 8x8 block DCT, the standard
    table at ``quality``, rounding, inverse), without chroma subsampling or entropy coding
    (lossless). The rounding passes gradients straight through (Shin & Song 2017), so watermark
    encoders can be trained through it. Sides that are not multiples of 8 are edge-padded,
    as JPEG encoders do, and cropped back."""
    _check_images(x)
    b, h, w, c = x.shape
    ph, pw = -h % 8, -w % 8
    pixels = jnp.pad(x * 255.0 - 128.0, ((0, 0), (0, ph), (0, pw), (0, 0)), mode="edge")
    hb, wb = (h + ph) // 8, (w + pw) // 8
    blocks = pixels.reshape(b, hb, 8, wb, 8, c)
    d = jnp.asarray(scipy.fft.dct(np.eye(8), norm="ortho", axis=0), jnp.float32)
    coef = jnp.einsum("ui,bhiwjc,vj->bhuwvc", d, blocks, d)
    table = jpeg_table(quality)[None, None, :, None, :, None]
    scaled = coef / table
    rounded = scaled + jax.lax.stop_gradient(jnp.round(scaled) - scaled)
    back = jnp.einsum("ui,bhuwvc,vj->bhiwjc", d, rounded * table, d)
    out = (back.reshape(b, h + ph, w + pw, c)[:, :h, :w] + 128.0) / 255.0
    return jnp.clip(out, 0.0, 1.0)

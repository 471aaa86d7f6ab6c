"""An invisible, keyed provenance watermark for small images, in numpy.

The mark is 48 bits: a 16-bit header derived from the key (it makes detection possible without
knowing the payload) and a 32-bit payload (16 bits of the run id's hash, 16 of the model's).

Embedding (spread-transform dither modulation, Chen & Wornell 2001) works on the luma of the
whole saved image, in the orthonormal 2-D DCT:

1. the coefficients whose radial frequency lies in ``BAND`` (cycles per image, so the same
   band at every image size: low-to-mid frequencies survive resizing and JPEG) are projected
   onto 48 orthonormal random directions drawn from the key and the image size;
2. each projection is moved to the nearest point of a dithered lattice of step ``DELTA`` whose
   offset encodes its bit (0 or half a step);
3. the change goes back to pixels (the same change on R, G and B, so colours keep their hue);
   rounding to uint8 and clipping at 0 and 255 disturb the projections, so steps 1-3 repeat
   ``ITERATIONS`` times.

Only the central ``REGION`` of the image carries the mark, so a crop that keeps it (a 90 %
crop does) loses nothing but the mark's position. The change is independent of the image
content (a host-interference-free scheme), so its PSNR cost depends only on the image size.
Decoding needs no original: the region is located under each hypothesis about the received
image (unchanged; resized from another size; cropped from a larger image, at its centre, a
corner or an edge), the 16 header projections are scored against their expected lattice
points, and the best hypothesis wins. The p-value of that score under "no mark" (lattice phases
uniform) is Bonferroni-corrected for the number of hypotheses tried.

Images smaller than ``MIN_SIDE`` pixels carry too few band coefficients for 48 bits; they are
returned unmarked (`embed` says so), and `detect` reports them as too small.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os

import numpy as np
import scipy.fft
import scipy.special  # not scipy.stats: its import fails where torch is blocked
from PIL import Image

HEADER_BITS = 16
PAYLOAD_BITS = 32
NUM_BITS = HEADER_BITS + PAYLOAD_BITS
BAND = (1.0, 9.0)  # radial DCT frequency band, in cycles per marked region
DELTA = 56.0  # lattice step of the projections, in 0..255 pixel units
ITERATIONS = 4
REGION = 0.85  # the mark lives in the central REGION x REGION of the image (crops keep it)
MIN_SIDE = 20  # smaller images are left unmarked (their region has too few coefficients)
DEFAULT_KEY = "genimg-public-provenance-v1"
KEY_ENV = "GENIMG_WATERMARK_KEY"  # a secret key to mark (and check) with instead
P_VALUE_THRESHOLD = 1e-3  # "marked" when the corrected p-value is below this
_LUMA = np.array([0.299, 0.587, 0.114])


def signing_key() -> str:
    """The key new marks are made with: ``$GENIMG_WATERMARK_KEY`` when set, else the public
    ``DEFAULT_KEY``."""
    return os.environ.get(KEY_ENV) or DEFAULT_KEY


def key_id(key: str) -> str:
    """A short public name of a key (the first 8 hex digits of its SHA-256)."""
    return hashlib.sha256(key.encode()).hexdigest()[:8]


def _bits_of(text: str, count: int) -> np.ndarray:
    digest = hashlib.sha256(text.encode()).digest()
    return np.unpackbits(np.frombuffer(digest, np.uint8))[:count].astype(np.int8)


def header_bits(key: str) -> np.ndarray:
    """The 16 header bits of ``key``."""
    return _bits_of("header:" + key, HEADER_BITS)


def payload_bits(run_id: str, model_hash: str) -> np.ndarray:
    """The 32 payload bits: 16 from the run id, 16 from the model hash."""
    return np.concatenate([_bits_of("run:" + run_id, 16), _bits_of("model:" + model_hash, 16)])


@dataclasses.dataclass(frozen=True)
class _Basis:
    mask: np.ndarray  # [H, W] bool: the band's coefficients
    directions: np.ndarray  # [NUM_BITS, N] orthonormal rows
    dither: np.ndarray  # [NUM_BITS] in [0, 1)


def _region(height: int, width: int) -> tuple[slice, slice]:
    """The central region of an image of this size that carries the mark."""
    rh, rw = round(height * REGION), round(width * REGION)
    top, left = (height - rh) // 2, (width - rw) // 2
    return slice(top, top + rh), slice(left, left + rw)


def _basis(key: str, height: int, width: int) -> _Basis | None:
    """The band, directions and dither for a region of ``height`` x ``width`` pixels."""
    u, v = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    radius = np.hypot(u, v)
    mask = (radius >= BAND[0]) & (radius < BAND[1])
    count = int(mask.sum())
    if min(height, width) < round(MIN_SIDE * REGION) or count < NUM_BITS:
        return None
    seed = int.from_bytes(hashlib.sha256(f"{key}|{height}x{width}".encode()).digest()[:8], "big")
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(count, NUM_BITS)))  # [N, NUM_BITS], orthonormal columns
    return _Basis(mask, q.T, rng.uniform(0.0, 1.0, NUM_BITS))


def _luma(image: np.ndarray) -> np.ndarray:
    """float64 [H, W] luma of a uint8 [H, W, C] image (C in 1, 3, 4)."""
    x = image.astype(np.float64)
    return x[..., 0] if x.shape[-1] == 1 else x[..., :3] @ _LUMA


def _check(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] not in (1, 3, 4):
        raise ValueError(
            f"watermark expects a uint8 image [H, W, 1|3|4], got {image.dtype} {image.shape}"
        )
    return image


def embed(image: np.ndarray, payload: np.ndarray, key: str = DEFAULT_KEY) -> np.ndarray | None:
    """``image`` (uint8 [H, W, C]) carrying the header of ``key`` and ``payload`` (32 bits);
    None when the image is too small to carry the mark (see ``MIN_SIDE``)."""
    image = _check(image)
    payload = np.asarray(payload).astype(np.int8).ravel()
    if payload.shape != (PAYLOAD_BITS,):
        raise ValueError(f"the payload must be {PAYLOAD_BITS} bits, got {payload.shape}")
    if min(image.shape[:2]) < MIN_SIDE:
        return None
    rows, cols = _region(*image.shape[:2])
    out = image.copy()
    region = out[rows, cols]  # a view: the loop writes into ``out``
    basis = _basis(key, *region.shape[:2])
    if basis is None:
        return None
    bits = np.concatenate([header_bits(key), payload])
    offset = (basis.dither + 0.5 * bits) * DELTA
    channels = 3 if region.shape[-1] == 4 else region.shape[-1]  # alpha stays as it is
    for _ in range(ITERATIONS):
        coef = scipy.fft.dctn(_luma(region), norm="ortho")
        x = basis.directions @ coef[basis.mask]
        target = np.round((x - offset) / DELTA) * DELTA + offset
        change = np.zeros_like(coef)
        change[basis.mask] = basis.directions.T @ (target - x)
        delta = scipy.fft.idctn(change, norm="ortho")[..., None]
        moved = region[..., :channels].astype(np.float64) + delta
        region[..., :channels] = np.clip(np.round(moved), 0, 255).astype(np.uint8)
    return out


@dataclasses.dataclass(frozen=True)
class Detection:
    """What `detect` found in one image."""

    marked: bool  # corrected p-value below P_VALUE_THRESHOLD
    p_value: float  # of the header score under "no mark", Bonferroni-corrected
    score: float  # header score of the best hypothesis, ~N(0, 1) without a mark
    payload: np.ndarray | None  # the 32 decoded payload bits of the best hypothesis
    hypothesis: str  # how the image was brought back to its original size
    hypotheses: int  # how many were tried
    too_small: bool = False

    def matches(self, payload: np.ndarray) -> float:
        """Fraction of the decoded payload bits that equal ``payload``."""
        if self.payload is None:
            return 0.0
        return float(np.mean(self.payload == np.asarray(payload)))


def _phases(luma: np.ndarray, basis: _Basis) -> np.ndarray:
    """Each projection's position on its lattice, in [0, 1): 0 for bit 0, 0.5 for bit 1."""
    x = basis.directions @ scipy.fft.dctn(luma, norm="ortho")[basis.mask]
    return (x / DELTA - basis.dither) % 1.0


def _header_score(phases: np.ndarray, header: np.ndarray) -> float:
    """sum_i cos(2 pi (phase_i - expected_i)) / sqrt(n / 2): ~N(0, 1) for uniform phases."""
    terms = np.cos(2 * np.pi * (phases[:HEADER_BITS] - 0.5 * header))
    return float(terms.sum() / math.sqrt(HEADER_BITS / 2))


def _candidates(luma: np.ndarray):
    """(name, the marked region's luma) under each hypothesis about what happened to the image:
    nothing, a resize from another size, or a crop of a larger image (placed back at the
    centre, a corner or an edge of the larger canvas)."""
    h, w = luma.shape
    rows, cols = _region(h, w)
    yield "as is", luma[rows, cols]
    image = Image.fromarray(luma.astype(np.float32), mode="F")
    sizes = sorted({max(1, round(h * f)) for f in np.arange(0.86, 1.18, 0.01)} - {h})
    for height in sizes:
        width = max(1, round(w * height / h))
        rows, cols = _region(height, width)
        resized = np.asarray(image.resize((width, height), Image.Resampling.BICUBIC), np.float64)
        yield f"resized from {height}x{width}", resized[rows, cols]
        if height <= h or width <= w:
            continue
        for dy in sorted({0, (height - h) // 2, height - h}):
            for dx in sorted({0, (width - w) // 2, width - w}):
                # The received image sits at (dy, dx) of the original; the region must be
                # inside it.
                top, left = rows.start - dy, cols.start - dx
                bottom, right = rows.stop - dy, cols.stop - dx
                if top < 0 or left < 0 or bottom > h or right > w:
                    continue
                name = f"cropped at ({dy}, {dx}) from {height}x{width}"
                yield name, luma[top:bottom, left:right]


def detect(image: np.ndarray, key: str = DEFAULT_KEY) -> Detection:
    """Look for the mark of ``key`` in a uint8 [H, W, C] image (see the module docstring)."""
    image = _check(image)
    header = header_bits(key)
    best, tried = None, 0
    for name, luma in _candidates(_luma(image)):
        basis = _basis(key, *luma.shape)
        if basis is None:
            continue
        tried += 1
        phases = _phases(luma, basis)
        score = _header_score(phases, header)
        if best is None or score > best[0]:
            best = (score, phases, name)
    if best is None:
        return Detection(False, 1.0, 0.0, None, "too small", 0, too_small=True)
    score, phases, name = best
    p_value = min(1.0, tried * float(scipy.special.ndtr(-score)))  # the normal tail above score
    payload = (np.abs(phases[HEADER_BITS:] - 0.5) < 0.25).astype(np.int8)
    return Detection(p_value < P_VALUE_THRESHOLD, p_value, score, payload, name, tried)


def decode_bits(image: np.ndarray, key: str = DEFAULT_KEY) -> np.ndarray | None:
    """The 48 bits (header + payload) read from ``image`` as it is (no resize or crop search):
    the bit accuracy of a generator's raw output. None when the image is too small."""
    luma = _luma(_check(image))
    rows, cols = _region(*luma.shape)
    basis = _basis(key, *luma[rows, cols].shape)
    if basis is None:
        return None
    return (np.abs(_phases(luma[rows, cols], basis) - 0.5) < 0.25).astype(np.int8)


# ---------------------------------------------------------------------------------------------
# Provenance of the files genimg writes.

TEXT_PREFIX = "genimg:"


@dataclasses.dataclass(frozen=True)
class Provenance:
    """Who made an image: written as PNG text and, unless ``watermark`` is off, as the mark."""

    run_id: str
    family: str
    config_hash: str
    model_hash: str
    key: str = DEFAULT_KEY
    watermark: bool = True

    @property
    def payload(self) -> np.ndarray:
        return payload_bits(self.run_id, self.model_hash)

    def text(self, marked: bool) -> dict[str, str]:
        """The PNG text chunks of an image made under this provenance."""
        return {
            "Software": "genimg",
            "Description": "generated image (genimg)",
            f"{TEXT_PREFIX}generated": "true",
            f"{TEXT_PREFIX}family": self.family,
            f"{TEXT_PREFIX}run_id": self.run_id,
            f"{TEXT_PREFIX}config_hash": self.config_hash,
            f"{TEXT_PREFIX}model_hash": self.model_hash,
            f"{TEXT_PREFIX}watermark": f"key {key_id(self.key)}" if marked else "none",
        }

    def mark(self, image: np.ndarray) -> tuple[np.ndarray, bool]:
        """``(image with the mark, True)``, or the image unchanged and False when the mark is
        off or the image is too small to carry it."""
        if not self.watermark:
            return image, False
        marked = embed(image, self.payload, self.key)
        return (image, False) if marked is None else (marked, True)


# ---------------------------------------------------------------------------------------------
# The decoder as a differentiable function, for marking a generator itself.


def _dct_matrix(n: int) -> np.ndarray:
    """The orthonormal DCT-II matrix: ``dct(x, norm="ortho") == D @ x``."""
    return scipy.fft.dct(np.eye(n), norm="ortho", axis=0)


def soft_bit_loss(images, bits: np.ndarray, key: str = DEFAULT_KEY):
    """Mean over images and bits of ``1 - cos(2 pi (phase - bit / 2))``: 0 when every
    projection of every image sits on the lattice point of its bit (the mark `detect` reads),
    about 1 for unmarked images. ``images``: float ``[N, H, W, C]`` in [0, 1] (a jax array; the
    loss is differentiable in it); ``bits``: the 48 header + payload bits.

    Used to fine-tune a generator so that everything it draws carries the mark (as Stable
    Signature does with a learned decoder; here the decoder is the fixed one above).
    """
    import jax.numpy as jnp  # the numpy-only paths above do not need jax

    h, w = images.shape[1:3]
    rows, cols = _region(h, w)
    rh, rw = rows.stop - rows.start, cols.stop - cols.start
    basis = _basis(key, rh, rw)
    if basis is None:
        raise ValueError(f"images of {h}x{w} are too small to carry the mark")
    pixels = 255.0 * images[:, rows, cols, :]
    luma = pixels[..., 0] if images.shape[-1] == 1 else pixels[..., :3] @ jnp.asarray(_LUMA)
    coef = jnp.einsum("ij,njk,lk->nil", _dct_matrix(rh), luma, _dct_matrix(rw))  # [N, rh, rw]
    x = coef[:, basis.mask] @ jnp.asarray(basis.directions.T)  # [N, NUM_BITS]
    phase = x / DELTA - basis.dither
    target = 0.5 * jnp.asarray(bits, jnp.float32)
    return jnp.mean(1.0 - jnp.cos(2 * jnp.pi * (phase - target)))

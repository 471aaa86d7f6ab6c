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
import io
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
# What the marks are measured against.


def _pil(image):
    return Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)


def _back(pil, channels):
    array = np.asarray(pil)
    return array[..., None] if channels == 1 else array


def attacks(rng: np.random.Generator) -> dict:
    """The attacks the marks are measured under: name -> fn(uint8 [H, W, C]) -> uint8 image
    (PNG round trip, JPEG quality 90 and 75, resize to 90 % and 110 % (bicubic), Gaussian
    noise of std 2/255 drawn from ``rng``, a centred crop keeping 90 % of the area)."""

    def jpeg(quality):
        def fn(image):
            buf = io.BytesIO()
            _pil(image).save(buf, "JPEG", quality=quality)
            return _back(Image.open(io.BytesIO(buf.getvalue())), image.shape[-1])

        return fn

    def png(image):
        buf = io.BytesIO()
        _pil(image).save(buf, "PNG")
        return _back(Image.open(io.BytesIO(buf.getvalue())), image.shape[-1])

    def resize(factor):
        def fn(image):
            h, w = image.shape[:2]
            size = (max(1, round(w * factor)), max(1, round(h * factor)))
            return _back(_pil(image).resize(size, Image.Resampling.BICUBIC), image.shape[-1])

        return fn

    def noise(image):
        noisy = image + rng.normal(0.0, 2.0, image.shape)  # std 2/255 of the range
        return np.clip(np.round(noisy), 0, 255).astype(np.uint8)

    def crop(image):
        h, w = image.shape[:2]
        ch, cw = round(h * 0.9**0.5), round(w * 0.9**0.5)
        top, left = (h - ch) // 2, (w - cw) // 2
        return image[top : top + ch, left : left + cw]

    return {
        "png": png,
        "jpeg90": jpeg(90),
        "jpeg75": jpeg(75),
        "resize0.9": resize(0.9),
        "resize1.1": resize(1.1),
        "noise2": noise,
        "crop90": crop,
    }


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
# The generator mark: a decoder fitted to a data set, that a generator learns to satisfy.

GENERATOR_BAND = 20.0  # the generator mark lives below this radial DCT frequency (of the image)
DECODER_FILE = "watermark_decoder.npz"  # where a Stable Signature run keeps its decoder


def _key_rotation(key: str, n: int) -> np.ndarray:
    """An orthogonal ``[n, n]`` matrix drawn from ``key``."""
    seed = int.from_bytes(hashlib.sha256(f"generator-mark|{key}".encode()).digest()[:8], "big")
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(n, n)))
    return q * np.sign(np.diag(r))


@dataclasses.dataclass(frozen=True)
class SubspaceDecoder:
    """The fixed decoder that Stable Signature fine-tunes a generator against
    (``experiments/stable_signature.py``), fitted to the generator's training images.

    A bit is the sign of a standardised linear projection of the image's luma: the band's
    DCT coefficients (radial frequency in [1, ``GENERATOR_BAND``) cycles per image) projected
    on ``NUM_BITS`` directions, minus their mean on the fitting images, over their std there.
    The directions span the band's ``NUM_BITS`` directions of *least* variance in the data
    (the smallest eigenvectors of the coefficients' covariance), mixed by an orthogonal matrix
    drawn from the key. So on the data's own images every bit is a fair coin (the detector's
    false-positive rate follows from the binomial tail, and is measured), while a generator
    moves the projections by a few of their small stds at a small cost in pixels: an additive,
    content-independent change it can learn (a lattice decoder such as `detect`'s needs a
    content-dependent one and could not be learned, README). It reads images of its own size;
    other sizes are resized to it (bicubic) first.
    """

    mask: np.ndarray  # [H, W] bool: the band's coefficients
    directions: np.ndarray  # [NUM_BITS, N]
    mean: np.ndarray  # [NUM_BITS]
    std: np.ndarray  # [NUM_BITS]
    key_id: str

    @property
    def shape(self) -> tuple[int, int]:
        return self.mask.shape

    def _projections(self, luma: np.ndarray) -> np.ndarray:
        coef = scipy.fft.dctn(luma, axes=(-2, -1), norm="ortho")  # [N, H, W]
        return coef[:, self.mask] @ self.directions.T

    def scores(self, images) -> np.ndarray:
        """Standardised projections ``[N, NUM_BITS]`` of uint8 images ``[N, H, W, C]`` (or a
        list of images of any sizes)."""
        lumas = []
        for image in images:
            luma = _luma(_check(image))
            if luma.shape != self.shape:
                pil = Image.fromarray(luma.astype(np.float32), mode="F")
                size = (self.shape[1], self.shape[0])
                luma = np.asarray(pil.resize(size, Image.Resampling.BICUBIC), np.float64)
            lumas.append(luma)
        return (self._projections(np.stack(lumas)) - self.mean) / self.std

    def soft_scores(self, images):
        """`scores` as a differentiable jax function of float ``images`` ``[N, H, W, C]`` in
        [0, 1] of the decoder's size (what a generator is tuned with)."""
        import jax.numpy as jnp  # the numpy-only paths above do not need jax

        h, w = self.shape
        if tuple(images.shape[1:3]) != (h, w):
            raise ValueError(f"the decoder reads {h}x{w} images, got {tuple(images.shape)}")
        pixels = 255.0 * images
        luma = pixels[..., 0] if images.shape[-1] == 1 else pixels[..., :3] @ jnp.asarray(_LUMA)
        dh, dw = (jnp.asarray(_dct_matrix(n), jnp.float32) for n in (h, w))
        coef = jnp.einsum("ij,njk,lk->nil", dh, luma, dw)
        x = coef[:, self.mask] @ jnp.asarray(self.directions.T, jnp.float32)
        return (x - jnp.asarray(self.mean, jnp.float32)) / jnp.asarray(self.std, jnp.float32)

    def header_p_values(self, scores: np.ndarray, key: str) -> tuple[np.ndarray, np.ndarray]:
        """``(p-values, matches)`` of `scores` ``[N, NUM_BITS]``: how many of the 16 header
        bits of ``key`` each image matches, and the chance of matching that many or more
        without the mark (the binomial tail; p < ``P_VALUE_THRESHOLD`` needs 15 or 16)."""
        if key_id(key) != self.key_id:
            raise ValueError(f"this decoder was fitted for key {self.key_id}, not {key_id(key)}")
        matches = np.sum((scores[:, :HEADER_BITS] > 0) == (header_bits(key) > 0), axis=1)
        return scipy.special.bdtrc(matches - 1, HEADER_BITS, 0.5), matches

    def detected(self, images, key: str = DEFAULT_KEY) -> np.ndarray:
        """bool ``[N]``: which uint8 images (of any sizes) carry the generator mark of ``key``."""
        p_values, _ = self.header_p_values(self.scores(images), key)
        return p_values < P_VALUE_THRESHOLD

    def detect(self, image: np.ndarray, key: str = DEFAULT_KEY) -> Detection:
        """Whether one uint8 image carries the generator mark of ``key`` (`header_p_values`).
        ``score`` is the number of header bits matched."""
        scores = self.scores(np.asarray(image)[None])
        p_values, matches = self.header_p_values(scores, key)
        p_value, bits = float(p_values[0]), (scores[0] > 0).astype(np.int8)
        h, w = np.asarray(image).shape[:2]
        name = "as is" if (h, w) == self.shape else f"resized from {h}x{w}"
        return Detection(
            p_value < P_VALUE_THRESHOLD, p_value, float(matches[0]), bits[HEADER_BITS:], name, 1
        )

    def save(self, path) -> None:
        """Writes the decoder to ``path`` (``.npz``), atomically."""
        tmp = f"{path}.tmp"
        with open(tmp, "wb") as f:
            np.savez(f, mask=self.mask, directions=self.directions, mean=self.mean,
                     std=self.std, key_id=np.asarray(self.key_id))  # fmt: skip
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    @classmethod
    def load(cls, path) -> SubspaceDecoder:
        """The decoder in ``path``: an ``.npz`` written by `save`, or a run folder holding one
        (``DECODER_FILE``); a ``ValueError`` naming the path when there is none."""
        path = os.fspath(path)
        if os.path.isdir(path):
            path = os.path.join(path, DECODER_FILE)
        if not os.path.isfile(path):
            raise ValueError(f"{path}: no watermark decoder (a Stable Signature run writes one)")
        with np.load(path) as f:
            return cls(f["mask"], f["directions"], f["mean"], f["std"], str(f["key_id"]))


def fit_decoder(images: np.ndarray, key: str = DEFAULT_KEY) -> SubspaceDecoder:
    """The `SubspaceDecoder` of ``key`` for uint8 ``images`` ``[N, H, W, C]`` (a few thousand
    of the generator's training images)."""
    images = np.asarray(images)
    if images.ndim != 4 or images.dtype != np.uint8 or len(images) < 2 * NUM_BITS:
        raise ValueError(
            f"fit_decoder needs at least {2 * NUM_BITS} uint8 images [N, H, W, C], got "
            f"{images.dtype} {images.shape}"
        )
    h, w = images.shape[1:3]
    u, v = np.meshgrid(np.arange(h) * (w / h), np.arange(w), indexing="ij")
    radius = np.hypot(u, v)
    mask = (radius >= 1.0) & (radius < GENERATOR_BAND)
    if mask.sum() < 2 * NUM_BITS:
        raise ValueError(f"{h}x{w} images have too few band coefficients for {NUM_BITS} bits")
    lumas = np.stack([_luma(_check(x)) for x in images])
    coef = scipy.fft.dctn(lumas, axes=(-2, -1), norm="ortho")[:, mask]  # [N, count]
    _, vectors = np.linalg.eigh(np.cov(coef, rowvar=False))  # ascending eigenvalues
    directions = (vectors[:, :NUM_BITS] @ _key_rotation(key, NUM_BITS)).T
    projections = coef @ directions.T
    # Saving as uint8 adds rounding noise of variance 1/12 to every unit-norm projection: a
    # data set smoother than that (e.g. upsampled) must not make the bits that sensitive.
    std = np.sqrt(projections.var(0) + 1.0 / 12.0)
    return SubspaceDecoder(mask, directions, projections.mean(0), std, key_id(key))


def _dct_matrix(n: int) -> np.ndarray:
    """The orthonormal DCT-II matrix: ``dct(x, norm="ortho") == D @ x``."""
    return scipy.fft.dct(np.eye(n), norm="ortho", axis=0)

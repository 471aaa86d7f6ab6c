"""Inception resize modes against PIL, float64 NumPy references and torch's interpolate (its
outputs at a seeded subset of pixels stored in tests/data/reference_resize.npz by
tools/make_reference_goldens.py, so no torch is needed here)."""

import numpy as np
import pytest

from genimg.metrics.preprocess import resize_for_inception
from tools import make_reference_goldens as goldens


def _images(shape, seed=0):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _pil_bicubic_weights(n_in: int, n_out: int) -> np.ndarray:
    """[n_out, n_in] float64 weights of PIL's bicubic (a=-0.5), antialiased when downsampling."""

    def cubic(x):
        a, x = -0.5, np.abs(x)
        return np.where(
            x < 1,
            ((a + 2) * x - (a + 3)) * x * x + 1,
            np.where(x < 2, (((x - 5) * x + 8) * x - 4) * a, 0.0),
        )

    scale = n_in / n_out
    filterscale = max(scale, 1.0)  # the kernel is stretched when downsampling
    support = 2.0 * filterscale
    weights = np.zeros((n_out, n_in))
    for i in range(n_out):
        center = (i + 0.5) * scale
        lo = max(int(center - support + 0.5), 0)
        hi = min(int(center + support + 0.5), n_in)
        taps = cubic((np.arange(lo, hi) - center + 0.5) / filterscale)
        weights[i, lo:hi] = taps / taps.sum()
    return weights


def _bilinear_weights(n_in: int, n_out: int) -> np.ndarray:
    """[n_out, n_in] float64 weights of torch's bilinear, align_corners=False, no antialias."""
    src = np.maximum((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0.0)
    i0 = np.floor(src).astype(int)
    i1 = np.minimum(i0 + 1, n_in - 1)
    frac = src - i0
    weights = np.zeros((n_out, n_in))
    np.add.at(weights, (np.arange(n_out), i0), 1 - frac)
    np.add.at(weights, (np.arange(n_out), i1), frac)
    return weights


def _separable(images, weights_fn, size=299):
    x = images.astype(np.float64) / 255.0
    wh = weights_fn(x.shape[1], size)
    ww = weights_fn(x.shape[2], size)
    return np.einsum("oh,nhwc->nowc", wh, np.einsum("nhwc,pw->nhpc", x, ww))


@pytest.mark.parametrize("shape", [(2, 37, 53, 3), (1, 400, 512, 3)])
def test_clean_matches_direct_pil(shape):
    from PIL import Image

    images = _images(shape)
    out = resize_for_inception(images, mode="clean")
    assert out.shape == (shape[0], 299, 299, 3) and out.dtype == np.float32
    for n in range(shape[0]):
        for c in range(3):
            channel = Image.fromarray(images[n, :, :, c].astype(np.float32), mode="F")
            expected = np.asarray(channel.resize((299, 299), Image.BICUBIC)) / 255.0
            np.testing.assert_allclose(out[n, :, :, c], expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("shape", [(2, 37, 53, 3), (1, 400, 512, 3)])
def test_clean_is_antialiased_bicubic(shape):
    """What "clean" means, independently of PIL: separable a=-0.5 bicubic, stretched to
    antialias when downsampling, weights normalised (float64 reference)."""
    images = _images(shape, seed=1)
    out = resize_for_inception(images, mode="clean")
    np.testing.assert_allclose(out, _separable(images, _pil_bicubic_weights), atol=2e-6)


@pytest.mark.parametrize("shape", [(2, 37, 53, 3), (1, 400, 512, 3), (1, 299, 100, 1)])
def test_legacy_matches_bilinear_reference(shape):
    images = _images(shape, seed=2)
    out = resize_for_inception(images, mode="legacy")
    expected = _separable(np.repeat(images, 3 // shape[-1], axis=-1), _bilinear_weights)
    # float32 sample positions (in jax and in torch) put up to ~6e-5 px of rounding (one ulp at
    # 512) into the weights; torch itself is matched to 1e-6 below.
    np.testing.assert_allclose(out, expected, atol=5e-5)


@pytest.mark.parametrize("shape", goldens.RESIZE_SHAPES)
def test_legacy_matches_torch_interpolate(shape):
    stored = goldens.load(goldens.RESIZE_FILE)
    key = goldens.resize_key(shape)
    index, expected = stored[f"{key}/index"], stored[f"{key}/value"]
    assert len(index) > goldens.RESIZE_PIXELS  # the random pixels and the corners
    out = resize_for_inception(goldens.resize_images(shape), mode="legacy")
    np.testing.assert_allclose(out[tuple(index.T)], expected, rtol=0, atol=1e-6)


def test_modes_differ_on_high_frequencies():
    # 1-pixel stripes, 897 -> 299 (3x): bilinear samples single pixels (aliasing), bicubic
    # with antialiasing averages them out.
    stripes = np.zeros((1, 897, 897, 1), np.uint8)
    stripes[:, :, 1::3] = 255
    legacy = resize_for_inception(stripes, mode="legacy")
    clean = resize_for_inception(stripes, mode="clean")
    # Every bilinear sample lands on a stripe: a pattern of mean 1/3 comes out all white.
    np.testing.assert_allclose(legacy, 1.0, atol=1e-6)
    assert clean.std() < 0.05 and abs(float(clean.mean()) - 1 / 3) < 0.02


def test_input_conventions():
    images = _images((2, 40, 30, 3), seed=4)
    for mode in ("clean", "legacy"):
        from_uint8 = resize_for_inception(images, mode=mode)
        from_float = resize_for_inception(images.astype(np.float64) / 255.0, mode=mode)
        np.testing.assert_allclose(from_uint8, from_float, atol=1e-6)
        gray = resize_for_inception(images[..., :1], mode=mode)
        rgb = resize_for_inception(np.repeat(images[..., :1], 3, axis=-1), mode=mode)
        np.testing.assert_array_equal(gray, rgb)
    already = _images((1, 299, 299, 3), seed=5)
    np.testing.assert_array_equal(resize_for_inception(already), already / np.float32(255.0))


@pytest.mark.parametrize(
    "images, mode, match",
    [
        (np.zeros((2, 32, 32, 3), np.uint8), "bicubic", "Unknown resize mode"),
        (np.zeros((32, 32, 3), np.uint8), "clean", r"\[N, H, W, 1 or 3\]"),
        (np.zeros((2, 32, 32, 4), np.uint8), "clean", r"\[N, H, W, 1 or 3\]"),
        (np.full((2, 32, 32, 3), -1.0), "legacy", r"\[0, 1\]"),
        (np.full((2, 32, 32, 3), 255.0), "clean", r"\[0, 1\]"),
        (np.zeros((2, 32, 32, 3), np.int32), "clean", "uint8 or float"),
    ],
)
def test_bad_input_is_rejected(images, mode, match):
    with pytest.raises(ValueError, match=match):
        resize_for_inception(images, mode=mode)

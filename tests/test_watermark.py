"""The provenance watermark: round trips at every supported size and channel count, nothing
found in unmarked images or under another key, and the sizes it refuses."""

import io

import numpy as np
import pytest
from PIL import Image

from genimg import watermark as wm


def _image(size, channels, seed):
    """A smooth random picture with a dark border, like a generated garment or a grid."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, (6, 6, channels)).astype(np.float32)
    big = np.stack(
        [
            np.asarray(Image.fromarray(coarse[..., c]).resize((size, size), Image.BICUBIC))
            for c in range(channels)
        ],
        axis=-1,
    )
    return np.clip(big, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("size", [20, 28, 32, 64, 242])
@pytest.mark.parametrize("channels", [1, 3, 4])
def test_round_trip(size, channels):
    image = _image(size, channels, seed=size + channels)
    payload = wm.payload_bits(f"run-{size}", "model")
    marked = wm.embed(image, payload)
    assert marked.shape == image.shape and marked.dtype == np.uint8
    if channels == 4:
        np.testing.assert_array_equal(marked[..., 3], image[..., 3])  # alpha untouched
    found = wm.detect(marked)
    assert found.marked and found.p_value < 1e-4 and found.hypothesis == "as is"
    np.testing.assert_array_equal(found.payload, payload)
    psnr = 10 * np.log10(255**2 / np.mean((marked.astype(float) - image) ** 2))
    assert psnr > 30, psnr


def test_survives_a_png_file_and_a_jpeg_round_trip():
    image = _image(28, 1, seed=1)
    payload = wm.payload_bits("run", "model")
    marked = wm.embed(image, payload)
    for fmt, kwargs in (("PNG", {}), ("JPEG", {"quality": 90})):
        buf = io.BytesIO()
        Image.fromarray(marked[..., 0]).save(buf, fmt, **kwargs)
        back = np.asarray(Image.open(io.BytesIO(buf.getvalue())))[..., None]
        found = wm.detect(back)
        assert found.marked and found.matches(payload) >= 0.95, (fmt, found)


def test_unmarked_images_and_other_keys_are_not_detected():
    images = [_image(28, c, seed=100 + i) for i, c in enumerate([1, 3] * 10)]
    scores = [wm.detect(im).score for im in images]
    assert not any(wm.detect(im).marked for im in images)
    assert abs(np.mean(scores)) < 2.5  # the score's null has mean ~0 per hypothesis
    marked = wm.embed(images[0], wm.payload_bits("a", "b"), key="secret-one")
    assert wm.detect(marked, key="secret-one").marked
    other = wm.detect(marked, key="secret-two")
    assert not other.marked and other.p_value > 1e-3


def test_crop_and_resize_are_searched():
    image = _image(64, 3, seed=7)
    payload = wm.payload_bits("run", "model")
    marked = wm.embed(image, payload)
    cropped = marked[3 : 64 - 3, 3 : 64 - 3]  # a centred 90 % crop
    found = wm.detect(cropped)
    assert found.marked and found.matches(payload) == 1.0 and "cropped" in found.hypothesis
    smaller = np.asarray(Image.fromarray(marked).resize((58, 58), Image.BICUBIC))
    found = wm.detect(smaller)
    assert found.marked and found.matches(payload) > 0.9 and "resized" in found.hypothesis


def test_too_small_and_bad_input():
    tiny = _image(16, 1, seed=0)
    assert wm.embed(tiny, wm.payload_bits("r", "m")) is None
    assert wm.detect(tiny).too_small and not wm.detect(tiny).marked
    with pytest.raises(ValueError, match="32 bits"):
        wm.embed(_image(28, 1, 0), np.zeros(8))
    with pytest.raises(ValueError, match="uint8 image"):
        wm.embed(np.zeros((28, 28)), wm.payload_bits("r", "m"))
    assert wm.key_id("k") == wm.key_id("k") != wm.key_id("k2")


@pytest.fixture(scope="module")
def digits28():
    from genimg.data import load

    return load("digits", "train", 28).images, load("digits", "test", 28).images


def _dct_reference(n):
    """The orthonormal DCT-II matrix from its formula, in float64."""
    k, i = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    d = np.sqrt(2.0 / n) * np.cos(np.pi * (2 * i + 1) * k / (2 * n))
    d[0] /= np.sqrt(2.0)
    return d


def plant(decoder, image, bits, strength=6.0):
    """``image`` changed so that each bit's score is ``+-strength``: the change a generator
    learns (on a lifted copy of the image, so that clipping at 0 does not cut it)."""
    lifted = (image.astype(np.float64) * 0.6 + 50.0).astype(np.uint8)
    target = (2.0 * np.asarray(bits) - 1.0) * strength
    change = np.zeros(decoder.shape)
    change[decoder.mask] = decoder.directions.T @ (
        (target - decoder.scores(lifted[None])[0]) * decoder.std
    )
    d = _dct_reference(decoder.shape[0])
    moved = lifted[..., 0] + d.T @ change @ d
    assert moved.min() > 0 and moved.max() < 255
    return lifted, np.round(moved).astype(np.uint8)[..., None]


def test_subspace_decoder_against_a_float64_reference(digits28):
    import jax.numpy as jnp

    train, test = digits28
    decoder = wm.fit_decoder(train[:1000])
    assert decoder.shape == (28, 28) and decoder.key_id == wm.key_id(wm.DEFAULT_KEY)
    np.testing.assert_allclose(decoder.directions @ decoder.directions.T, np.eye(48), atol=1e-9)
    # Scores: the DCT from its formula, the band, the projections, standardised.
    d = _dct_reference(28)
    coef = np.einsum("ij,njk,lk->nil", d, test[:50, ..., 0].astype(np.float64), d)
    expected = (coef[:, decoder.mask] @ decoder.directions.T - decoder.mean) / decoder.std
    np.testing.assert_allclose(decoder.scores(test[:50]), expected, atol=1e-8)
    soft = decoder.soft_scores(jnp.asarray(test[:50], jnp.float32) / 255.0)
    np.testing.assert_allclose(np.asarray(soft), expected, atol=2e-3)
    # The directions are the band's least-variance ones: projections of real images vary far
    # less along them than along random directions of the band.
    rng = np.random.default_rng(0)
    random_dirs, _ = np.linalg.qr(rng.normal(size=(int(decoder.mask.sum()), 48)))
    train_coef = np.einsum("ij,njk,lk->nil", d, train[:1000, ..., 0].astype(np.float64), d)
    band = train_coef[:, decoder.mask]
    assert np.median(decoder.std) < 0.2 * np.median((band @ random_dirs).std(0))
    # Unseen real images: every bit a fair coin, and (almost) never a false detection.
    bits = decoder.scores(test) > 0
    assert np.all(np.abs(bits.mean(0) - 0.5) < 0.2)
    one_by_one = np.array([decoder.detect(x).marked for x in test])
    assert np.mean(one_by_one) <= 0.01
    np.testing.assert_array_equal(decoder.detected(test), one_by_one)  # the batched path
    # Another key: other directions.
    other = wm.fit_decoder(train[:1000], "another key")
    assert np.abs(other.directions @ decoder.directions.T).max() < 0.9


def test_subspace_decoder_reads_a_planted_mark_and_round_trips(digits28, tmp_path):
    train, test = digits28
    decoder = wm.fit_decoder(train[:1000])
    bits = np.concatenate([wm.header_bits(wm.DEFAULT_KEY), wm.payload_bits("r", "m")])
    lifted, marked = plant(decoder, test[0], bits)
    found = decoder.detect(marked)
    assert found.marked and found.p_value < 1e-4 and found.score == 16
    assert found.matches(wm.payload_bits("r", "m")) == 1.0 and found.hypothesis == "as is"
    assert not decoder.detect(test[0]).marked and not decoder.detect(lifted).marked
    with pytest.raises(ValueError, match="fitted for key"):
        decoder.detect(marked, "another key")
    decoder.save(tmp_path / "d.npz")
    loaded = wm.SubspaceDecoder.load(tmp_path / "d.npz")
    np.testing.assert_array_equal(loaded.scores(test[:5]), decoder.scores(test[:5]))
    assert loaded.key_id == decoder.key_id
    (tmp_path / "run").mkdir()
    decoder.save(tmp_path / "run" / wm.DECODER_FILE)
    assert wm.SubspaceDecoder.load(tmp_path / "run").key_id == decoder.key_id
    with pytest.raises(ValueError, match="no watermark decoder"):
        wm.SubspaceDecoder.load(tmp_path / "missing")
    with pytest.raises(ValueError, match="at least 96"):
        wm.fit_decoder(train[:10])

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


def test_soft_bit_loss_is_the_decoder_made_differentiable():
    import jax
    import jax.numpy as jnp
    import optax

    bits = np.concatenate([wm.header_bits(wm.DEFAULT_KEY), wm.payload_bits("r", "m")])
    image = jnp.asarray(_image(32, 1, seed=5)[None] / 255.0, jnp.float32)
    marked = wm.embed(_image(32, 1, seed=5), wm.payload_bits("r", "m"))
    assert float(wm.soft_bit_loss(jnp.asarray(marked[None] / 255.0), bits)) < 0.05
    assert float(wm.soft_bit_loss(image, bits)) > 0.5
    # Descending the loss in the pixels alone plants a mark that detect() reads.
    grad = jax.jit(jax.grad(lambda x: wm.soft_bit_loss(x, bits)))
    tx = optax.adam(1e-3)
    x, opt_state = image, tx.init(image)
    for _ in range(100):
        updates, opt_state = tx.update(grad(x), opt_state)
        x = jnp.clip(optax.apply_updates(x, updates), 0.0, 1.0)
    found = wm.detect(np.round(np.asarray(x[0]) * 255).astype(np.uint8))
    assert found.marked and found.matches(wm.payload_bits("r", "m")) >= 0.9

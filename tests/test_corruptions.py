"""Denoising corruptions: each one's statistics are what the config asks for."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genimg import corruptions


def _gray(b=16, h=28, w=28, c=1):
    return jnp.full((b, h, w, c), 0.5, jnp.float32)


def test_gaussian_noise_std():
    x = _gray()
    y = corruptions.gaussian_noise(jax.random.key(0), x, std=0.3, clip=False)
    d = np.asarray(y - x, np.float64)
    assert abs(d.mean()) < 0.01 and d.std() == pytest.approx(0.3, rel=0.02)
    y = corruptions.make_corruption("gaussian", noise_std=2.0)(jax.random.key(0), x)
    assert float(y.min()) == 0.0 and float(y.max()) == 1.0  # clipped by default


def test_salt_and_pepper_fraction_and_ratio():
    x = _gray(c=3)
    y = np.asarray(corruptions.salt_and_pepper(jax.random.key(1), x, fraction=0.2))
    hit = np.any(y != 0.5, axis=-1)
    assert hit.mean() == pytest.approx(0.2, abs=0.01)
    assert (y[hit] == 1.0).mean() == pytest.approx(0.5, abs=0.03)
    # All channels of a pixel are hit together.
    assert np.all((y[hit] == 0.0).all(-1) | (y[hit] == 1.0).all(-1))


def test_pixel_mask_exact_fraction_uniform_positions():
    x = jnp.ones((64, 8, 8, 2))
    y = np.asarray(corruptions.pixel_mask(jax.random.key(2), x, fraction=0.25))
    masked = (y == 0).all(-1)
    assert (masked.reshape(64, -1).sum(1) == 16).all()  # exactly round(0.25 * 64) per image
    per_position = masked.mean(0)  # ~0.25 everywhere: no positional bias
    assert abs(per_position.mean() - 0.25) < 1e-9 and per_position.std() < 0.08


def test_block_mask_is_one_square_of_the_configured_size():
    x = jnp.ones((32, 12, 10, 1))
    y = np.asarray(corruptions.make_corruption("block_mask", block_size=4)(jax.random.key(3), x))
    for img in y[..., 0] == 0:
        rows, cols = np.nonzero(img)
        assert img.sum() == 16 and np.ptp(rows) == 3 and np.ptp(cols) == 3
    tops = [np.nonzero(img)[0].min() for img in (y[..., 0] == 0)]
    assert len(set(tops)) > 3  # placed at random
    with pytest.raises(ValueError, match="block size"):
        corruptions.block_mask(jax.random.key(0), x, size=11)


def test_bad_config_errors():
    with pytest.raises(ValueError, match="unknown corruption"):
        corruptions.make_corruption("blur")
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        corruptions.make_corruption("pixel_mask", fraction=1.5)
    with pytest.raises(ValueError, match="images"):
        corruptions.gaussian_noise(jax.random.key(0), jnp.ones((4, 4)), 0.1)
    x = _gray(b=2)
    assert corruptions.make_corruption("none")(jax.random.key(0), x) is x


@pytest.mark.parametrize("quality", [50, 75, 90])
def test_jpeg_like_matches_pil_jpeg(quality):
    import io

    from PIL import Image

    from genimg.data import load

    images = load("digits", "test", 28).images[:16]
    ours = np.asarray(corruptions.jpeg_like(jnp.asarray(images, jnp.float32) / 255.0, quality))
    pil = []
    for image in images:
        buf = io.BytesIO()
        Image.fromarray(image[..., 0]).save(buf, "JPEG", quality=quality)
        pil.append(np.asarray(Image.open(buf)))
    pil = np.stack(pil)[..., None].astype(np.float64)
    error = np.abs(ours * 255.0 - pil).mean()
    # PIL's integer DCT and rounding differ by a fraction of a level; JPEG itself by several.
    assert error < 0.6 < np.abs(pil - images).mean(), (error, np.abs(pil - images).mean())
    # Differentiable: rounding passes gradients straight through.
    grad = jax.grad(lambda x: corruptions.jpeg_like(x, quality).sum())(jnp.full((1, 8, 8, 1), 0.5))
    np.testing.assert_allclose(np.asarray(grad), 1.0, atol=1e-5)

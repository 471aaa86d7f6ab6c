"""Reconstruction metrics: MSE / PSNR against numpy, SSIM sanity, the evaluation loop."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genimg import corruptions
from genimg.metrics.reconstruction import evaluate_reconstruction, reconstruction_scores


def test_scores_match_numpy_and_ssim_is_sane():
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(3, 16, 16, 1))
    y = np.clip(x + rng.normal(scale=0.1, size=x.shape), 0, 1)
    s = reconstruction_scores(jnp.asarray(x), jnp.asarray(y))
    mse = ((x - y) ** 2).mean(axis=(1, 2, 3))
    np.testing.assert_allclose(s["mse"], mse, rtol=1e-5)
    np.testing.assert_allclose(s["psnr"], -10 * np.log10(mse), rtol=1e-5)
    same = reconstruction_scores(jnp.asarray(x), jnp.asarray(x))
    np.testing.assert_allclose(same["ssim"], 1.0, atol=1e-5)
    z = np.clip(x + rng.normal(scale=0.4, size=x.shape), 0, 1)
    worse = reconstruction_scores(jnp.asarray(x), jnp.asarray(z))
    assert (np.asarray(worse["ssim"]) < np.asarray(s["ssim"])).all()
    with pytest.raises(ValueError, match="same shape"):
        reconstruction_scores(jnp.zeros((1, 4, 4, 1)), jnp.zeros((1, 4, 4, 3)))


def test_evaluate_reconstruction_scores_against_the_clean_image():
    x = jnp.asarray(np.random.default_rng(1).uniform(size=(4, 16, 16, 1)), jnp.float32)
    batches = [x[:3], x[3:]]  # ragged last batch
    ident = evaluate_reconstruction(lambda im: im, batches)
    assert ident["mse"] == 0.0 and ident["num_images"] == 4
    # The identity "denoiser" scores exactly the corruption's damage against the clean image.
    corrupt = corruptions.make_corruption("pixel_mask", fraction=0.5)
    noisy = evaluate_reconstruction(lambda im: im, batches, corrupt, jax.random.key(0))
    per_image = [
        jnp.mean((corrupt(jax.random.fold_in(jax.random.key(0), i), b) - b) ** 2, axis=(1, 2, 3))
        for i, b in enumerate(batches)
    ]
    ref = float(jnp.concatenate(per_image).mean())
    assert noisy["mse"] == pytest.approx(ref, rel=1e-5) and noisy["mse"] > 0.05

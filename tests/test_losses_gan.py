"""GAN losses and penalties against float64 numpy references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genimg import losses

rng = np.random.default_rng(0)
R = rng.normal(size=16) * 2
F = rng.normal(size=16) * 2


def _log_sigmoid(x):
    return -np.log1p(np.exp(-x))


D_REF = {
    "minimax": lambda r, f: -np.mean(_log_sigmoid(r)) - np.mean(np.log(1 - 1 / (1 + np.exp(-f)))),
    "nonsaturating": lambda r, f: (
        -np.mean(_log_sigmoid(r)) - np.mean(np.log(1 - 1 / (1 + np.exp(-f))))
    ),
    "hinge": lambda r, f: np.mean(np.maximum(0, 1 - r)) + np.mean(np.maximum(0, 1 + f)),
    "lsgan": lambda r, f: 0.5 * np.mean((r - 1) ** 2) + 0.5 * np.mean(f**2),
    "wgan": lambda r, f: np.mean(f) - np.mean(r),
}
G_REF = {
    "minimax": lambda f: np.mean(np.log(1 - 1 / (1 + np.exp(-f)))),
    "nonsaturating": lambda f: -np.mean(_log_sigmoid(f)),
    "hinge": lambda f: -np.mean(f),
    "lsgan": lambda f: 0.5 * np.mean((f - 1) ** 2),
    "wgan": lambda f: -np.mean(f),
}


@pytest.mark.parametrize("kind", losses.GAN_LOSSES)
def test_gan_losses_match_numpy(kind):
    d, parts = losses.gan_d_loss(kind, jnp.asarray(R, jnp.float32), jnp.asarray(F, jnp.float32))
    np.testing.assert_allclose(float(d), D_REF[kind](R, F), rtol=1e-5)
    np.testing.assert_allclose(float(parts["d_loss_real"] + parts["d_loss_fake"]), float(d))
    g, _ = losses.gan_g_loss(kind, jnp.asarray(F, jnp.float32))
    np.testing.assert_allclose(float(g), G_REF[kind](F), rtol=1e-5)


def test_cross_entropy_losses_are_stable_for_large_logits():
    d, _ = losses.gan_d_loss("nonsaturating", jnp.array([100.0]), jnp.array([-100.0]))
    g, _ = losses.gan_g_loss("nonsaturating", jnp.array([-100.0]))
    assert float(d) < 1e-30 and np.isclose(float(g), 100.0)


def test_unknown_loss_is_rejected():
    with pytest.raises(ValueError, match="unknown GAN loss 'wgan_gp'"):
        losses.gan_d_loss("wgan_gp", jnp.zeros(1), jnp.zeros(1))


def test_gradient_penalty_of_a_linear_critic():
    """D(x) = <w, x>: the gradient is w everywhere, so GP = (||w|| - 1)^2."""
    w = rng.normal(size=(2, 3, 1))
    d_fn = lambda x: jnp.sum(x * w, axis=(1, 2, 3))
    real = jnp.asarray(rng.normal(size=(4, 2, 3, 1)), jnp.float32)
    fake = jnp.asarray(rng.normal(size=(4, 2, 3, 1)), jnp.float32)
    gp = losses.gradient_penalty(d_fn, real, fake, jax.random.key(0))
    np.testing.assert_allclose(float(gp), (np.linalg.norm(w) - 1) ** 2, rtol=1e-5)


def test_gradient_penalty_interpolates_between_real_and_fake():
    """D(x) = sum(x^2)/2 has gradient x: GP uses ||eps*real + (1-eps)*fake||."""
    real = jnp.ones((3, 2, 2, 1))
    fake = jnp.zeros((3, 2, 2, 1))
    key = jax.random.key(1)
    eps = np.asarray(jax.random.uniform(key, (3, 1, 1, 1)))
    gp = losses.gradient_penalty(lambda x: 0.5 * jnp.sum(x**2, axis=(1, 2, 3)), real, fake, key)
    expected = np.mean((eps.reshape(3) * 2.0 - 1.0) ** 2)  # ||eps * ones(4)|| = 2 eps
    np.testing.assert_allclose(float(gp), expected, rtol=1e-5)


def test_r1_penalty():
    """D(x) = sum(x^2) has gradient 2x: R1 = mean_i sum(4 x_i^2)."""
    x = rng.normal(size=(5, 3, 3, 2))
    r1 = losses.r1_penalty(lambda v: jnp.sum(v**2, axis=(1, 2, 3)), jnp.asarray(x, jnp.float32))
    np.testing.assert_allclose(float(r1), np.mean(np.sum(4 * x**2, axis=(1, 2, 3))), rtol=1e-5)

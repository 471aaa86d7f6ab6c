"""VAE modules and the VAE objectives in genimg.losses, against float64 numpy references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genimg import losses
from genimg.models.vae import make_vae


def _np_softplus(x):
    return np.logaddexp(0.0, x)


def numpy_init(model, *args, scale=0.1, seed=0):
    """Parameters of the right shapes drawn on the host: avoids compiling the initialisers."""
    shapes = jax.eval_shape(model.init, jax.random.key(0), *args)
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda s: jnp.asarray(scale * rng.normal(size=s.shape), s.dtype), shapes)


def test_conv_vae_is_the_benchmark_network():
    """Shapes and parameter count of torch_peer.py spec 3 (191,265 parameters at latent 16)."""
    model = make_vae("conv", (28, 28, 1), 16, 1)
    x = jnp.zeros((2, 28, 28, 1))
    params = numpy_init(model, x, jax.random.key(1))
    shapes = jax.tree.map(lambda a: a.shape, params["params"])
    assert shapes["encoder"]["Conv_0"]["kernel"] == (3, 3, 1, 32)
    assert shapes["encoder"]["Conv_1"]["kernel"] == (3, 3, 32, 64)
    assert shapes["encoder"]["Dense_0"]["kernel"] == (3136, 32)
    assert shapes["decoder"]["Dense_0"]["kernel"] == (16, 3136)
    assert shapes["decoder"]["ConvTranspose_0"]["kernel"] == (3, 3, 64, 32)
    assert shapes["decoder"]["ConvTranspose_1"]["kernel"] == (3, 3, 32, 1)
    assert sum(a.size for a in jax.tree.leaves(params)) == 191_265
    out, mean, logvar = jax.jit(model.apply)(params, x, jax.random.key(1))
    assert out.shape == (2, 28, 28, 1) and mean.shape == logvar.shape == (2, 16)


def test_mlp_cvae_shapes_and_label_dependence():
    model = make_vae("mlp", (8, 8, 1), 3, 2, num_classes=4, label_embed_dim=5, hidden=(16,))
    x = jax.random.uniform(jax.random.key(0), (3, 8, 8, 1))
    labels = jnp.array([0, 1, 3])
    params = numpy_init(model, x, jax.random.key(1), labels)
    apply = jax.jit(model.apply)
    out, mean, _ = apply(params, x, jax.random.key(1), labels)
    assert out.shape == (3, 8, 8, 2) and mean.shape == (3, 3)
    out2, mean2, _ = apply(params, x, jax.random.key(1), jnp.array([2, 2, 2]))
    assert not np.allclose(mean, mean2) and not np.allclose(out, out2)
    with pytest.raises(ValueError, match="needs labels"):
        model.apply(params, x, jax.random.key(1))


def test_bad_image_size_is_a_clear_error():
    model = make_vae("conv", (30, 30, 1), 4, 1)
    with pytest.raises(ValueError, match="not divisible"):
        jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 30, 30, 1)), jax.random.key(1))
    with pytest.raises(ValueError, match="unknown architecture"):
        make_vae("resnet", (28, 28, 1), 4, 1)


def test_gaussian_kl_matches_numpy_float64():
    rng = np.random.default_rng(0)
    mean, logvar = rng.normal(size=(5, 7)), rng.normal(size=(5, 7))
    var = np.exp(logvar)
    # KL(N(m, v) || N(0, 1)) = 0.5 * (v + m^2 - 1 - log v), summed over dimensions.
    ref = 0.5 * np.sum(var + mean**2 - 1.0 - logvar, axis=-1)
    got = losses.gaussian_kl(jnp.asarray(mean, jnp.float32), jnp.asarray(logvar, jnp.float32))
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
    # ... and against the Monte-Carlo mean of log q - log p under q, in float64.
    z = mean + np.sqrt(var) * rng.normal(size=(200_000, 5, 7))
    log_q = -0.5 * np.sum((z - mean) ** 2 / var + logvar + np.log(2 * np.pi), -1)
    log_p = -0.5 * np.sum(z**2 + np.log(2 * np.pi), -1)
    np.testing.assert_allclose(np.mean(log_q - log_p, 0), ref, rtol=0.02, atol=0.02)


def test_log_likelihoods_match_numpy():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(2, 3, 4, 4, 1))
    x = (rng.uniform(size=(3, 4, 4, 1)) > 0.5).astype(np.float64)
    p = 1.0 / (1.0 + np.exp(-logits))
    ref = np.sum(x * np.log(p) + (1 - x) * np.log(1 - p), axis=(-3, -2, -1))
    got = losses.log_likelihood("bernoulli", jnp.asarray(logits, jnp.float32), x)
    np.testing.assert_allclose(got, ref, rtol=1e-5)

    mean = rng.uniform(size=(3, 4, 4, 1))
    ref = np.sum(-0.5 * ((x - mean) / 0.2) ** 2 - np.log(0.2) - 0.5 * np.log(2 * np.pi), (1, 2, 3))
    got = losses.log_likelihood("gaussian_fixed", jnp.asarray(mean, jnp.float32), x, scale=0.2)
    np.testing.assert_allclose(got, ref, rtol=1e-5)

    raw = rng.normal(size=(3, 4, 4, 1))
    log_s = -5.0 + _np_softplus(raw + 5.0)
    ref = np.sum(
        -0.5 * ((x - mean) / np.exp(log_s)) ** 2 - log_s - 0.5 * np.log(2 * np.pi), (1, 2, 3)
    )
    out = jnp.asarray(np.concatenate([mean, raw], -1), jnp.float32)
    got = losses.log_likelihood("gaussian_learned", out, x)
    np.testing.assert_allclose(got, ref, rtol=1e-4)
    with pytest.raises(ValueError, match="unknown likelihood"):
        losses.log_likelihood("poisson", out, x)


def test_kl_warmup_and_vae_loss():
    assert float(losses.kl_weight(0, beta=4.0, warmup_steps=100)) == 0.0
    assert float(losses.kl_weight(50, beta=4.0, warmup_steps=100)) == pytest.approx(2.0)
    assert float(losses.kl_weight(500, beta=4.0, warmup_steps=100)) == pytest.approx(4.0)
    assert float(losses.kl_weight(0, beta=4.0)) == 4.0
    log_lik, kl = jnp.array([-10.0, -20.0]), jnp.array([1.0, 3.0])
    loss, parts = losses.vae_loss(log_lik, kl, beta=2.0)
    assert float(loss) == pytest.approx(19.0)  # mean(2 * kl - log_lik) = mean(12, 26)
    assert float(parts["elbo"]) == pytest.approx(-17.0)


def test_reparameterised_gradient_matches_finite_differences():
    """d/d(mean, logvar) of a single-sample negative ELBO with fixed noise, in float64."""
    with jax.enable_x64(True):
        rng = np.random.default_rng(2)
        x = (rng.uniform(size=(2, 2, 2, 1)) > 0.5).astype(np.float64)
        w = rng.normal(size=(3, 4))  # a linear decoder z [3] -> 4 logits
        eps = rng.normal(size=(2, 3))

        @jax.jit
        def neg_elbo(mean, logvar):
            z = mean + jnp.exp(0.5 * logvar) * eps
            logits = (z @ w).reshape(2, 2, 2, 1)
            ll = losses.bernoulli_log_likelihood(logits, x)
            return jnp.mean(losses.gaussian_kl(mean, logvar) - ll)

        mean, logvar = rng.normal(size=(2, 3)), rng.normal(size=(2, 3)) * 0.5
        g_mean, g_logvar = jax.grad(neg_elbo, argnums=(0, 1))(mean, logvar)
        h = 1e-6
        for arg, grad in ((0, g_mean), (1, g_logvar)):
            fd = np.zeros_like(grad)
            for idx in np.ndindex(*fd.shape):
                plus, minus = [np.array(mean), np.array(logvar)], [np.array(mean), np.array(logvar)]
                plus[arg][idx] += h
                minus[arg][idx] -= h
                fd[idx] = (neg_elbo(*plus) - neg_elbo(*minus)) / (2 * h)
            np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-8)


def test_reparameterised_gradient_is_unbiased():
    """Mean reparameterised gradient of E_q[-0.5 ||x - A z||^2] vs finite differences of its
    closed form -0.5 (||x - A m||^2 + sum_j v_j ||A_j||^2), in float64."""
    with jax.enable_x64(True):
        rng = np.random.default_rng(3)
        a, x = rng.normal(size=(4, 3)), rng.normal(size=4)
        mean, logvar = rng.normal(size=3), rng.normal(size=3) * 0.5

        def mc(mean, logvar, key):
            z = losses.sample_gaussian(key, mean, logvar, num_samples=200_000)  # [n, 3]
            return jnp.mean(-0.5 * jnp.sum(jnp.square(x - z @ a.T), -1))

        def exact(mean, logvar):
            return -0.5 * (np.sum((x - a @ mean) ** 2) + np.sum(np.exp(logvar) * np.sum(a**2, 0)))

        grads = jax.grad(mc, argnums=(0, 1))(mean, logvar, jax.random.key(0))
        h = 1e-6
        for arg, grad in enumerate(grads):
            fd = np.zeros(3)
            for i in range(3):
                d = np.zeros(3)
                d[i] = h
                args_p = (mean + d, logvar) if arg == 0 else (mean, logvar + d)
                args_m = (mean - d, logvar) if arg == 0 else (mean, logvar - d)
                fd[i] = (exact(*args_p) - exact(*args_m)) / (2 * h)
            np.testing.assert_allclose(grad, fd, rtol=0.03, atol=0.03)

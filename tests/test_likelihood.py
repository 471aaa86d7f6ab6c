"""ELBO / IWAE evaluation against a float64 numpy Monte-Carlo computation with the same noise."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genimg import losses
from genimg.metrics import likelihood
from genimg.models.vae import make_vae

SHAPE, LATENT = (4, 4, 1), 2


@functools.cache
def _tiny_vae():
    """A tiny MLP VAE (16-8-2*2 / 2-8-16) with host-drawn parameters and a binary batch."""
    model = make_vae("mlp", SHAPE, LATENT, 1, hidden=(8,))
    x = (np.random.default_rng(0).uniform(size=(3, *SHAPE)) > 0.5).astype(np.float32)
    shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.asarray(x), jax.random.key(1))
    rng = np.random.default_rng(1)
    params = jax.tree.map(lambda s: jnp.asarray(0.5 * rng.normal(size=s.shape), s.dtype), shapes)
    return model, params, jnp.asarray(x)


def _fns(model, params):
    encode = lambda x: model.apply(params, x, method=model.encode)

    def log_lik(z, x):  # z [c, B, L] -> [c, B]
        c, b, _ = z.shape
        out = model.apply(params, z.reshape(c * b, -1), method=model.decode)
        return losses.log_likelihood("bernoulli", out.reshape(c, b, *out.shape[1:]), x)

    return encode, log_lik


def _numpy_log_weights(params, x, eps):
    """float64 log p(x, z) - log q(z | x) for z = mean + std * eps, eps [k, B, L]."""
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params["params"])
    dense = lambda h, layer: h @ layer["kernel"] + layer["bias"]
    h = x.reshape(x.shape[0], -1).astype(np.float64)
    h = dense(np.maximum(dense(h, p["encoder"]["Dense_0"]), 0), p["encoder"]["Dense_1"])
    mean, logvar = h[:, :LATENT], h[:, LATENT:]
    z = mean + np.exp(0.5 * logvar) * eps
    g = np.maximum(dense(z, p["decoder"]["Dense_0"]), 0)
    logits = dense(g, p["decoder"]["Dense_1"])  # [k, B, 16]
    xf = x.reshape(x.shape[0], -1)
    log_px_z = np.sum(xf * logits - np.logaddexp(0, logits), -1)
    log_pz = np.sum(-0.5 * z**2 - 0.5 * np.log(2 * np.pi), -1)
    log_q = np.sum(-0.5 * eps**2 - 0.5 * logvar - 0.5 * np.log(2 * np.pi), -1)
    return log_px_z + log_pz - log_q


def test_log_weights_match_numpy_with_the_same_noise():
    model, params, x = _tiny_vae()
    encode, log_lik = _fns(model, params)
    rng, k, chunk = jax.random.key(5), 7, 3
    log_w = likelihood.log_importance_weights(encode, log_lik, x, rng, k, chunk_size=chunk)
    assert log_w.shape == (k, 3)
    # The same noise: chunk j draws normal(fold_in(rng, j), [chunk, B, L]).
    eps = np.concatenate(
        [
            np.asarray(jax.random.normal(jax.random.fold_in(rng, j), (chunk, 3, LATENT)))
            for j in range(3)
        ]
    )[:k].astype(np.float64)
    ref = _numpy_log_weights(params, np.asarray(x), eps)
    np.testing.assert_allclose(log_w, ref, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(likelihood.elbo_estimate(log_w), ref.mean(0), rtol=1e-5)
    ref_iwae = np.log(np.mean(np.exp(ref - ref.max(0)), 0)) + ref.max(0)
    np.testing.assert_allclose(likelihood.iwae_bound(log_w), ref_iwae, rtol=1e-5)


def test_elbo_estimate_matches_analytic_kl_elbo():
    """mean_i log w_i -> E_q[log p(x|z)] - KL, the ELBO the training loss uses."""
    model, params, x = _tiny_vae()
    encode, log_lik = _fns(model, params)
    log_w = likelihood.log_importance_weights(encode, log_lik, x, jax.random.key(0), 10_000, 10_000)
    mean, logvar = encode(x)
    z = losses.sample_gaussian(jax.random.key(1), mean, logvar, 10_000)
    analytic = jnp.mean(log_lik(z, x), 0) - losses.gaussian_kl(mean, logvar)
    np.testing.assert_allclose(likelihood.elbo_estimate(log_w), analytic, rtol=0.01)


def test_iwae_with_one_sample_is_the_elbo():
    model, params, x = _tiny_vae()
    encode, log_lik = _fns(model, params)
    log_w = likelihood.log_importance_weights(encode, log_lik, x, jax.random.key(3), 1)
    np.testing.assert_array_equal(likelihood.iwae_bound(log_w), likelihood.elbo_estimate(log_w))
    res = likelihood.evaluate_nll(encode, log_lik, [x[:2], x[2:]], jax.random.key(3), 1)
    assert res["nll_iwae"] == pytest.approx(-res["elbo"], rel=1e-6)


def test_iwae_is_non_decreasing_in_k_and_below_log_px():
    """Averaged over 200 seeds, IWAE_k rises with k towards log p(x), which we get exactly by
    quadrature over the 2-D latent space."""
    model, params, x = _tiny_vae()
    encode, log_lik = _fns(model, params)
    ks = (1, 4, 16, 64)

    @jax.jit
    def bounds(key):
        log_w = likelihood.log_importance_weights(encode, log_lik, x, key, ks[-1], ks[-1])
        return jnp.stack([likelihood.iwae_bound(log_w[:k]) for k in ks])  # [len(ks), B]

    all_bounds = np.stack([bounds(jax.random.key(s)) for s in range(200)])  # [seeds, ks, B]
    mean_bounds = all_bounds.mean(0)
    sem = all_bounds.std(0) / np.sqrt(len(all_bounds))
    assert (np.diff(mean_bounds, axis=0) > 0).all(), mean_bounds
    # log p(x) = log integral p(x|z) p(z) dz on a fine grid.
    g = np.linspace(-7, 7, 281)
    z = np.stack(np.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 1, LATENT)
    log_joint = np.asarray(log_lik(jnp.asarray(z.repeat(3, 1), jnp.float32), x), np.float64)
    log_joint += np.sum(-0.5 * z**2 - 0.5 * np.log(2 * np.pi), -1)
    log_px = np.log(np.sum(np.exp(log_joint - log_joint.max(0)), 0)) + log_joint.max(0)
    log_px += 2 * np.log(g[1] - g[0])
    assert (mean_bounds[-1] <= log_px + 4 * sem[-1] + 1e-4).all()  # a bound, up to MC error
    assert (log_px - mean_bounds[-1] < log_px - mean_bounds[0]).all()


def test_large_k_is_finite_and_bits_per_dim():
    model, params, x = _tiny_vae()
    encode, log_lik = _fns(model, params)
    res = likelihood.evaluate_nll(encode, log_lik, [x], jax.random.key(0), 5000, chunk_size=512)
    assert res["k"] == 5000 and res["num_images"] == 3
    assert res["nll_iwae"] <= -res["elbo"]
    assert res["bits_per_dim"] == pytest.approx(res["nll_iwae"] / (16 * math.log(2)))
    assert likelihood.bits_per_dim(0.0, 4, num_bins=256) == pytest.approx(8.0)
    with pytest.raises(ValueError, match="importance samples"):
        likelihood.log_importance_weights(encode, log_lik, x, jax.random.key(0), 0)

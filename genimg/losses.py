"""Objectives as pure functions: arrays (or apply functions) in, ``(loss, parts)`` out.

Losses never import models. Penalties that need gradients with respect to the input take the
discriminator as a function ``d_fn(images) -> logits``.

GAN losses take discriminator outputs ("logits": the pre-sigmoid score, or the critic value
for WGAN) and average over the batch. Notation: ``r = D(x)`` on real images, ``f = D(G(z))``.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

Array = jax.Array

# --- GAN objectives -------------------------------------------------------------------------

GAN_LOSSES = ("minimax", "nonsaturating", "hinge", "lsgan", "wgan")


def _check_gan_loss(kind: str) -> None:
    if kind not in GAN_LOSSES:
        raise ValueError(f"unknown GAN loss '{kind}'; expected one of {', '.join(GAN_LOSSES)}")


def gan_d_loss(kind: str, real_logits: Array, fake_logits: Array) -> tuple[Array, dict]:
    """Discriminator (critic) loss to minimise.

    - ``minimax`` / ``nonsaturating`` (Goodfellow et al. 2014): ``-log D(x) - log(1 - D(G(z)))``,
      i.e. sigmoid cross-entropy with labels 1 for real and 0 for fake.
    - ``hinge`` (Lim & Ye 2017; Miyato et al. 2018): ``relu(1 - r) + relu(1 + f)``.
    - ``lsgan`` (Mao et al. 2017, a=0, b=1): ``((r - 1)^2 + f^2) / 2``.
    - ``wgan`` (Arjovsky et al. 2017): ``f - r`` (add a gradient penalty for WGAN-GP).
    """
    _check_gan_loss(kind)
    r, f = real_logits, fake_logits
    if kind in ("minimax", "nonsaturating"):
        loss_real, loss_fake = jax.nn.softplus(-r), jax.nn.softplus(f)
    elif kind == "hinge":
        loss_real, loss_fake = jax.nn.relu(1.0 - r), jax.nn.relu(1.0 + f)
    elif kind == "lsgan":
        loss_real, loss_fake = 0.5 * jnp.square(r - 1.0), 0.5 * jnp.square(f)
    else:  # wgan
        loss_real, loss_fake = -r, f
    loss_real, loss_fake = jnp.mean(loss_real), jnp.mean(loss_fake)
    parts = {"d_loss_real": loss_real, "d_loss_fake": loss_fake}
    return loss_real + loss_fake, parts


def gan_g_loss(kind: str, fake_logits: Array) -> tuple[Array, dict]:
    """Generator loss to minimise.

    - ``minimax``: the original value function, ``log(1 - D(G(z)))`` (saturates early on).
    - ``nonsaturating``: ``-log D(G(z))``, the practical variant from the same paper.
    - ``hinge`` / ``wgan``: ``-f``.
    - ``lsgan``: ``(f - 1)^2 / 2``.
    """
    _check_gan_loss(kind)
    f = fake_logits
    if kind == "minimax":
        loss = -jax.nn.softplus(f)  # log(1 - sigmoid(f))
    elif kind == "nonsaturating":
        loss = jax.nn.softplus(-f)  # -log sigmoid(f)
    elif kind == "lsgan":
        loss = 0.5 * jnp.square(f - 1.0)
    else:  # hinge, wgan
        loss = -f
    return jnp.mean(loss), {}


def bigan_eg_loss(kind: str, real_logits: Array, fake_logits: Array) -> tuple[Array, dict]:
    """Encoder + generator loss of a BiGAN / ALI, whose discriminator scores ``r = D(x, E(x))``
    as real and ``f = D(G(z), z)`` as fake: the generator side of ``kind`` applied to both
    pairs with their roles swapped (E wants its pairs called fake, G wants its pairs called
    real).

    - ``minimax``: ``-(D loss)``, the original objective (Donahue et al. 2017, Eq. 3).
    - ``nonsaturating``: D's cross-entropy with flipped labels, ``-log D(G(z), z) -
      log(1 - D(x, E(x)))`` (the paper's practical variant).
    - ``hinge`` / ``wgan``: ``r - f`` (BigBiGAN's encoder-generator loss).
    - ``lsgan``: ``((f - 1)^2 + r^2) / 2``, the least-squares targets swapped.
    """
    _check_gan_loss(kind)
    r, f = real_logits, fake_logits
    if kind == "lsgan":
        loss_enc, loss_gen = 0.5 * jnp.square(r), 0.5 * jnp.square(f - 1.0)
    elif kind == "minimax":
        loss_enc, loss_gen = -jax.nn.softplus(-r), -jax.nn.softplus(f)
    else:  # gan_g_loss of -r for the encoder: softplus(r) (nonsaturating), r (hinge, wgan)
        loss_enc, _ = gan_g_loss(kind, -r)
        loss_gen, _ = gan_g_loss(kind, f)
    loss_enc, loss_gen = jnp.mean(loss_enc), jnp.mean(loss_gen)
    return loss_enc + loss_gen, {"e_adv": loss_enc, "g_adv": loss_gen}


def gradient_penalty(d_fn: Callable[[Array], Array], real: Array, fake: Array, rng: Array) -> Array:
    """WGAN-GP penalty (Gulrajani et al. 2017): ``E[(||grad D(x_hat)||_2 - 1)^2]``.

    ``x_hat`` is a uniform random interpolate between each real and fake image. Multiply by
    the penalty weight (10 in the paper) in the caller.
    """
    eps = jax.random.uniform(rng, (real.shape[0],) + (1,) * (real.ndim - 1), real.dtype)
    x_hat = eps * real + (1.0 - eps) * fake
    grads = jax.grad(lambda x: jnp.sum(d_fn(x)))(x_hat)
    norms = jnp.sqrt(jnp.sum(jnp.square(grads), axis=tuple(range(1, grads.ndim))) + 1e-12)
    return jnp.mean(jnp.square(norms - 1.0))


def r1_penalty(d_fn: Callable[[Array], Array], real: Array) -> Array:
    """R1 penalty (Mescheder et al. 2018): ``E[||grad D(x)||_2^2]`` on real data.

    The usual regulariser is ``gamma / 2 * r1_penalty``; the caller applies the weight.
    """
    grads = jax.grad(lambda x: jnp.sum(d_fn(x)))(real)
    return jnp.mean(jnp.sum(jnp.square(grads), axis=tuple(range(1, grads.ndim))))


# --- VAE / autoencoder objectives -----------------------------------------------------------
#
# Per-example quantities are in nats and summed over the event axes: the last three (H, W, C)
# for images, the last one for latents; leading axes ([B] or [k, B]) are kept. ``out`` is the
# decoder's raw output: Bernoulli logits, the Gaussian mean, or for "gaussian_learned" the mean
# and an unconstrained per-pixel log-scale stacked along the channel axis ([..., 2C]).

LIKELIHOODS = ("bernoulli", "gaussian_fixed", "gaussian_learned")
RECONSTRUCTION_LOSSES = ("mse", "bce")
_LOG_2PI = 1.8378770664093453  # log(2 * pi)


def _check_likelihood(kind: str) -> None:
    if kind not in LIKELIHOODS:
        raise ValueError(f"unknown likelihood '{kind}'; expected one of {', '.join(LIKELIHOODS)}")


def _sum_image(x: Array) -> Array:
    return jnp.sum(x, axis=(-3, -2, -1))


def likelihood_channels(kind: str, channels: int) -> int:
    """Number of decoder output channels the likelihood ``kind`` needs for ``channels``."""
    _check_likelihood(kind)
    return 2 * channels if kind == "gaussian_learned" else channels


def bernoulli_log_likelihood(logits: Array, x: Array) -> Array:
    """``log Bernoulli(x | sigmoid(logits))`` summed over (H, W, C); ``x`` in {0, 1} (or [0, 1])."""
    return _sum_image(x * logits - jax.nn.softplus(logits))


def gaussian_log_likelihood(mean: Array, log_scale: Array | float, x: Array) -> Array:
    """``log N(x | mean, exp(log_scale)^2)`` summed over (H, W, C): a density, not a probability."""
    log_scale = jnp.broadcast_to(log_scale, mean.shape)
    z = (x - mean) * jnp.exp(-log_scale)
    return _sum_image(-0.5 * jnp.square(z) - log_scale - 0.5 * _LOG_2PI)


def split_gaussian(out: Array, min_log_scale: float = -5.0) -> tuple[Array, Array]:
    """Splits ``[..., 2C]`` decoder output into (mean, log-scale), the log-scale softly floored.

    The floor keeps the density bounded where pixels are constant (e.g. black backgrounds),
    which would otherwise drive the scale to zero and the log-likelihood to infinity.
    """
    mean, raw = jnp.split(out, 2, axis=-1)
    return mean, min_log_scale + jax.nn.softplus(raw - min_log_scale)


def log_likelihood(kind: str, out: Array, x: Array, *, scale: float = 0.1) -> Array:
    """``log p(x | z)`` per example for a likelihood ``kind`` in ``LIKELIHOODS``.

    Args:
      kind: "bernoulli" (``out`` are logits), "gaussian_fixed" (``out`` is the mean, standard
        deviation ``scale``) or "gaussian_learned" (``out`` is mean and log-scale, see
        ``split_gaussian``).
      out: decoder output ``[..., H, W, C']``.
      x: target images ``[..., H, W, C]`` in [0, 1]; broadcast against ``out``.
      scale: the fixed standard deviation of "gaussian_fixed".

    Returns:
      ``[...]`` log-likelihoods in nats.
    """
    _check_likelihood(kind)
    if kind == "bernoulli":
        return bernoulli_log_likelihood(out, x)
    if kind == "gaussian_fixed":
        if scale <= 0:
            raise ValueError(f"gaussian_fixed needs scale > 0, got {scale}")
        return gaussian_log_likelihood(out, jnp.log(scale), x)
    return gaussian_log_likelihood(*split_gaussian(out), x)


def likelihood_mean(kind: str, out: Array) -> Array:
    """The mean image ``E[x | z]`` of the likelihood, clipped to [0, 1] for display."""
    _check_likelihood(kind)
    if kind == "bernoulli":
        return jax.nn.sigmoid(out)
    if kind == "gaussian_learned":
        out = split_gaussian(out)[0]
    return jnp.clip(out, 0.0, 1.0)


def gaussian_kl(mean: Array, logvar: Array) -> Array:
    """``KL(N(mean, exp(logvar)) || N(0, I))`` summed over the last axis (analytic)."""
    return 0.5 * jnp.sum(jnp.square(mean) + jnp.exp(logvar) - 1.0 - logvar, axis=-1)


def diag_gaussian_log_density(z: Array, mean: Array | float = 0.0, logvar: Array | float = 0.0):
    """``log N(z | mean, diag(exp(logvar)))`` summed over the last axis (defaults: N(0, I))."""
    logvar = jnp.broadcast_to(logvar, z.shape)
    return -0.5 * jnp.sum(
        jnp.square(z - mean) * jnp.exp(-logvar) + logvar + _LOG_2PI,
        axis=-1,
    )


def reparameterize(mean: Array, logvar: Array, eps: Array) -> Array:
    """The reparameterisation trick: ``z = mean + exp(logvar / 2) * eps``, ``eps ~ N(0, I)``."""
    return mean + jnp.exp(0.5 * logvar) * eps


def sample_gaussian(rng: Array, mean: Array, logvar: Array, num_samples: int | None = None):
    """`reparameterize` with fresh noise: ``[*mean.shape]``, or ``[k, *mean.shape]`` for k."""
    shape = mean.shape if num_samples is None else (num_samples, *mean.shape)
    return reparameterize(mean, logvar, jax.random.normal(rng, shape, mean.dtype))


def kl_weight(step: Array | int, beta: float = 1.0, warmup_steps: int = 0) -> Array:
    """KL weight with linear warm-up: ``beta * min(1, step / warmup_steps)`` (Bowman et al. 2016).

    ``warmup_steps = 0`` gives the constant ``beta`` (``beta = 1``: the ELBO; ``beta > 1``: the
    beta-VAE of Higgins et al. 2017).
    """
    if warmup_steps < 0:
        raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")
    if warmup_steps == 0:
        return jnp.asarray(beta, jnp.float32)
    return beta * jnp.minimum(1.0, jnp.asarray(step, jnp.float32) / warmup_steps)


def vae_loss(log_lik: Array, kl: Array, beta: Array | float = 1.0) -> tuple[Array, dict]:
    """Batch-mean ``-(log p(x|z) - beta * KL)`` from per-example ``[B]`` terms.

    ``parts["elbo"]`` is the unweighted bound ``log p(x|z) - KL`` whatever ``beta`` is.
    """
    loss = jnp.mean(beta * kl - log_lik)
    parts = {
        "elbo": jnp.mean(log_lik - kl),
        "log_likelihood": jnp.mean(log_lik),
        "kl": jnp.mean(kl),
    }
    return loss, parts


def reconstruction_loss(kind: str, out: Array, target: Array) -> Array:
    """Autoencoder reconstruction loss, mean over pixels and batch.

    "mse": ``(out - target)^2`` with ``out`` the image itself; "bce": sigmoid cross-entropy
    with ``out`` the logits and ``target`` in [0, 1].
    """
    if kind == "mse":
        return jnp.mean(jnp.square(out - target))
    if kind == "bce":
        return jnp.mean(jax.nn.softplus(out) - target * out)
    raise ValueError(
        f"unknown reconstruction loss '{kind}'; expected one of {', '.join(RECONSTRUCTION_LOSSES)}"
    )


def reconstruction_image(kind: str, out: Array) -> Array:
    """The reconstructed image in [0, 1] from the decoder output of ``reconstruction_loss``."""
    return jax.nn.sigmoid(out) if kind == "bce" else jnp.clip(out, 0.0, 1.0)


def l2_penalty(params) -> Array:
    """``0.5 * sum ||w||^2`` over weight matrices and kernels (leaves with ndim >= 2).

    Biases and normalisation scales are left out, as is usual for weight decay.
    """
    leaves = [p for p in jax.tree_util.tree_leaves(params) if p.ndim >= 2]
    return 0.5 * sum(jnp.sum(jnp.square(p)) for p in leaves)

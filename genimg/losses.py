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

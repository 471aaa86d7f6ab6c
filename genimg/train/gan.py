"""GAN training: state, the pure train-step factory and the family builder.

One step is ``n_critic`` discriminator updates followed by one generator update, each with
its own optimizer (separate learning rates give TTUR), then an EMA update of the generator.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import struct

from genimg import losses
from genimg.models import gan as gan_models
from genimg.train.common import (
    Family,
    device_rng,
    ema_update,
    ema_warmup,
    global_normal,
    maybe_pmean,
    norms,
    to_unit_range,
)


class GANState(struct.PyTreeNode):
    """Everything a GAN run needs to continue: both networks, optimizers and the G EMA."""

    step: jax.Array
    g_params: Any
    d_params: Any
    g_batch_stats: Any  # generator batch-norm running statistics ({} when none)
    d_batch_stats: Any  # discriminator spectral-norm vectors ({} when none)
    g_opt_state: Any
    d_opt_state: Any
    ema_params: Any  # exponential moving average of g_params (sampling weights)
    g_tx: optax.GradientTransformation = struct.field(pytree_node=False)
    d_tx: optax.GradientTransformation = struct.field(pytree_node=False)


def create_gan_state(
    generator: nn.Module,
    discriminator: nn.Module,
    g_tx: optax.GradientTransformation,
    d_tx: optax.GradientTransformation,
    rng: jax.Array,
    z_dim: int,
    image_shape: tuple[int, int, int],
) -> GANState:
    """Initialise both networks and their optimizers."""
    g_rng, d_rng, drop_rng = jax.random.split(rng, 3)
    g_vars = generator.init(g_rng, jnp.zeros((1, z_dim)), train=False)
    d_vars = discriminator.init(
        {"params": d_rng, "dropout": drop_rng}, jnp.zeros((1, *image_shape)), train=False
    )
    g_params, d_params = g_vars["params"], d_vars["params"]
    return GANState(
        step=jnp.zeros((), jnp.int32),
        g_params=g_params,
        d_params=d_params,
        g_batch_stats=g_vars.get("batch_stats", {}),
        d_batch_stats=d_vars.get("batch_stats", {}),
        g_opt_state=g_tx.init(g_params),
        d_opt_state=d_tx.init(d_params),
        ema_params=jax.tree.map(jnp.copy, g_params),  # own buffers: the state is donated
        g_tx=g_tx,
        d_tx=d_tx,
    )


def make_gan_train_step(
    generator: nn.Module,
    discriminator: nn.Module,
    *,
    z_dim: int,
    loss: str = "nonsaturating",
    n_critic: int = 1,
    gp_weight: float = 0.0,
    r1_weight: float = 0.0,
    ema_decay: float = 0.999,
    log_norms: bool = True,
    axis_name: str | None = None,
):
    """Return a pure ``train_step(state, batch, rng) -> (state, metrics)``.

    ``batch["image"]`` holds ``n_critic`` real batches stacked along the batch axis (the
    local batch under pmap); critic update ``i`` uses slice ``i``. ``r1_weight`` is gamma:
    the regulariser added to the D loss is ``gamma / 2 * R1``. With ``axis_name`` set the
    gradients and metrics are averaged over that pmap axis, batch norm uses cross-device
    statistics, and the latent noise is each device's slice of one global draw, so N devices
    compute what one device computes for the same global batch. ``ema_decay=0`` skips the EMA
    update (``state.ema_params`` then keeps its initial value and sampling uses ``g_params``);
    ``log_norms=False`` leaves the gradient and parameter norms out of the metrics.
    """
    losses.gan_d_loss(loss, jnp.zeros(1), jnp.zeros(1))  # validates `loss` eagerly

    def g_apply(params, batch_stats, z):
        """Generator in training mode; returns (images, updated batch stats)."""
        out, new_vars = generator.apply(
            {"params": params, "batch_stats": batch_stats}, z, train=True, mutable=["batch_stats"]
        )
        return out, new_vars.get("batch_stats", {})

    def d_apply(params, batch_stats, x, rng):
        """Discriminator in training mode; returns (logits, updated spectral-norm stats)."""
        out, new_vars = discriminator.apply(
            {"params": params, "batch_stats": batch_stats},
            x,
            train=True,
            rngs={"dropout": rng},
            mutable=["batch_stats"],
        )
        return out, new_vars.get("batch_stats", {})

    def train_step(state: GANState, batch: dict, rng: jax.Array):
        noise_rng, drop_rng = jax.random.split(jax.random.fold_in(rng, state.step))
        local = device_rng(drop_rng, axis_name)  # dropout: independent per device
        real_all = batch["image"]
        b = real_all.shape[0] // n_critic
        g_params, g_bs = state.g_params, state.g_batch_stats
        d_params, d_bs, d_opt = state.d_params, state.d_batch_stats, state.d_opt_state

        for i in range(n_critic):  # unrolled: lax.scan is far slower for convs on CPU
            z_rng, gp_rng = jax.random.split(jax.random.fold_in(noise_rng, i))
            drop_rng = jax.random.fold_in(local, i)
            real = real_all[i * b : (i + 1) * b]
            fake, g_bs = g_apply(g_params, g_bs, global_normal(z_rng, b, (z_dim,), axis_name))
            fake = jax.lax.stop_gradient(fake)

            def d_loss_fn(params, d_bs=d_bs, real=real, fake=fake, gp_rng=gp_rng, r=drop_rng):
                real_logits, bs = d_apply(params, d_bs, real, r)
                fake_logits, bs = d_apply(params, bs, fake, r)
                total, parts = losses.gan_d_loss(loss, real_logits, fake_logits)
                parts = dict(parts, d_real=jnp.mean(real_logits), d_fake=jnp.mean(fake_logits))
                d_fn = lambda x: d_apply(params, bs, x, r)[0]
                if gp_weight:
                    parts["gp"] = losses.gradient_penalty(d_fn, real, fake, gp_rng)
                    total = total + gp_weight * parts["gp"]
                if r1_weight:
                    parts["r1"] = losses.r1_penalty(d_fn, real)
                    total = total + 0.5 * r1_weight * parts["r1"]
                return total, (parts, bs)

            (d_loss, (d_parts, d_bs)), d_grads = jax.value_and_grad(d_loss_fn, has_aux=True)(
                d_params
            )
            d_grads = maybe_pmean(d_grads, axis_name)
            updates, d_opt = state.d_tx.update(d_grads, d_opt, d_params)
            d_params = optax.apply_updates(d_params, updates)

        z = global_normal(jax.random.fold_in(noise_rng, n_critic), b, (z_dim,), axis_name)
        g_drop_rng = jax.random.fold_in(local, n_critic)

        def g_loss_fn(params):
            fake, bs = g_apply(params, g_bs, z)
            fake_logits, _ = d_apply(d_params, d_bs, fake, g_drop_rng)  # D's stats unchanged
            g_loss, parts = losses.gan_g_loss(loss, fake_logits)
            return g_loss, (parts, bs)

        (g_loss, (g_parts, g_bs)), g_grads = jax.value_and_grad(g_loss_fn, has_aux=True)(g_params)
        g_grads = maybe_pmean(g_grads, axis_name)
        updates, g_opt = state.g_tx.update(g_grads, state.g_opt_state, g_params)
        g_params = optax.apply_updates(g_params, updates)

        new_state = state.replace(
            step=state.step + 1,
            g_params=g_params,
            d_params=d_params,
            g_batch_stats=g_bs,
            d_batch_stats=d_bs,
            g_opt_state=g_opt,
            d_opt_state=d_opt,
            ema_params=(
                ema_update(state.ema_params, g_params, ema_warmup(ema_decay, state.step))
                if ema_decay
                else state.ema_params
            ),
        )
        metrics = {
            "d_loss": d_loss,
            "g_loss": g_loss,
            **d_parts,
            **g_parts,
            **norms("g_", g_grads, g_params, log_norms),
            **norms("d_", d_grads, d_params, log_norms),
        }
        return new_state, maybe_pmean(metrics, axis_name)

    return train_step


def build_models(model_cfg, image_shape, axis_name: str | None = None):
    """(generator, discriminator, data_scale) for ``config.model``."""
    if model_cfg.arch == "mlp":
        return (
            gan_models.MLPGenerator(
                image_shape=tuple(image_shape), hidden=tuple(model_cfg.g_hidden)
            ),
            gan_models.MLPDiscriminator(hidden=tuple(model_cfg.d_hidden)),
            "0_1",
        )
    if model_cfg.arch == "dcgan":
        return (
            gan_models.DCGANGenerator(
                image_shape=tuple(image_shape),
                width=model_cfg.g_width,
                kernel_size=model_cfg.kernel_size,
                axis_name=axis_name,
                upsample_impl=model_cfg.upsample_impl,
                conv_backend=model_cfg.get("conv_backend", "xla"),
            ),
            gan_models.DCGANDiscriminator(
                width=model_cfg.d_width,
                kernel_size=model_cfg.kernel_size,
                dropout=model_cfg.d_dropout,
                spectral_norm=model_cfg.spectral_norm,
                conv_backend=model_cfg.get("conv_backend", "xla"),
            ),
            "-1_1",
        )
    raise ValueError(f"unknown GAN model.arch '{model_cfg.arch}'; expected 'mlp' or 'dcgan'")


def build(
    config: ml_collections.ConfigDict, image_shape: tuple[int, int, int], num_classes: int | None
) -> Family:
    """The GAN family for ``config.model`` / ``config.optim``; see ``experiments/dcgan.py``."""
    del num_classes  # unconditional
    m, o = config.model, config.optim
    generator, discriminator, scale = build_models(m, image_shape)

    def adam(lr):
        return optax.adam(lr, b1=o.b1, b2=o.b2)

    def init_state(rng):
        return create_gan_state(
            generator, discriminator, adam(o.g_lr), adam(o.d_lr), rng, m.z_dim, image_shape
        )

    def make_train_step(axis_name):
        g, d, _ = build_models(m, image_shape, axis_name)
        return make_gan_train_step(
            g,
            d,
            z_dim=m.z_dim,
            loss=m.loss,
            n_critic=m.n_critic,
            gp_weight=m.gp_weight,
            r1_weight=m.r1_weight,
            ema_decay=m.ema_decay,
            log_norms=config.train.get("log_norms", True),
            axis_name=axis_name,
        )

    def sample(state: GANState, rng: jax.Array, num: int) -> jax.Array:
        params = state.ema_params if m.ema_decay > 0 else state.g_params
        z = jax.random.normal(rng, (num, m.z_dim))
        images = generator.apply(
            {"params": params, "batch_stats": state.g_batch_stats}, z, train=False
        )
        return to_unit_range(images, scale)

    return Family(
        name="gan",
        data_scale=scale,
        init_state=init_state,
        make_train_step=make_train_step,
        sample=sample,
        batch_multiplier=m.n_critic,
    )

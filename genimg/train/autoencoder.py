"""Autoencoder training (families "ae" and "dae"): the pure train-step factory and the builder.

"ae" minimises the reconstruction loss ``model.loss`` ("mse" on the image, or "bce" on
logits) of the clean image; "dae" (Vincent et al. 2008) feeds the encoder a corrupted image
(``config.corruption``, see ``genimg.corruptions``) and scores the output against the clean
one. Optional L2 weight decay (``model.weight_decay``) and dropout (``model.dropout``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections

from genimg import corruptions, losses
from genimg.models.autoencoder import AutoEncoder, make_trunks
from genimg.train.common import Family, device_rng, maybe_pmean, norms
from genimg.train.vae import State, create_state, global_batch_op, make_optimizer, trunk_kwargs


def make_ae_train_step(
    model: AutoEncoder,
    *,
    loss: str = "mse",
    corrupt_fn=None,
    weight_decay: float = 0.0,
    log_norms: bool = True,
    axis_name: str | None = None,
):
    """Return a pure ``train_step(state, batch, rng) -> (state, metrics)``.

    ``corrupt_fn(rng, x)`` (None for a plain AE) is applied to the global batch, so N devices
    see the corruption one device sees; dropout is per device.
    """
    losses.reconstruction_loss(loss, jnp.zeros(()), jnp.zeros(()))  # validates `loss` eagerly

    def train_step(state: State, batch: dict, rng: jax.Array):
        rng = jax.random.fold_in(rng, state.step)
        corrupt_rng, drop_rng = jax.random.split(rng)
        drop_rng = device_rng(drop_rng, axis_name)
        x = batch["image"]
        x_in = x if corrupt_fn is None else global_batch_op(corrupt_fn, corrupt_rng, x, axis_name)

        def loss_fn(params):
            out = model.apply({"params": params}, x_in, train=True, rngs={"dropout": drop_rng})
            rec = losses.reconstruction_loss(loss, out, x)
            parts = {"recon_loss": rec}
            total = rec
            if weight_decay:
                parts["l2"] = losses.l2_penalty(params)
                total = total + weight_decay * parts["l2"]
            recon = losses.reconstruction_image(loss, out)
            parts["mse"] = jnp.mean(jnp.square(recon - x))
            return total, parts

        (total, parts), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        grads = maybe_pmean(grads, axis_name)
        new_state = state.apply_gradients(grads=grads)
        metrics = {"loss": total, **parts, **norms("", grads, state.params, log_norms)}
        return new_state, maybe_pmean(metrics, axis_name)

    return train_step


def build_model(config, image_shape) -> AutoEncoder:
    """The autoencoder of ``config.model`` (code size ``model.latent_dim``)."""
    m = config.model
    encoder, decoder = make_trunks(
        m.arch, image_shape, m.latent_dim, image_shape[-1], **trunk_kwargs(m)
    )
    return AutoEncoder(encoder, decoder)


def make_corruption_fn(config):
    """``(rng, x) -> x_tilde`` of ``config.corruption`` for "dae", None for "ae"."""
    if config.model.family != "dae":
        return None
    c = config.corruption
    return corruptions.make_corruption(
        c.kind, noise_std=c.noise_std, fraction=c.fraction, block_size=c.block_size, clip=c.clip
    )


def build(
    config: ml_collections.ConfigDict, image_shape: tuple[int, int, int], num_classes: int | None
) -> Family:
    """The "ae" / "dae" family; see ``experiments/autoencoder.py`` and ``denoising_ae.py``."""
    del num_classes  # unconditional
    m = config.model
    image_shape = tuple(image_shape)
    model = build_model(config, image_shape)
    corrupt_fn = make_corruption_fn(config)

    def init_state(rng):
        x = jnp.zeros((1, *image_shape))
        return create_state(model, make_optimizer(config.optim), rng, x)

    def make_train_step(axis_name):
        return make_ae_train_step(
            model,
            loss=m.loss,
            corrupt_fn=corrupt_fn,
            weight_decay=m.weight_decay,
            log_norms=config.train.get("log_norms", True),
            axis_name=axis_name,
        )

    def reconstruct(state, images):
        """Reconstructions in [0, 1] of (possibly corrupted) ``images`` in [0, 1]."""
        out = model.apply({"params": state.params}, images)
        return losses.reconstruction_image(m.loss, out)

    return Family(
        name=m.family,
        data_scale="0_1",
        init_state=init_state,
        make_train_step=make_train_step,
        sample=None,
        reconstruct=reconstruct,
    )

"""Autoencoder families ("ae", and the denoising "dae"): the step, config blocks, the builder.

"ae" minimises the reconstruction loss ``model.loss`` ("mse" on the image, or "bce" on
logits) of the clean image; "dae" (Vincent et al. 2008) feeds the encoder a corrupted image
(the ``corruption`` block, see ``genimg.corruptions``) and scores the output against the clean
one. Optional L2 weight decay (``model.weight_decay``) and dropout (``model.dropout``).

Evaluation groups: ``recon`` (MSE / PSNR / SSIM against the clean test images; a denoiser
sees corrupted inputs) and ``figures`` (rows: input | [corrupted |] output).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import ml_collections

from genimg import corruptions, losses
from genimg import images as images_lib
from genimg.families import common
from genimg.metrics.reconstruction import evaluate_reconstruction
from genimg.models import precision
from genimg.models.autoencoder import AutoEncoder, make_trunks
from genimg.train import family as family_lib
from genimg.train.common import (
    State,
    apply_gradients,
    create_state,
    device_rng,
    global_batch_op,
    maybe_pmean,
)

# --- config ---------------------------------------------------------------------------------


def model_config(arch: str = "conv") -> ml_collections.ConfigDict:
    """The ``model`` block: trunks, code size, reconstruction loss, weight decay."""
    m = common.trunk_config(arch)
    m.latent_dim = 16  # size of the code
    m.loss = "mse"  # "mse" on the image | "bce" on logits
    m.weight_decay = 0.0  # L2 penalty 0.5 * wd * ||w||^2 on kernels
    return m


def corruption_config(kind: str = "gaussian") -> ml_collections.ConfigDict:
    """The ``corruption`` block of "dae" (see ``genimg.corruptions.CORRUPTIONS``)."""
    c = ml_collections.ConfigDict()
    c.kind = kind
    c.noise_std = 0.3  # "gaussian"
    c.clip = True  # "gaussian": clip the noisy image to [0, 1]
    c.fraction = 0.25  # "salt_and_pepper", "pixel_mask"
    c.block_size = 12  # "block_mask", pixels
    return c


def tiny(config: ml_collections.ConfigDict) -> None:
    """The ``tiny`` preset's model (and corruption) settings."""
    common.tiny_trunk(config.model)
    config.model.latent_dim = 2
    config.eval.batch_size = 4
    if "corruption" in config:
        config.corruption.block_size = 3


# --- the step -------------------------------------------------------------------------------


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
        corrupt_rng, dropout_rng = jax.random.split(rng)
        dropout_rng = device_rng(dropout_rng, axis_name)
        x = batch["image"]
        x_in = x if corrupt_fn is None else global_batch_op(corrupt_fn, corrupt_rng, x, axis_name)

        def loss_fn(params):
            out = model.apply({"params": params}, x_in, train=True, rngs={"dropout": dropout_rng})
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
        new_state, norm_metrics = apply_gradients(state, grads, axis_name, log_norms=log_norms)
        metrics = {"loss": total, **parts, **norm_metrics}
        return new_state, maybe_pmean(metrics, axis_name)

    return train_step


# --- evaluation groups ----------------------------------------------------------------------


def recon_group(family, state, data) -> dict:
    """MSE / PSNR / SSIM of reconstructions of the test images (a denoiser's from corrupted
    inputs, batch ``i`` corrupted with ``fold_in(fold_in(key(seed), 1), i)``)."""
    reconstruct = jax.jit(functools.partial(family.reconstruct, state))
    corrupt = None if family.corrupt_fn is None else jax.jit(family.corrupt_fn)
    rng = jax.random.fold_in(jax.random.key(data.seed), 1)
    scores = evaluate_reconstruction(reconstruct, data.batches(), corrupt, rng)
    return {name: scores[name] for name in ("mse", "psnr", "ssim")}


def figures_group(family, state, data, num: int = 10) -> dict:
    """``W/figures/reconstructions.png``: rows input | [corrupted |] output, carrying the run's
    provenance (``data.provenance``)."""
    x = jnp.asarray(data.images[:num], jnp.float32) / 255.0
    rows = [x]
    if family.corrupt_fn is not None:
        x = family.corrupt_fn(jax.random.fold_in(jax.random.key(data.seed), 2), x)
        rows.append(x)
    rows.append(family.reconstruct(state, x))
    picture = images_lib.make_grid(jnp.concatenate(rows), ncols=len(rows[0]))
    images_lib.save_png(data.workdir / "figures" / "reconstructions.png", picture, data.provenance)
    return {}


# --- the family -----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class AEFamily(family_lib.Family):
    """`Family` plus the corruption a denoiser is evaluated with (None for a plain AE)."""

    corrupt_fn: Callable | None = None


def _build(config, image_shape, corrupt_fn) -> AEFamily:
    m = config.model
    encoder, decoder = make_trunks(
        m.arch, image_shape, m.latent_dim, image_shape[-1], **common.trunk_kwargs(m)
    )
    model = precision.wrap(AutoEncoder(encoder, decoder), m.get("dtype", "float32"))

    def init_state(rng):
        return create_state(
            model, common.make_adam(config.optim), rng, jnp.zeros((1, *image_shape))
        )

    def make_train_step(axis_name):
        return make_ae_train_step(
            model,
            loss=m.loss,
            corrupt_fn=corrupt_fn,
            weight_decay=m.weight_decay,
            log_norms=config.train.log_norms,
            axis_name=axis_name,
        )

    def encode(state, images, labels=None):
        del labels
        return model.apply({"params": state.params}, images, method=AutoEncoder.encode)

    def decode(state, code, labels=None):
        del labels
        out = model.apply({"params": state.params}, code, method=AutoEncoder.decode)
        return losses.reconstruction_image(m.loss, out)

    def reconstruct(state, images, labels=None):
        return decode(state, encode(state, images))

    return AEFamily(
        name=config.family,
        data_scale="0_1",
        init_state=init_state,
        make_train_step=make_train_step,
        encode=encode,
        decode=decode,
        reconstruct=reconstruct,
        latent_dim=m.latent_dim,
        eval_groups={"recon": recon_group, "figures": figures_group},
        default_metrics=("recon",),
        corrupt_fn=corrupt_fn,
    )


@family_lib.register("ae")
def build(config, image_shape, num_classes) -> AEFamily:
    """The plain autoencoder; see ``experiments/autoencoder.py``."""
    del num_classes  # unconditional
    return _build(config, image_shape, None)


@family_lib.register("dae")
def build_denoising(config, image_shape, num_classes) -> AEFamily:
    """The denoising autoencoder of ``config.corruption``; see ``experiments/denoising_ae.py``."""
    del num_classes  # unconditional
    c = config.corruption
    corrupt_fn = corruptions.make_corruption(
        c.kind, noise_std=c.noise_std, fraction=c.fraction, block_size=c.block_size, clip=c.clip
    )
    return _build(config, image_shape, corrupt_fn)

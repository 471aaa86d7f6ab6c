"""VAE families ("vae" and the conditional "cvae"): the step, config blocks, builder, eval groups.

One step: binarise the batch (``data.binarize``), encode, draw ``z`` with the
reparameterisation trick, decode, and take one optimizer step on the negative ELBO with the
KL weighted by ``beta`` (β-VAE) times a linear warm-up. "cvae" feeds the labels to the encoder
and the decoder, and with ``model.aux_classifier_weight > 0`` adds a class term: an auxiliary
classifier learns the labels of the real images, and the decoder's mean images of prior draws
``z ~ N(0, I)`` for the batch's labels are pushed towards being classified as those labels
(the classifier loss of Bao et al. 2017's CVAE-GAN). The likelihood (Bernoulli or Gaussian) is
``model.likelihood``.

Binarisation (``data.binarize``): "none" (continuous pixels in [0, 1]), "static" (threshold
at 0.5, the same every epoch) or "dynamic" (a fresh Bernoulli(pixel) sample every step; the
test set is then binarised once with a fixed key, as in Burda et al. 2016).

Evaluation groups: ``nll`` (ELBO and IWAE-k NLL, ``genimg.metrics.likelihood``), ``recon``
(MSE / PSNR / SSIM of posterior-mean reconstructions) and ``figures`` (reconstruction,
prior-sample and latent-traversal grids in ``W/figures``).
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from genimg import images as images_lib
from genimg import losses, synthesis
from genimg.errors import UserError
from genimg.families import common
from genimg.metrics.likelihood import evaluate_nll
from genimg.metrics.reconstruction import evaluate_reconstruction
from genimg.models import precision
from genimg.models.vae import VAE, make_vae
from genimg.train import family as family_lib
from genimg.train.common import (
    State,
    apply_gradients,
    create_state,
    device_rng,
    global_batch_op,
    global_normal,
    maybe_pmean,
)

BINARIZE = ("none", "static", "dynamic")
EVAL_BINARIZE_SEED = 0  # key of the one fixed stochastic binarisation of a "dynamic" test set


# --- config ---------------------------------------------------------------------------------


def model_config(arch: str = "conv", conditional: bool = False) -> ml_collections.ConfigDict:
    """The ``model`` block: trunks, latent size, likelihood, β and its warm-up."""
    m = common.trunk_config(arch)
    m.latent_dim = 16
    m.likelihood = "bernoulli"  # | "gaussian_fixed" | "gaussian_learned"
    m.gaussian_scale = 0.1  # std of "gaussian_fixed", pixels in [0, 1]
    m.beta = 1.0  # KL weight: 1 = ELBO, > 1 = beta-VAE
    m.kl_warmup_steps = 0  # linear KL warm-up from 0 to beta
    m.weight_decay = 0.0  # L2 penalty 0.5 * wd * ||w||^2 on kernels
    if conditional:
        m.label_embed_dim = 0  # 0 = one-hot labels, else a learned embedding of this size
        # > 0: the class term (module docstring) with this weight per image, in nats, beside
        # the ELBO's; its classifier (one conv per stage of these widths) is trained with it.
        m.aux_classifier_weight = 0.0
        m.aux_classifier_widths = (16, 32)
    return m


def eval_config() -> dict:
    """The family's keys of the ``eval`` block."""
    return dict(
        k=5000,  # importance samples of the IWAE bound
        chunk_size=500,  # samples per decoder pass (memory: chunk * batch images)
    )


def tiny(config: ml_collections.ConfigDict) -> None:
    """The ``tiny`` preset's model and eval settings."""
    common.tiny_trunk(config.model)
    config.model.latent_dim = 2
    if "aux_classifier_widths" in config.model:
        config.model.aux_classifier_widths = (4, 8)
    config.eval.update(k=8, chunk_size=4, batch_size=4)


# --- binarisation and the step --------------------------------------------------------------


def _check_binarize(mode: str) -> None:
    if mode not in BINARIZE:
        raise ValueError(f"unknown data.binarize '{mode}'; expected one of {', '.join(BINARIZE)}")


def binarize(rng: jax.Array, x: jax.Array, mode: str) -> jax.Array:
    """Pixels in [0, 1] -> {0, 1}: "static" thresholds at 0.5, "dynamic" samples Bernoulli(x)."""
    if mode == "none":
        return x
    if mode == "static":
        return (x > 0.5).astype(x.dtype)
    _check_binarize(mode)
    return jax.random.bernoulli(rng, x).astype(x.dtype)


def eval_binarize(x: jax.Array, mode: str) -> jax.Array:
    """The test-set binarisation ``[N, H, W, C]`` of a run trained with ``mode``.

    For "dynamic", image ``i`` is sampled with ``fold_in(key(EVAL_BINARIZE_SEED), i)``: fixed,
    and the first N images get the same pixels whether or not the rest of the split is used.
    """
    if mode != "dynamic":
        return binarize(None, x, mode)
    base = jax.random.key(EVAL_BINARIZE_SEED)
    keys = jax.vmap(lambda i: jax.random.fold_in(base, i))(jnp.arange(x.shape[0]))
    return jax.vmap(lambda key, image: binarize(key, image, mode))(keys, x)


def make_vae_train_step(
    model: VAE,
    *,
    likelihood: str,
    gaussian_scale: float = 0.1,
    binarize_mode: str = "dynamic",
    beta: float = 1.0,
    kl_warmup_steps: int = 0,
    weight_decay: float = 0.0,
    conditional: bool = False,
    aux_classifier_weight: float = 0.0,
    log_norms: bool = True,
    axis_name: str | None = None,
):
    """Return a pure ``train_step(state, batch, rng) -> (state, metrics)``.

    The loss is ``-(log p(x|z) - beta_t * KL) + weight_decay * 0.5 ||w||^2`` averaged over the
    batch, with ``beta_t = beta * min(1, step / kl_warmup_steps)``. With
    ``aux_classifier_weight = w > 0`` (a conditional model with ``classify``) it adds
    ``CE(C(x), y) + w * CE(C(mean(decode(z', y))), y)`` with ``z' ~ N(0, I)``: the first term
    trains the classifier C on the real (unbinarised) images, the second trains the decoder
    only (C's parameters are held fixed in it). Under ``axis_name`` the
    gradients and metrics are averaged over devices; binarisation and ``z`` noise are slices
    of one global draw (dropout is per device).
    """
    losses.likelihood_channels(likelihood, 1)  # validates the likelihood eagerly
    _check_binarize(binarize_mode)
    if aux_classifier_weight and not conditional:
        raise ValueError("aux_classifier_weight needs a conditional VAE (labels in the batch)")

    def forward(module: VAE, x, eps, labels):
        mean, logvar = module.encode(x, labels, train=True)
        z = losses.reparameterize(mean, logvar, eps)
        return module.decode(z, labels, train=True), mean, logvar

    def classify_prior_samples(module: VAE, z, labels):
        """C's logits of the decoder's mean images of ``z`` (drawn from the prior)."""
        out = module.decode(z, labels, train=True)
        return module.classify(losses.likelihood_mean(likelihood, out))

    def train_step(state: State, batch: dict, rng: jax.Array):
        rng = jax.random.fold_in(rng, state.step)
        binarize_rng, z_rng, dropout_rng = jax.random.split(rng, 3)
        dropout_rng = device_rng(dropout_rng, axis_name)
        labels = batch["label"] if conditional else None
        local_batch = batch["image"].shape[0]
        x = global_batch_op(
            functools.partial(binarize, mode=binarize_mode),
            binarize_rng,
            batch["image"],
            axis_name,
        )
        eps = global_normal(z_rng, local_batch, (model.latent_dim,), axis_name)
        kl_w = losses.kl_weight(state.step, beta, kl_warmup_steps)
        if aux_classifier_weight:
            prior_rng = jax.random.fold_in(z_rng, 1)
            eps_prior = global_normal(prior_rng, local_batch, (model.latent_dim,), axis_name)

        def class_term(params):
            """(real CE into C, weighted prior-sample CE into the decoder, their metrics)."""
            ce = optax.softmax_cross_entropy_with_integer_labels
            real = model.apply({"params": params}, batch["image"], method=VAE.classify)
            held = {**params, "aux_classifier": jax.lax.stop_gradient(params["aux_classifier"])}
            fake = model.apply(
                {"params": held},
                eps_prior,
                labels,
                method=classify_prior_samples,
                rngs={"dropout": jax.random.fold_in(dropout_rng, 1)},
            )
            real_ce, fake_ce = ce(real, labels).mean(), ce(fake, labels).mean()
            metrics = {
                "aux_real_ce": real_ce,
                "aux_fake_ce": fake_ce,
                "aux_fake_acc": jnp.mean(jnp.argmax(fake, -1) == labels),
            }
            return real_ce + aux_classifier_weight * fake_ce, metrics

        def loss_fn(params):
            out, mean, logvar = model.apply(
                {"params": params}, x, eps, labels, method=forward, rngs={"dropout": dropout_rng}
            )
            log_lik = losses.log_likelihood(likelihood, out, x, scale=gaussian_scale)
            kl = losses.gaussian_kl(mean, logvar)
            loss, parts = losses.vae_loss(log_lik, kl, kl_w)
            if aux_classifier_weight:
                aux_loss, aux_parts = class_term(params)
                loss, parts = loss + aux_loss, {**parts, **aux_parts}
            if weight_decay:
                loss = loss + weight_decay * losses.l2_penalty(params)
            return loss, parts

        (loss, parts), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        new_state, norm_metrics = apply_gradients(state, grads, axis_name, log_norms=log_norms)
        metrics = {"loss": loss, **parts, "kl_weight": kl_w, **norm_metrics}
        return new_state, maybe_pmean(metrics, axis_name)

    return train_step


# --- evaluation groups ----------------------------------------------------------------------


def _test_images(family, data) -> np.ndarray:
    """The test images binarised as the run was trained (uint8 0/255), or unchanged."""
    x = eval_binarize(jnp.asarray(data.images, jnp.float32) / 255.0, family.binarize_mode)
    return np.asarray(jnp.round(x * 255.0), np.uint8)


def nll_group(family, state, data) -> dict:
    """ELBO and IWAE-k NLL (nats, bits/dim) of the test images."""
    model, m = family.model, family.config.model
    eval_cfg = family.config.eval
    variables = {"params": state.params}

    def encode_fn(x, labels=None):
        return model.apply(variables, x, labels, method=VAE.encode)

    def log_lik_fn(z, x, labels=None):  # z [c, B, L] -> [c, B]
        c, b, _ = z.shape
        tiled = None if labels is None else jnp.tile(labels, c)
        out = model.apply(variables, z.reshape(c * b, -1), tiled, method=VAE.decode)
        out = out.reshape(c, b, *out.shape[1:])
        return losses.log_likelihood(m.likelihood, out, x, scale=m.gaussian_scale)

    return evaluate_nll(
        encode_fn,
        log_lik_fn,
        data.batches(_test_images(family, data), with_labels=family.conditional),
        jax.random.key(data.seed),
        int(data.k or eval_cfg.k),
        chunk_size=eval_cfg.chunk_size,
        num_bins=256 if m.likelihood.startswith("gaussian") else None,
    )


def recon_group(family, state, data) -> dict:
    """MSE / PSNR / SSIM of posterior-mean reconstructions of the (binarised) test images."""
    reconstruct = jax.jit(functools.partial(family.reconstruct, state))
    batches = data.batches(_test_images(family, data), with_labels=family.conditional)
    scores = evaluate_reconstruction(reconstruct, batches)
    return {name: scores[name] for name in ("mse", "psnr", "ssim")}


def figures_group(family, state, data, num: int = 10) -> dict:
    """Reconstruction (rows: input | output), prior-sample and latent-traversal grids, each
    carrying the run's provenance (``data.provenance``)."""
    out_dir = data.workdir / "figures"
    x = jnp.asarray(_test_images(family, data)[:num], jnp.float32) / 255.0
    labels = jnp.asarray(data.labels[:num]) if family.conditional else None
    recon = family.reconstruct(state, x, labels)
    images_lib.save_png(
        out_dir / "reconstructions.png",
        images_lib.make_grid(jnp.concatenate([x, recon]), num),
        data.provenance,
    )
    n = 100 if family.conditional else 64
    samples, _ = family.sample(state, jax.random.key(data.seed), n)
    ncols = 10 if n == 100 else math.ceil(math.sqrt(n))
    images_lib.save_png(
        out_dir / "samples.png", images_lib.make_grid(samples, ncols), data.provenance
    )
    traversal = synthesis.latent_traversal(family, state, x[:1], labels)
    images_lib.save_png(
        out_dir / "traversal.png", images_lib.make_grid(traversal, 11), data.provenance
    )
    return {}


# --- the family -----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class VAEFamily(family_lib.Family):
    """`Family` plus what the evaluation groups read: the model, config and binarisation."""

    model: VAE = None
    config: ml_collections.ConfigDict = None
    binarize_mode: str = "none"


def _build(config, image_shape, num_classes, conditional: bool) -> VAEFamily:
    m = config.model
    if conditional and not num_classes:
        raise UserError("family 'cvae' needs labelled data; this data source has no labels")
    aux_weight = float(m.get("aux_classifier_weight", 0.0)) if conditional else 0.0
    if aux_weight < 0:
        raise UserError(f"model.aux_classifier_weight must be >= 0, got {aux_weight}")
    model = make_vae(
        m.arch,
        image_shape,
        m.latent_dim,
        losses.likelihood_channels(m.likelihood, image_shape[-1]),
        num_classes=num_classes if conditional else 0,
        label_embed_dim=m.label_embed_dim if conditional else 0,
        aux_classifier_widths=tuple(m.aux_classifier_widths) if aux_weight else (),
        **common.trunk_kwargs(m),
    )
    model = precision.wrap(model, m.get("dtype", "float32"))
    binarize_mode = config.data.binarize
    _check_binarize(binarize_mode)

    def init_state(rng):
        x = jnp.zeros((1, *image_shape))
        labels = jnp.zeros((1,), jnp.int32) if conditional else None
        return create_state(model, common.make_adam(config.optim), rng, x, rng, labels)

    def make_train_step(axis_name):
        return make_vae_train_step(
            model,
            likelihood=m.likelihood,
            gaussian_scale=m.gaussian_scale,
            binarize_mode=binarize_mode,
            beta=m.beta,
            kl_warmup_steps=m.kl_warmup_steps,
            weight_decay=m.weight_decay,
            conditional=conditional,
            aux_classifier_weight=aux_weight,
            log_norms=config.train.log_norms,
            axis_name=axis_name,
        )

    def encode(state, images, labels=None):
        """The posterior mean of ``images`` (as given: binarise first to match training)."""
        mean, _ = model.apply({"params": state.params}, images, labels, method=VAE.encode)
        return mean

    def decode(state, z, labels=None):
        """The mean image of ``p(x | z)``."""
        out = model.apply({"params": state.params}, z, labels, method=VAE.decode)
        return losses.likelihood_mean(m.likelihood, out)

    def reconstruct(state, images, labels=None):
        return decode(state, encode(state, images, labels), labels)

    def sample(state, rng, num, labels=None):
        z = jax.random.normal(rng, (num, m.latent_dim))
        if conditional and labels is None:
            labels = jnp.arange(num) % num_classes  # one column per class in a grid
        return decode(state, z, labels), labels

    return VAEFamily(
        name="cvae" if conditional else "vae",
        data_scale="0_1",
        init_state=init_state,
        make_train_step=make_train_step,
        sample=sample,
        num_classes=num_classes if conditional else None,
        conditional=conditional,
        encode=encode,
        decode=decode,
        reconstruct=reconstruct,
        latent_dim=m.latent_dim,
        eval_groups={"nll": nll_group, "recon": recon_group, "figures": figures_group},
        default_metrics=("nll", "recon"),
        model=model,
        config=config,
        binarize_mode=binarize_mode,
    )


@family_lib.register("vae")
def build(config, image_shape, num_classes) -> VAEFamily:
    """The VAE of ``config.model``; see ``experiments/vae.py``."""
    return _build(config, image_shape, num_classes, conditional=False)


@family_lib.register("cvae")
def build_conditional(config, image_shape, num_classes) -> VAEFamily:
    """The class-conditional VAE (Sohn et al. 2015); see ``experiments/cvae.py``."""
    return _build(config, image_shape, num_classes, conditional=True)

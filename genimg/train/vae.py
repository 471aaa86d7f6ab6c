"""VAE training (families "vae" and "cvae"): state, the pure train-step factory, the builder.

One step: binarise the batch (config ``data.binarize``), encode, draw ``z`` with the
reparameterisation trick, decode, and take one optimizer step on the negative ELBO with the
KL weighted by ``beta`` (β-VAE) times a linear warm-up. ``cvae`` feeds the labels to the
encoder and the decoder. The likelihood (Bernoulli or Gaussian) is ``model.likelihood``.

Binarisation (``data.binarize``): "none" (continuous pixels in [0, 1]), "static" (threshold
at 0.5, the same every epoch) or "dynamic" (a fresh Bernoulli(pixel) sample every step; the
test set is then binarised once with a fixed key, as in Burda et al. 2016).
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax.training import train_state

from genimg import losses
from genimg.models.autoencoder import make_trunks
from genimg.models.vae import VAE
from genimg.train.common import Family, device_rng, global_normal, maybe_pmean, norms

BINARIZE = ("none", "static", "dynamic")
EVAL_BINARIZE_SEED = 0  # key of the one fixed stochastic binarisation of a "dynamic" test set
ACTIVATIONS = {"relu": nn.relu, "elu": nn.elu, "silu": nn.silu, "gelu": nn.gelu, "tanh": jnp.tanh}
NORMS = {"none": None, "layer": nn.LayerNorm}


class State(train_state.TrainState):
    """step, params, opt_state (+ static apply_fn, tx): what VAE and AE runs checkpoint."""


def create_state(model: nn.Module, tx, rng: jax.Array, *init_args) -> State:
    """Initialise ``model`` on ``init_args`` (batch of one) and its optimizer."""
    params = model.init(rng, *init_args)["params"]
    return State.create(apply_fn=model.apply, params=params, tx=tx)


def trunk_kwargs(model_cfg) -> dict:
    """``make_trunks`` keyword arguments from ``config.model``."""
    if model_cfg.act not in ACTIVATIONS:
        raise ValueError(
            f"unknown model.act '{model_cfg.act}'; expected one of {list(ACTIVATIONS)}"
        )
    if model_cfg.norm not in NORMS:
        raise ValueError(f"unknown model.norm '{model_cfg.norm}'; expected one of {list(NORMS)}")
    return dict(
        widths=tuple(model_cfg.widths),
        hidden=tuple(model_cfg.hidden),
        act=ACTIVATIONS[model_cfg.act],
        norm=NORMS[model_cfg.norm],
        dropout=model_cfg.dropout,
        conv_backend=model_cfg.get("conv_backend", "xla"),
    )


def make_optimizer(optim_cfg) -> optax.GradientTransformation:
    """Adam, with global-norm gradient clipping when ``optim.grad_clip > 0``."""
    tx = optax.adam(optim_cfg.lr, b1=optim_cfg.b1, b2=optim_cfg.b2)
    if optim_cfg.get("grad_clip", 0.0) > 0:
        tx = optax.chain(optax.clip_by_global_norm(optim_cfg.grad_clip), tx)
    return tx


def global_batch_op(fn, rng, x, axis_name: str | None):
    """``fn(rng, x)`` applied to the whole global batch; returns this device's slice.

    Random per-example ops (dynamic binarisation, corruptions) then draw exactly the noise
    one device draws for the same global batch, so N devices reproduce a 1-device run.
    """
    if axis_name is None:
        return fn(rng, x)
    full = jax.lax.all_gather(x, axis_name, tiled=True)  # [n * b, ...]
    out = fn(rng, full)
    start = jax.lax.axis_index(axis_name) * x.shape[0]
    return jax.lax.dynamic_slice_in_dim(out, start, x.shape[0])


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
    log_norms: bool = True,
    axis_name: str | None = None,
):
    """Return a pure ``train_step(state, batch, rng) -> (state, metrics)``.

    The loss is ``-(log p(x|z) - beta_t * KL) + weight_decay * 0.5 ||w||^2`` averaged over the
    batch, with ``beta_t = beta * min(1, step / kl_warmup_steps)``. Under ``axis_name`` the
    gradients and metrics are averaged over devices; binarisation and ``z`` noise are slices
    of one global draw (dropout is per device).
    """
    losses.likelihood_channels(likelihood, 1)  # validates the likelihood eagerly
    _check_binarize(binarize_mode)

    def forward(module: VAE, x, eps, labels):
        mean, logvar = module.encode(x, labels, train=True)
        z = mean + jnp.exp(0.5 * logvar) * eps
        return module.decode(z, labels, train=True), mean, logvar

    def train_step(state: State, batch: dict, rng: jax.Array):
        rng = jax.random.fold_in(rng, state.step)
        bin_rng, z_rng, drop_rng = jax.random.split(rng, 3)
        drop_rng = device_rng(drop_rng, axis_name)
        labels = batch["label"] if conditional else None
        b = batch["image"].shape[0]
        x = global_batch_op(
            functools.partial(binarize, mode=binarize_mode), bin_rng, batch["image"], axis_name
        )
        eps = global_normal(z_rng, b, (model.latent_dim,), axis_name)
        kl_w = losses.kl_weight(state.step, beta, kl_warmup_steps)

        def loss_fn(params):
            out, mean, logvar = model.apply(
                {"params": params}, x, eps, labels, method=forward, rngs={"dropout": drop_rng}
            )
            log_lik = losses.log_likelihood(likelihood, out, x, scale=gaussian_scale)
            kl = losses.gaussian_kl(mean, logvar)
            loss, parts = losses.vae_loss(log_lik, kl, kl_w)
            if weight_decay:
                loss = loss + weight_decay * losses.l2_penalty(params)
            return loss, parts

        (loss, parts), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        grads = maybe_pmean(grads, axis_name)
        new_state = state.apply_gradients(grads=grads)
        metrics = {
            "loss": loss,
            **parts,
            "kl_weight": kl_w,
            **norms("", grads, state.params, log_norms),
        }
        return new_state, maybe_pmean(metrics, axis_name)

    return train_step


def build_model(config, image_shape, num_classes) -> VAE:
    """The VAE of ``config.model`` for images of ``image_shape``."""
    m = config.model
    conditional = m.family == "cvae"
    if conditional and not num_classes:
        raise ValueError("model.family='cvae' needs labelled data; this data source has none")
    out_channels = losses.likelihood_channels(m.likelihood, image_shape[-1])
    encoder, decoder = make_trunks(
        m.arch, image_shape, 2 * m.latent_dim, out_channels, **trunk_kwargs(m)
    )
    return VAE(
        encoder,
        decoder,
        m.latent_dim,
        num_classes=num_classes if conditional else 0,
        label_embed_dim=m.get("label_embed_dim", 0) if conditional else 0,
    )


def sample_labels(num: int, num_classes: int) -> jax.Array:
    """``0, 1, ..., K-1, 0, 1, ...``: one column per class in a sample grid."""
    return jnp.arange(num) % num_classes


def build(
    config: ml_collections.ConfigDict, image_shape: tuple[int, int, int], num_classes: int | None
) -> Family:
    """The "vae" / "cvae" family for ``config.model``; see ``experiments/vae.py``."""
    m, d = config.model, config.data
    image_shape = tuple(image_shape)
    model = build_model(config, image_shape, num_classes)
    conditional = model.num_classes > 0
    binarize_mode = d.get("binarize", "none")
    _check_binarize(binarize_mode)

    def init_state(rng):
        x = jnp.zeros((1, *image_shape))
        labels = jnp.zeros((1,), jnp.int32) if conditional else None
        return create_state(model, make_optimizer(config.optim), rng, x, rng, labels)

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
            log_norms=config.train.get("log_norms", True),
            axis_name=axis_name,
        )

    def sample(state, rng, num):
        z = jax.random.normal(rng, (num, m.latent_dim))
        labels = sample_labels(num, model.num_classes) if conditional else None
        out = model.apply({"params": state.params}, z, labels, method=VAE.decode)
        return losses.likelihood_mean(m.likelihood, out)

    def reconstruct(state, images, labels=None):
        """Decode the posterior mean of (binarised) ``images``."""
        x = eval_binarize(images, binarize_mode)
        variables = {"params": state.params}
        mean, _ = model.apply(variables, x, labels, method=VAE.encode)
        return losses.likelihood_mean(
            m.likelihood, model.apply(variables, mean, labels, method=VAE.decode)
        )

    return Family(
        name=m.family,
        data_scale="0_1",
        init_state=init_state,
        make_train_step=make_train_step,
        sample=sample,
        reconstruct=reconstruct,
    )


def likelihood_fns(config, state, image_shape, num_classes):
    """``(encode_fn, log_lik_fn)`` for ``genimg.metrics.likelihood`` (labels as ``*extra``)."""
    m = config.model
    model = build_model(config, tuple(image_shape), num_classes)
    variables = {"params": state.params}

    def encode_fn(x, labels=None):
        return model.apply(variables, x, labels, method=VAE.encode)

    def log_lik_fn(z, x, labels=None):  # z [c, B, L] -> [c, B]
        c, b, _ = z.shape
        lab = None if labels is None else jnp.tile(labels, c)
        out = model.apply(variables, z.reshape(c * b, -1), lab, method=VAE.decode)
        out = out.reshape(c, b, *out.shape[1:])
        return losses.log_likelihood(m.likelihood, out, x, scale=m.gaussian_scale)

    return encode_fn, log_lik_fn


def latent_traversal(
    config, state, image_shape, num_classes, x, labels=None, num_dims=10, num_steps=11, span=3.0
):
    """Images ``[D * S, H, W, C]``: row ``d`` sweeps latent dimension ``d`` over
    ``linspace(-span, span, S)`` around the posterior mean of ``x[:1]``, the others fixed."""
    m = config.model
    model = build_model(config, tuple(image_shape), num_classes)
    variables = {"params": state.params}
    labels = None if labels is None else labels[:1]
    mean, _ = model.apply(variables, x[:1], labels, method=VAE.encode)  # [1, L]
    dims = min(num_dims, m.latent_dim)
    values = jnp.linspace(-span, span, num_steps)
    z = jnp.tile(mean, (dims * num_steps, 1))  # [D * S, L]
    rows = jnp.repeat(jnp.arange(dims), num_steps)
    z = z.at[jnp.arange(dims * num_steps), rows].set(jnp.tile(values, dims))
    lab = None if labels is None else jnp.repeat(labels, dims * num_steps)
    out = model.apply(variables, z, lab, method=VAE.decode)
    return losses.likelihood_mean(m.likelihood, out)

"""The GAN families ("gan" and the class-conditional "cgan"): state, the pure train-step
factory, config blocks and the builders.

One step is ``n_critic`` discriminator updates followed by one generator update, each with
its own optimizer (separate learning rates give TTUR), then an EMA update of the generator.
The loss (minimax, non-saturating, hinge, least-squares, WGAN), the gradient penalty
(WGAN-GP) and R1 are config choices; see ``experiments/dcgan.py`` and ``experiments/mlp_gan.py``.

"cgan" is the same step with the labels flowing through the batch (``experiments/cgan.py``):
D sees each real image with its own label, and each fake image with the label it was drawn
for; G is conditioned by conditional batch norm or a one-hot input, D by projection or one-hot
input channels (``genimg.models.gan``). Fake labels are drawn uniformly over the classes, as
in the projection discriminator's and BigGAN's reference code: G is trained for every class
at the rate it is later sampled with (balanced), independently of how the real batch happens
to be drawn, and a fake batch never copies the real batch's class counts (which would let D
compare the two batches' label histograms instead of images).
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
from genimg.errors import UserError
from genimg.models import gan as gan_models
from genimg.models import precision
from genimg.train import family as family_lib
from genimg.train.common import (
    device_rng,
    ema_update,
    ema_warmup,
    global_normal,
    global_randint,
    maybe_pmean,
    norms,
    optimizer_step,
    to_unit_range,
)

ARCHS = ("dcgan", "mlp")


# --- config ---------------------------------------------------------------------------------


def model_config(arch: str = "dcgan", conditional: bool = False) -> ml_collections.ConfigDict:
    """The ``model`` block: the loss and its penalties, EMA, and the keys of ``arch``
    (and, for "cgan", how each network is conditioned)."""
    if arch not in ARCHS:
        raise ValueError(f"unknown GAN arch '{arch}'; expected one of {ARCHS}")
    m = ml_collections.ConfigDict()
    m.arch = arch
    m.z_dim = 100
    m.dtype = "float32"  # compute dtype: "float32" | "bfloat16" (params/optimizer/losses float32)
    if arch == "dcgan":
        m.g_width = 64  # channels of the last hidden G stage (doubles per stage)
        m.d_width = 64  # channels of the first D conv (doubles per stage)
        m.kernel_size = 5
        m.upsample_impl = "auto"  # layers.ConvTranspose: one of layers.IMPLS
        m.conv_backend = "auto"  # "auto" (oneDNN on CPU where available) | "xla" | "onednn"
        m.d_dropout = 0.0
        m.spectral_norm = False
    else:
        m.g_hidden = (256, 512, 1024)
        m.d_hidden = (512, 256)
    if conditional:
        # G: "cbn" (class-conditional batch norm; DCGAN only) | "concat" (one-hot joins z)
        m.g_conditioning = "cbn" if arch == "dcgan" else "concat"
        # D: "projection" (Miyato & Koyama 2018) | "concat" (one-hot joins the input)
        m.d_conditioning = "projection"
    m.loss = "nonsaturating"  # minimax | nonsaturating | hinge | lsgan | wgan
    m.n_critic = 1  # D updates per G update (each on its own real batch)
    m.gp_weight = 0.0  # WGAN-GP penalty weight (10 in the paper)
    m.r1_weight = 0.0  # R1 gamma
    m.ema_decay = 0.999  # EMA of G weights for sampling; 0 = sample the raw weights
    return m


def optim_config() -> ml_collections.ConfigDict:
    """The ``optim`` block: Adam for each network; different learning rates give TTUR."""
    o = ml_collections.ConfigDict()
    o.g_lr = 2e-4
    o.d_lr = 2e-4  # a different value gives TTUR (Heusel et al. 2017)
    o.b1 = 0.5
    o.b2 = 0.999
    return o


def tiny(config: ml_collections.ConfigDict) -> None:
    """Narrow networks for the ``tiny`` presets."""
    if config.model.arch == "dcgan":
        config.model.update(g_width=8, d_width=8)
    else:
        config.model.update(g_hidden=(32, 32, 64), d_hidden=(32, 16))


# --- state and step -------------------------------------------------------------------------


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
    num_classes: int = 0,
    example_labels: jax.Array | None = None,
) -> GANState:
    """Initialise both networks (class-conditional ones when ``num_classes > 0``; networks
    conditioned on other labels, e.g. captions, when ``example_labels`` gives one batch of
    them) and their optimizers."""
    g_rng, d_rng, dropout_rng = jax.random.split(rng, 3)
    labels = jnp.zeros((1,), jnp.int32) if num_classes else None
    if example_labels is not None:
        labels = example_labels
    g_vars = generator.init(g_rng, jnp.zeros((1, z_dim)), labels, train=False)
    d_vars = discriminator.init(
        {"params": d_rng, "dropout": dropout_rng},
        jnp.zeros((1, *image_shape)),
        labels,
        train=False,
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


def step_options(config) -> dict:
    """The keyword arguments of `make_gan_train_step` that a config's ``model`` and ``train``
    blocks set (every family built on this step reads them the same way)."""
    m = config.model
    return dict(
        z_dim=m.z_dim,
        loss=m.loss,
        n_critic=m.n_critic,
        gp_weight=m.gp_weight,
        r1_weight=m.r1_weight,
        ema_decay=m.ema_decay,
        log_norms=config.train.log_norms,
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
    num_classes: int = 0,
    fake_labels_fn=None,
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

    ``num_classes > 0`` (class-conditional networks): ``batch["label"]`` holds the real
    images' labels (stacked like the images), each fake batch is drawn for labels uniform over
    the classes (each device's slice of one global draw), and both networks get the labels.
    The gradient penalty's interpolates between a real and a fake image take the real one's
    label. With ``num_classes=0`` the labels are never read and nothing else changes.

    ``fake_labels_fn(rng, real_labels) -> labels`` (networks conditioned on labels that are
    not class ids, e.g. captions as token ids): the labels of each fake batch are made from
    the real labels of the same slice (critic update ``i``: slice ``i``; the generator update:
    slice 0) instead of drawn uniformly; ``num_classes`` is then ignored.
    """
    conditional = bool(num_classes) or fake_labels_fn is not None
    losses.gan_d_loss(loss, jnp.zeros(1), jnp.zeros(1))  # validates `loss` eagerly

    def generate(g_params, g_stats, z, labels):
        """G in training mode: (images, updated batch-norm statistics)."""
        images, new_vars = generator.apply(
            {"params": g_params, "batch_stats": g_stats},
            z,
            labels,
            train=True,
            mutable=["batch_stats"],
        )
        return images, new_vars.get("batch_stats", {})

    def discriminate(d_params, d_stats, images, labels, dropout_rng):
        """D in training mode: (logits, updated spectral-norm statistics)."""
        logits, new_vars = discriminator.apply(
            {"params": d_params, "batch_stats": d_stats},
            images,
            labels,
            train=True,
            rngs={"dropout": dropout_rng},
            mutable=["batch_stats"],
        )
        return logits, new_vars.get("batch_stats", {})

    def fake_labels(label_rng, local_batch, real_y):
        """Labels of a fake batch: from ``fake_labels_fn``, else uniform class labels (None
        for an unconditional GAN)."""
        if fake_labels_fn is not None:
            return fake_labels_fn(label_rng, real_y)
        if not num_classes:
            return None
        return global_randint(label_rng, local_batch, num_classes, axis_name)

    def d_loss_fn(d_params, d_stats, real, real_y, fake, fake_y, penalty_rng, dropout_rng):
        """The critic loss on one real and one fake batch, with its penalties."""
        real_logits, d_stats = discriminate(d_params, d_stats, real, real_y, dropout_rng)
        fake_logits, d_stats = discriminate(d_params, d_stats, fake, fake_y, dropout_rng)
        total, parts = losses.gan_d_loss(loss, real_logits, fake_logits)
        parts = dict(parts, d_real=jnp.mean(real_logits), d_fake=jnp.mean(fake_logits))

        def critic(images):  # D as a function of its input, for the gradient penalties
            return discriminate(d_params, d_stats, images, real_y, dropout_rng)[0]

        if gp_weight:
            parts["gp"] = losses.gradient_penalty(critic, real, fake, penalty_rng)
            total = total + gp_weight * parts["gp"]
        if r1_weight:
            parts["r1"] = losses.r1_penalty(critic, real)
            total = total + 0.5 * r1_weight * parts["r1"]
        return total, (parts, d_stats)

    def train_step(state: GANState, batch: dict, rng: jax.Array):
        noise_rng, dropout_rng = jax.random.split(jax.random.fold_in(rng, state.step))
        dropout_rng = device_rng(dropout_rng, axis_name)  # dropout: independent per device
        # z of critic update i is drawn from fold_in(noise_rng, i), i <= n_critic; the fake
        # labels of a conditional GAN from their own branch, so z stays what it always was.
        label_rng = jax.random.fold_in(noise_rng, n_critic + 1)
        real_batches = batch["image"]
        real_labels = batch["label"] if conditional else None
        local_batch = real_batches.shape[0] // n_critic
        g_params, g_stats = state.g_params, state.g_batch_stats
        d_params, d_stats, d_opt_state = state.d_params, state.d_batch_stats, state.d_opt_state

        for i in range(n_critic):  # unrolled: lax.scan is far slower for convs on CPU
            z_rng, penalty_rng = jax.random.split(jax.random.fold_in(noise_rng, i))
            d_dropout_rng = jax.random.fold_in(dropout_rng, i)
            real = real_batches[i * local_batch : (i + 1) * local_batch]
            real_y = None
            if conditional:
                real_y = real_labels[i * local_batch : (i + 1) * local_batch]
            z = global_normal(z_rng, local_batch, (z_dim,), axis_name)
            fake_y = fake_labels(jax.random.fold_in(label_rng, i), local_batch, real_y)
            fake, g_stats = generate(g_params, g_stats, z, fake_y)
            (d_loss, (d_parts, d_stats)), d_grads = jax.value_and_grad(d_loss_fn, has_aux=True)(
                d_params,
                d_stats,
                real,
                real_y,
                jax.lax.stop_gradient(fake),
                fake_y,
                penalty_rng,
                d_dropout_rng,
            )
            d_params, d_opt_state, d_grads = optimizer_step(
                d_params, d_opt_state, d_grads, state.d_tx, axis_name
            )

        z = global_normal(jax.random.fold_in(noise_rng, n_critic), local_batch, (z_dim,), axis_name)
        first_y = real_labels[:local_batch] if conditional else None
        g_y = fake_labels(jax.random.fold_in(label_rng, n_critic), local_batch, first_y)
        g_dropout_rng = jax.random.fold_in(dropout_rng, n_critic)

        def g_loss_fn(g_params):
            """The generator loss against the updated D (whose statistics stay as they are)."""
            fake, new_g_stats = generate(g_params, g_stats, z, g_y)
            fake_logits, _ = discriminate(d_params, d_stats, fake, g_y, g_dropout_rng)
            g_loss, parts = losses.gan_g_loss(loss, fake_logits)
            return g_loss, (parts, new_g_stats)

        (g_loss, (g_parts, g_stats)), g_grads = jax.value_and_grad(g_loss_fn, has_aux=True)(
            g_params
        )
        g_params, g_opt_state, g_grads = optimizer_step(
            g_params, state.g_opt_state, g_grads, state.g_tx, axis_name
        )

        next_step = state.step + 1
        ema_params = state.ema_params
        if ema_decay:
            ema_params = ema_update(ema_params, g_params, ema_warmup(ema_decay, state.step))
        new_state = state.replace(
            step=next_step,
            g_params=g_params,
            d_params=d_params,
            g_batch_stats=g_stats,
            d_batch_stats=d_stats,
            g_opt_state=g_opt_state,
            d_opt_state=d_opt_state,
            ema_params=ema_params,
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


# --- the family -----------------------------------------------------------------------------


def build_models(model_cfg, image_shape, axis_name: str | None = None, num_classes: int = 0):
    """(generator, discriminator, data_scale) for ``config.model``; class-conditional networks
    (conditioned as ``model.g_conditioning`` / ``model.d_conditioning``) when ``num_classes``;
    both computing in ``model.dtype`` (`genimg.models.precision`)."""
    g, d, scale = _networks(model_cfg, image_shape, axis_name, num_classes)
    dtype = model_cfg.get("dtype", "float32")
    return precision.wrap(g, dtype), precision.wrap(d, dtype), scale


def _networks(model_cfg, image_shape, axis_name, num_classes):
    g_cond, d_cond = {}, {}
    if num_classes:
        g_cond = dict(num_classes=num_classes, conditioning=model_cfg.g_conditioning)
        d_cond = dict(num_classes=num_classes, conditioning=model_cfg.d_conditioning)
    if model_cfg.arch == "mlp":
        return (
            gan_models.MLPGenerator(
                image_shape=tuple(image_shape), hidden=tuple(model_cfg.g_hidden), **g_cond
            ),
            gan_models.MLPDiscriminator(hidden=tuple(model_cfg.d_hidden), **d_cond),
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
                conv_backend=model_cfg.conv_backend,
                **g_cond,
            ),
            gan_models.DCGANDiscriminator(
                width=model_cfg.d_width,
                kernel_size=model_cfg.kernel_size,
                dropout=model_cfg.d_dropout,
                spectral_norm=model_cfg.spectral_norm,
                conv_backend=model_cfg.conv_backend,
                **d_cond,
            ),
            "-1_1",
        )
    raise ValueError(f"unknown GAN model.arch '{model_cfg.arch}'; expected one of {ARCHS}")


def _build(config, image_shape, num_classes: int, name: str) -> family_lib.Family:
    """The GAN family of ``config.model`` / ``config.optim``; class-conditional when
    ``num_classes > 0``."""
    m, o = config.model, config.optim
    generator, discriminator, scale = build_models(m, image_shape, num_classes=num_classes)

    def adam(lr):
        return optax.adam(lr, b1=o.b1, b2=o.b2)

    def init_state(rng):
        return create_gan_state(
            generator,
            discriminator,
            adam(o.g_lr),
            adam(o.d_lr),
            rng,
            m.z_dim,
            image_shape,
            num_classes,
        )

    def make_train_step(axis_name):
        g, d, _ = build_models(m, image_shape, axis_name, num_classes)
        return make_gan_train_step(
            g, d, axis_name=axis_name, num_classes=num_classes, **step_options(config)
        )

    def decode(state: GANState, z, labels=None):
        """The sampling generator (EMA weights unless ``ema_decay=0``) at codes ``z`` (and,
        for "cgan", classes ``labels``): differentiable in ``z``."""
        if not num_classes:
            labels = None
        params = state.ema_params if m.ema_decay > 0 else state.g_params
        images = generator.apply(
            {"params": params, "batch_stats": state.g_batch_stats}, z, labels, train=False
        )
        return to_unit_range(images, scale)

    def sample(state: GANState, rng: jax.Array, num: int, labels=None):
        if not num_classes:
            return decode(state, jax.random.normal(rng, (num, m.z_dim))), None
        if labels is None:
            labels = jnp.arange(num) % num_classes  # balanced: one class per grid column
        return decode(state, jax.random.normal(rng, (num, m.z_dim)), labels), labels

    return family_lib.Family(
        name=name,
        data_scale=scale,
        init_state=init_state,
        make_train_step=make_train_step,
        sample=sample,
        num_classes=num_classes or None,
        conditional=bool(num_classes),
        decode=decode,
        latent_dim=m.z_dim,
        default_metrics=("fid", "kid", "pr"),
        batch_multiplier=m.n_critic,
    )


@family_lib.register("gan")
def build(
    config: ml_collections.ConfigDict, image_shape: tuple[int, int, int], num_classes: int | None
) -> family_lib.Family:
    """The GAN family for ``config.model`` / ``config.optim``."""
    del num_classes  # unconditional
    return _build(config, image_shape, 0, "gan")


@family_lib.register("cgan")
def build_conditional(
    config: ml_collections.ConfigDict, image_shape: tuple[int, int, int], num_classes: int | None
) -> family_lib.Family:
    """The class-conditional GAN (``experiments/cgan.py``): labels reach G and D."""
    if not num_classes:
        raise UserError("family 'cgan' needs labelled data; this data source has no labels")
    return _build(config, image_shape, num_classes, "cgan")

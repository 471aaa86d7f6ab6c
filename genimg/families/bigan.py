"""The BiGAN family ("bigan"): adversarial feature learning (Donahue et al. 2017; ALI,
Dumoulin et al. 2017).

An encoder E(x) -> z is trained with the generator G(z) -> x against a discriminator of
joint pairs D(x, z), which sees ``(x, E(x))`` as real and ``(G(z), z)`` as fake. One step is
``n_critic`` discriminator updates (each on its own real batch), then one update of E and G
together on the last of those batches (one optimizer over both, so ``optim.g_lr`` vs
``optim.d_lr`` gives TTUR) on `genimg.losses.bigan_eg_loss`, then an EMA of E and G. The
loss (`genimg.losses.GAN_LOSSES`), spectral normalisation and dropout of D, TTUR,
``n_critic`` and the EMA are the GAN family's options; ``z`` is standard normal.

Capabilities: ``encode`` (E, the features a probe reads), ``decode`` / ``sample`` (G),
``reconstruct`` (G(E(x))); all with the EMA weights unless ``ema_decay=0``. Evaluation groups:
``recon`` (MSE / PSNR / SSIM of G(E(x)) against x), ``probe_d`` (linear and 1-NN probe of D's
penultimate features of ``(x, E(x))``), ``figures`` (samples and x | G(E(x)) rows); plus, via
``genimg.evaluate``, ``probe`` on E and the sample-quality groups.

Networks: `genimg.models.bigan` and the DCGAN generator of `genimg.models.gan`.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import struct

from genimg import images as images_lib
from genimg import losses
from genimg.data import load
from genimg.metrics import probe as probe_lib
from genimg.metrics.reconstruction import evaluate_reconstruction
from genimg.models.bigan import ConvEncoder, JointDiscriminator
from genimg.models.gan import DCGANGenerator
from genimg.train import family as family_lib
from genimg.train.common import (
    device_rng,
    ema_update,
    ema_warmup,
    global_normal,
    maybe_pmean,
    norms,
    optimizer_step,
    to_unit_range,
)

# --- config ---------------------------------------------------------------------------------


def model_config() -> ml_collections.ConfigDict:
    m = ml_collections.ConfigDict()
    m.z_dim = 64
    m.g_width = 32  # DCGAN generator: channels of the last hidden stage (doubling per stage)
    m.e_width = 32  # encoder: channels of the first conv (doubling per stage)
    m.d_width = 32  # discriminator image path, likewise
    m.d_hidden = 512  # discriminator z path and joint layer
    m.kernel_size = 5
    m.d_dropout = 0.2  # BiGAN / ALI regularise D with dropout
    m.spectral_norm = False
    m.loss = "nonsaturating"  # see genimg.losses.GAN_LOSSES and bigan_eg_loss
    m.n_critic = 1
    m.ema_decay = 0.999  # EMA of E and G; 0 = use the raw weights
    return m


def optim_config() -> ml_collections.ConfigDict:
    o = ml_collections.ConfigDict()
    o.g_lr = 2e-4  # E and G together
    o.d_lr = 2e-4  # a different value gives TTUR
    o.b1 = 0.5
    o.b2 = 0.999
    return o


def tiny(config: ml_collections.ConfigDict) -> None:
    config.model.update(z_dim=4, g_width=4, e_width=4, d_width=4, d_hidden=8)
    config.eval.batch_size = 16


# --- state and step -------------------------------------------------------------------------


class BiGANState(struct.PyTreeNode):
    """E and G (``ge_params = {"e", "g"}``, one optimizer), D, G's batch statistics, D's
    spectral-norm vectors and the EMA of E and G."""

    step: jax.Array
    ge_params: Any
    d_params: Any
    g_batch_stats: Any
    d_batch_stats: Any
    ge_opt_state: Any
    d_opt_state: Any
    ema_params: Any
    ge_tx: optax.GradientTransformation = struct.field(pytree_node=False)
    d_tx: optax.GradientTransformation = struct.field(pytree_node=False)


def make_bigan_train_step(
    generator,
    encoder,
    discriminator,
    *,
    z_dim: int,
    loss: str = "nonsaturating",
    n_critic: int = 1,
    ema_decay: float = 0.999,
    log_norms: bool = True,
    axis_name: str | None = None,
):
    """Return a pure ``train_step(state, batch, rng) -> (state, metrics)``.

    ``batch["image"]`` holds ``n_critic`` real batches stacked along the batch axis: critic
    update ``i`` uses slice ``i``, the E/G update the last one again. Under ``axis_name``,
    gradients and metrics are averaged over devices, batch norm uses cross-device statistics
    and ``z`` is each device's slice of one global draw; dropout is per device.
    """
    losses.bigan_eg_loss(loss, jnp.zeros(1), jnp.zeros(1))  # validates `loss` eagerly

    def generate(g_params, g_stats, z):
        x, new_vars = generator.apply(
            {"params": g_params, "batch_stats": g_stats}, z, train=True, mutable=["batch_stats"]
        )
        return x, new_vars.get("batch_stats", {})

    def encode(e_params, x):
        return encoder.apply({"params": e_params}, x)

    def discriminate(d_params, d_stats, x, z, dropout_rng):
        logits, new_vars = discriminator.apply(
            {"params": d_params, "batch_stats": d_stats},
            x,
            z,
            train=True,
            rngs={"dropout": dropout_rng},
            mutable=["batch_stats"],
        )
        return logits, new_vars.get("batch_stats", {})

    def d_loss_fn(d_params, d_stats, real_pair, fake_pair, dropout_rng):
        """The D loss on real (x, E(x)) and fake (G(z), z) pairs."""
        real_logits, d_stats = discriminate(d_params, d_stats, *real_pair, dropout_rng)
        fake_logits, d_stats = discriminate(d_params, d_stats, *fake_pair, dropout_rng)
        total, parts = losses.gan_d_loss(loss, real_logits, fake_logits)
        parts = dict(parts, d_real=jnp.mean(real_logits), d_fake=jnp.mean(fake_logits))
        return total, (parts, d_stats)

    def train_step(state: BiGANState, batch: dict, rng: jax.Array):
        noise_rng, dropout_rng = jax.random.split(jax.random.fold_in(rng, state.step))
        dropout_rng = device_rng(dropout_rng, axis_name)
        reals = batch["image"]
        local = reals.shape[0] // n_critic
        ge, g_stats = state.ge_params, state.g_batch_stats
        d_params, d_stats, d_opt_state = state.d_params, state.d_batch_stats, state.d_opt_state

        for i in range(n_critic):
            x = reals[i * local : (i + 1) * local]
            z = global_normal(jax.random.fold_in(noise_rng, i), local, (z_dim,), axis_name)
            fake, g_stats = generate(ge["g"], g_stats, z)
            ez = encode(ge["e"], x)

            (d_loss, (d_parts, d_stats)), d_grads = jax.value_and_grad(d_loss_fn, has_aux=True)(
                d_params,
                d_stats,
                (x, jax.lax.stop_gradient(ez)),
                (jax.lax.stop_gradient(fake), z),
                jax.random.fold_in(dropout_rng, i),
            )
            d_params, d_opt_state, d_grads = optimizer_step(
                d_params, d_opt_state, d_grads, state.d_tx, axis_name
            )

        x = reals[(n_critic - 1) * local :]
        z = global_normal(jax.random.fold_in(noise_rng, n_critic), local, (z_dim,), axis_name)
        eg_rng = jax.random.fold_in(dropout_rng, n_critic)

        def eg_loss_fn(ge):
            fake, new_stats = generate(ge["g"], g_stats, z)
            real_logits, _ = discriminate(d_params, d_stats, x, encode(ge["e"], x), eg_rng)
            fake_logits, _ = discriminate(d_params, d_stats, fake, z, eg_rng)
            total, parts = losses.bigan_eg_loss(loss, real_logits, fake_logits)
            return total, (parts, new_stats)

        (eg_loss, (eg_parts, g_stats)), ge_grads = jax.value_and_grad(eg_loss_fn, has_aux=True)(ge)
        new_ge, ge_opt_state, ge_grads = optimizer_step(
            ge, state.ge_opt_state, ge_grads, state.ge_tx, axis_name
        )
        ema = state.ema_params
        if ema_decay:
            ema = ema_update(ema, new_ge, ema_warmup(ema_decay, state.step))
        new_state = state.replace(
            step=state.step + 1,
            ge_params=new_ge,
            d_params=d_params,
            g_batch_stats=g_stats,
            d_batch_stats=d_stats,
            ge_opt_state=ge_opt_state,
            d_opt_state=d_opt_state,
            ema_params=ema,
        )
        metrics = {
            "d_loss": d_loss,
            "eg_loss": eg_loss,
            **d_parts,
            **eg_parts,
            **norms("ge_", ge_grads, ge, log_norms),
            **norms("d_", d_grads, d_params, log_norms),
        }
        return new_state, maybe_pmean(metrics, axis_name)

    return train_step


# --- evaluation groups ----------------------------------------------------------------------


def recon_group(family, state, data) -> dict:
    """MSE / PSNR / SSIM of G(E(x)) against the test images x."""
    reconstruct = jax.jit(functools.partial(family.reconstruct, state))
    scores = evaluate_reconstruction(reconstruct, data.batches())
    return {name: scores[name] for name in ("mse", "psnr", "ssim")}


def probe_d_group(family, state, data) -> dict:
    """Linear / 1-NN probe of D's penultimate features of (x, E(x)), fitted on the train
    split of the run's data source."""
    train = load(family.source, "train", family.image_size)
    fn = functools.partial(family.d_features, state)
    features = lambda images: probe_lib.encode_images(fn, images, data.batch_size)  # noqa: E731
    scores = probe_lib.probe_scores(
        features(train.images), train.labels, features(data.images), data.labels, data.seed
    )
    return {f"d_{k}": v for k, v in scores.items()}


def figures_group(family, state, data, num: int = 10) -> dict:
    """``W/figures/samples.png`` (64 samples) and ``reconstructions.png`` (x over G(E(x)))."""
    out = data.workdir / "figures"
    samples, _ = family.sample(state, jax.random.key(data.seed), 64)
    images_lib.save_png(out / "samples.png", images_lib.make_grid(samples, 8))
    x = jnp.asarray(data.images[:num], jnp.float32) / 255.0
    rows = jnp.concatenate([x, family.reconstruct(state, x)])
    images_lib.save_png(out / "reconstructions.png", images_lib.make_grid(rows, num))
    return {}


# --- the family -----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class BiGANFamily(family_lib.Family):
    """`Family` plus D's features and where the training split is (for ``probe_d``)."""

    d_features: Any = None
    source: str = ""
    image_size: int | None = None


@family_lib.register("bigan")
def build(config, image_shape, num_classes) -> family_lib.Family:
    """The BiGAN of ``config.model``; see ``experiments/bigan.py``."""
    del num_classes  # unsupervised
    m, o = config.model, config.optim

    def networks(axis_name=None):
        return (
            DCGANGenerator(
                image_shape=tuple(image_shape),
                width=m.g_width,
                kernel_size=m.kernel_size,
                axis_name=axis_name,
            ),
            ConvEncoder(z_dim=m.z_dim, width=m.e_width, kernel_size=m.kernel_size),
            JointDiscriminator(
                width=m.d_width,
                kernel_size=m.kernel_size,
                hidden=m.d_hidden,
                dropout=m.d_dropout,
                spectral_norm=m.spectral_norm,
            ),
        )

    generator, encoder, discriminator = networks()
    ge_tx = optax.adam(o.g_lr, b1=o.b1, b2=o.b2)
    d_tx = optax.adam(o.d_lr, b1=o.b1, b2=o.b2)

    def init_state(rng):
        g_rng, e_rng, d_rng, drop_rng = jax.random.split(rng, 4)
        x, z = jnp.zeros((1, *image_shape)), jnp.zeros((1, m.z_dim))
        g_vars = generator.init(g_rng, z, train=False)
        e_params = encoder.init(e_rng, x)["params"]
        d_vars = discriminator.init({"params": d_rng, "dropout": drop_rng}, x, z, train=False)
        ge = {"e": e_params, "g": g_vars["params"]}
        return BiGANState(
            step=jnp.zeros((), jnp.int32),
            ge_params=ge,
            d_params=d_vars["params"],
            g_batch_stats=g_vars.get("batch_stats", {}),
            d_batch_stats=d_vars.get("batch_stats", {}),
            ge_opt_state=ge_tx.init(ge),
            d_opt_state=d_tx.init(d_vars["params"]),
            ema_params=jax.tree.map(jnp.copy, ge),  # own buffers: the state is donated
            ge_tx=ge_tx,
            d_tx=d_tx,
        )

    def make_train_step(axis_name):
        g, e, d = networks(axis_name)
        return make_bigan_train_step(
            g,
            e,
            d,
            z_dim=m.z_dim,
            loss=m.loss,
            n_critic=m.n_critic,
            ema_decay=m.ema_decay,
            log_norms=config.train.log_norms,
            axis_name=axis_name,
        )

    def weights(state):
        return state.ema_params if m.ema_decay > 0 else state.ge_params

    def encode(state, images, labels=None):
        """E of images in [0, 1]: codes [N, z_dim]."""
        del labels
        return encoder.apply({"params": weights(state)["e"]}, images * 2.0 - 1.0)

    def decode(state, z, labels=None):
        del labels
        variables = {"params": weights(state)["g"], "batch_stats": state.g_batch_stats}
        return to_unit_range(generator.apply(variables, z, train=False), "-1_1")

    def sample(state, rng, num, labels=None):
        del labels
        return decode(state, jax.random.normal(rng, (num, m.z_dim))), None

    def reconstruct(state, images, labels=None):
        return decode(state, encode(state, images))

    def d_features(state, images):
        """D's penultimate features of (x, E(x)), inference mode, images in [0, 1]."""
        variables = {"params": state.d_params, "batch_stats": state.d_batch_stats}
        return discriminator.apply(
            variables, images * 2.0 - 1.0, encode(state, images), train=False, features_only=True
        )

    return BiGANFamily(
        name="bigan",
        data_scale="-1_1",
        init_state=init_state,
        make_train_step=make_train_step,
        sample=sample,
        encode=encode,
        decode=decode,
        reconstruct=reconstruct,
        latent_dim=m.z_dim,
        eval_groups={"recon": recon_group, "probe_d": probe_d_group, "figures": figures_group},
        default_metrics=("recon", "probe"),
        batch_multiplier=m.n_critic,
        d_features=d_features,
        source=config.data.source,
        image_size=config.data.image_size or None,
    )

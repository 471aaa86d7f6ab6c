"""The pix2pix family ("pix2pix"): conditional GAN for paired image-to-image translation
(Isola et al. 2017), and with ``model.gan_weight=0`` the L1-only U-Net baseline.

One step: the U-Net translates the batch's inputs (dropout on: its noise); the PatchGAN
discriminator takes one optimizer step on real ``(input, target)`` against fake ``(input,
output)`` pairs, its loss halved as in the paper; then the generator takes one step on
``gan_weight * GAN loss (against the updated D) + l1_weight * |output - target|``, whose
gradient flows back through the one forward pass of the generator (``jax.vjp``). The GAN
loss is any of ``genimg.losses.GAN_LOSSES`` (the paper: the non-saturating cross-entropy);
defaults are the paper's: lambda = 100, Adam 2e-4, beta1 = 0.5, with the reference code's
linear learning-rate decay over the second half (``optim.decay_from``). With
``gan_weight=0`` there is no discriminator at all.

Networks: `genimg.models.pix2pix`. Evaluation groups: `genimg.families.translation`.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import struct

from genimg import losses
from genimg.families import translation
from genimg.models.pix2pix import PatchDiscriminator, UNetGenerator
from genimg.train import family as family_lib
from genimg.train.common import device_rng, maybe_pmean, norms, optimizer_step, to_unit_range

# --- config ---------------------------------------------------------------------------------


def model_config() -> ml_collections.ConfigDict:
    """The ``model`` block: U-Net, PatchGAN and the objective."""
    m = ml_collections.ConfigDict()
    m.input_channels = 4  # one-hot classes of a label map, or channels of an input image
    m.width = 32  # U-Net channels of the first level (doubling per level); the paper: 64
    m.max_width = 128  # the paper: 512
    m.levels = 0  # U-Net stride-2 levels; 0 = as many as the image size allows
    m.dropout = 0.5
    m.dropout_layers = 3
    m.norm = "instance"  # "instance" | "batch" | "none" (both networks)
    m.d_width = 32  # the paper: 64
    m.d_layers = 1  # PatchGAN stride-2 convs: receptive field 16 px (2: 34 px, 3: 70 px)
    m.loss = "nonsaturating"  # see genimg.losses.GAN_LOSSES
    m.gan_weight = 1.0  # 0 = the L1-only U-Net (no discriminator)
    m.l1_weight = 100.0  # lambda
    return m


def optim_config() -> ml_collections.ConfigDict:
    """The ``optim`` block: Adam for each network (different rates give TTUR)."""
    o = ml_collections.ConfigDict()
    o.g_lr = 2e-4
    o.d_lr = 2e-4
    o.b1 = 0.5
    o.b2 = 0.999
    o.decay_from = 0.5  # linear decay to 0 from this fraction of train.steps (1 = constant)
    return o


def tiny(config: ml_collections.ConfigDict) -> None:
    """Narrow networks for the ``tiny`` presets."""
    config.model.update(width=4, max_width=8, d_width=4)
    config.eval.batch_size = 8


# --- state and step -------------------------------------------------------------------------


class Pix2PixState(struct.PyTreeNode):
    """Both networks and their optimizers (``d_params`` is empty without a GAN loss)."""

    step: jax.Array
    g_params: Any
    d_params: Any
    g_batch_stats: Any  # batch-norm running statistics ({} for instance norm)
    d_batch_stats: Any
    g_opt_state: Any
    d_opt_state: Any
    g_tx: optax.GradientTransformation = struct.field(pytree_node=False)
    d_tx: optax.GradientTransformation = struct.field(pytree_node=False)


def create_state(generator, discriminator, g_tx, d_tx, rng, input_shape, image_shape):
    """Initialise the generator (and the discriminator, when there is one) and optimizers."""
    g_rng, d_rng = jax.random.split(rng)
    x = jnp.zeros((1, *input_shape))
    g_vars = generator.init(g_rng, x, train=False)
    d_params, d_stats = {}, {}
    if discriminator is not None:
        d_vars = discriminator.init(d_rng, x, jnp.zeros((1, *image_shape)), train=False)
        d_params, d_stats = d_vars["params"], d_vars.get("batch_stats", {})
    return Pix2PixState(
        step=jnp.zeros((), jnp.int32),
        g_params=g_vars["params"],
        d_params=d_params,
        g_batch_stats=g_vars.get("batch_stats", {}),
        d_batch_stats=d_stats,
        g_opt_state=g_tx.init(g_vars["params"]),
        d_opt_state=d_tx.init(d_params),
        g_tx=g_tx,
        d_tx=d_tx,
    )


def make_pix2pix_train_step(
    generator,
    discriminator,
    *,
    loss: str = "nonsaturating",
    gan_weight: float = 1.0,
    l1_weight: float = 100.0,
    log_norms: bool = True,
    axis_name: str | None = None,
):
    """Return a pure ``train_step(state, batch, rng) -> (state, metrics)``.

    ``batch`` holds ``input`` (float, [0, 1]) and ``image`` (the target, in [-1, 1]).
    ``discriminator=None`` (or ``gan_weight=0``) trains the generator on L1 alone. Under
    ``axis_name`` gradients, batch-norm statistics and metrics are averaged over devices;
    dropout is drawn per device.
    """
    losses.gan_d_loss(loss, jnp.zeros(1), jnp.zeros(1))  # validates `loss` eagerly
    adversarial = discriminator is not None and gan_weight > 0

    def generate(g_params, g_stats, x, dropout_rng):
        out, new_vars = generator.apply(
            {"params": g_params, "batch_stats": g_stats},
            x,
            train=True,
            rngs={"dropout": dropout_rng},
            mutable=["batch_stats"],
        )
        return out, new_vars.get("batch_stats", {})

    def discriminate(d_params, d_stats, x, y):
        logits, new_vars = discriminator.apply(
            {"params": d_params, "batch_stats": d_stats}, x, y, train=True, mutable=["batch_stats"]
        )
        return logits, new_vars.get("batch_stats", {})

    def train_step(state: Pix2PixState, batch: dict, rng: jax.Array):
        rng = device_rng(jax.random.fold_in(rng, state.step), axis_name)
        x, y = batch["input"], batch["image"]
        # One generator pass; its pullback carries the generator loss's gradient later.
        fake, g_vjp, g_stats = jax.vjp(
            lambda p: generate(p, state.g_batch_stats, x, rng), state.g_params, has_aux=True
        )
        metrics = {}
        d_params, d_stats, d_opt_state = state.d_params, state.d_batch_stats, state.d_opt_state
        if adversarial:

            def d_loss_fn(d_params):
                real_logits, stats = discriminate(d_params, d_stats, x, y)
                fake_logits, stats = discriminate(d_params, stats, x, jax.lax.stop_gradient(fake))
                total, parts = losses.gan_d_loss(loss, real_logits, fake_logits)
                parts = dict(parts, d_real=jnp.mean(real_logits), d_fake=jnp.mean(fake_logits))
                return 0.5 * total, (parts, stats)  # halved, as in the paper

            (d_loss, (d_parts, d_stats)), d_grads = jax.value_and_grad(d_loss_fn, has_aux=True)(
                d_params
            )
            d_params, d_opt_state, d_grads = optimizer_step(
                d_params, d_opt_state, d_grads, state.d_tx, axis_name
            )
            metrics.update(d_loss=d_loss, **d_parts, **norms("d_", d_grads, d_params, log_norms))

        def g_loss_fn(fake):
            l1 = jnp.mean(jnp.abs(fake - y))
            parts = {"l1": l1 * 0.5}  # in [0, 1] pixel units
            total = l1_weight * l1
            if adversarial:
                fake_logits, _ = discriminate(d_params, d_stats, x, fake)
                parts["g_gan"], _ = losses.gan_g_loss(loss, fake_logits)
                total = total + gan_weight * parts["g_gan"]
            return total, parts

        (g_loss, g_parts), fake_grad = jax.value_and_grad(g_loss_fn, has_aux=True)(fake)
        (g_grads,) = g_vjp(fake_grad)
        g_params, g_opt_state, g_grads = optimizer_step(
            state.g_params, state.g_opt_state, g_grads, state.g_tx, axis_name
        )
        new_state = state.replace(
            step=state.step + 1,
            g_params=g_params,
            d_params=d_params,
            g_batch_stats=maybe_pmean(g_stats, axis_name),
            d_batch_stats=d_stats,
            g_opt_state=g_opt_state,
            d_opt_state=d_opt_state,
        )
        metrics.update(g_loss=g_loss, **g_parts, **norms("g_", g_grads, state.g_params, log_norms))
        return new_state, maybe_pmean(metrics, axis_name)

    return train_step


# --- the family -----------------------------------------------------------------------------


def build_models(model_cfg, image_shape, axis_name: str | None = None):
    """(generator, discriminator or None) of ``config.model``."""
    m = model_cfg
    generator = UNetGenerator(
        out_channels=image_shape[-1],
        width=m.width,
        max_width=m.max_width,
        levels=m.levels,
        dropout=m.dropout,
        dropout_layers=m.dropout_layers,
        norm=m.norm,
        axis_name=axis_name,
    )
    discriminator = None
    if m.gan_weight > 0:
        discriminator = PatchDiscriminator(
            width=m.d_width, layers=m.d_layers, norm=m.norm, axis_name=axis_name
        )
    return generator, discriminator


def make_translate(generator, scale: str = "-1_1"):
    """``translate(state, inputs, rng=None)`` of a generator state with ``g_params`` and
    ``g_batch_stats``: inference mode, or with dropout on when given a key."""

    def translate(state, inputs, rng=None):
        variables = {"params": state.g_params, "batch_stats": state.g_batch_stats}
        if rng is None:
            out = generator.apply(variables, inputs, train=False)
        else:  # the paper's test-time noise: dropout on (batch norm then uses the batch)
            out, _ = generator.apply(
                variables, inputs, train=True, rngs={"dropout": rng}, mutable=["batch_stats"]
            )
        return to_unit_range(out, scale)

    return translate


@family_lib.register("pix2pix")
def build(config, image_shape, num_classes) -> family_lib.Family:
    """pix2pix (or the L1 U-Net) for ``config.model``; see ``experiments/pix2pix.py``."""
    del num_classes  # the class labels of paired data are not used
    m, o = config.model, config.optim
    translation.check_input_channels(config)
    input_shape = (*image_shape[:2], m.input_channels)
    generator, discriminator = build_models(m, image_shape)
    steps = config.train.steps

    def adam(lr):
        return optax.adam(translation.lr_schedule(lr, steps, o.decay_from), b1=o.b1, b2=o.b2)

    def init_state(rng):
        return create_state(
            generator, discriminator, adam(o.g_lr), adam(o.d_lr), rng, input_shape, image_shape
        )

    def make_train_step(axis_name):
        g, d = build_models(m, image_shape, axis_name)
        return make_pix2pix_train_step(
            g,
            d,
            loss=m.loss,
            gan_weight=m.gan_weight,
            l1_weight=m.l1_weight,
            log_norms=config.train.log_norms,
            axis_name=axis_name,
        )

    return family_lib.Family(
        name="pix2pix",
        data_scale="-1_1",
        init_state=init_state,
        make_train_step=make_train_step,
        translate=make_translate(generator),
        input_shape=input_shape,
        eval_groups=translation.eval_groups(config.data.source),
        default_metrics=translation.default_metrics(config.data.source),
    )

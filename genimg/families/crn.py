"""The cascaded refinement network family ("crn"): layout -> image regression with a
feature-matching (perceptual) loss and no discriminator (Chen & Koltun 2017).

The loss is ``pixel_weight * |output - target| + feature_weight * sum_l |phi_l(output) -
phi_l(target)|``, each term a mean over its elements (the paper's initial weighting, the
inverse of each layer's size), where ``phi_l`` are the activations of a frozen feature
network: ``model.feature_net="domain:W"`` takes a classifier run W
(``experiments/classifier.py``): the last activation of each of its conv stages and its
penultimate features, in inference mode, on images in [0, 1]. (The paper uses VGG-19; the
FID Inception's 299 px input would make every CPU step ~100x dearer, so it is not offered.)
``"none"`` leaves the pixel term alone. The feature network is read when the train step is
built, so it must exist when training starts (and resumes); sampling and evaluating a
finished run do not need it.

Use a different classifier run for the loss than for the domain FID that scores the outputs:
a model trained to match one network's features looks better than it is to that network.

Networks: `genimg.models.crn`. Evaluation groups: `genimg.families.translation`.
"""

from __future__ import annotations

import pathlib
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import struct

from genimg.errors import UserError
from genimg.families import classifier as classifier_family
from genimg.families import translation
from genimg.models.crn import CascadedRefinementNetwork
from genimg.train import checkpoint
from genimg.train import family as family_lib
from genimg.train.common import maybe_pmean, norms, optimizer_step, to_unit_range

# --- config ---------------------------------------------------------------------------------


def model_config() -> ml_collections.ConfigDict:
    m = ml_collections.ConfigDict()
    m.input_channels = 4  # one-hot classes of a label map, or channels of an input image
    m.width = 32  # features of the finest module (doubling toward the coarse ones)
    m.max_width = 128
    m.feature_net = "domain:runs/classifier_crn"  # "domain:W" (a classifier run) | "none"
    m.pixel_weight = 1.0
    m.feature_weight = 1.0  # each feature layer's mean L1 gets this weight
    return m


def optim_config() -> ml_collections.ConfigDict:
    o = ml_collections.ConfigDict()
    o.lr = 1e-4  # the paper's Adam rate
    o.b1 = 0.9
    o.b2 = 0.999
    o.decay_from = 1.0  # linear decay to 0 from this fraction of train.steps (1 = constant)
    return o


def tiny(config: ml_collections.ConfigDict) -> None:
    config.model.update(width=4, max_width=8, feature_net="none")
    config.eval.batch_size = 8


# --- the feature network ----------------------------------------------------------------------


def feature_layers(spec: str, image_shape):
    """``phi(images in [0, 1]) -> list of activations`` of the ``model.feature_net`` spec, or
    None for "none". A missing or mismatched classifier run is a one-line `UserError`."""
    if spec == "none":
        return None
    kind, _, where = spec.partition(":")
    if kind != "domain" or not where:
        raise ValueError(f"model.feature_net must be 'domain:W' or 'none', got '{spec}'")
    workdir = pathlib.Path(where)
    if not (workdir / checkpoint.CONFIG_FILE).is_file():
        raise FileNotFoundError(
            f"model.feature_net: {workdir} is not a classifier run; train one with python -m "
            f"experiments.classifier --workdir={workdir} --config=experiments/classifier.py:fast"
        )
    config, family, state, info = checkpoint.restore_run(workdir)
    if family.classify is None:
        raise UserError(f"model.feature_net: {workdir} is a '{family.name}' run, not a classifier")
    if tuple(info["image_shape"]) != tuple(image_shape):
        raise UserError(
            f"model.feature_net: {workdir} was trained on {info['image_shape']} images, this "
            f"run's are {list(image_shape)}; train a classifier on this data"
        )
    model = classifier_family.build_model(config, family.num_classes)
    variables = {"params": state.params, "batch_stats": state.batch_stats}

    def phi(images):
        (features, _), inter = model.apply(variables, images, mutable=["intermediates"])
        stages = [v[0] for _, v in sorted(inter["intermediates"].items())]
        return [*stages, features]

    return phi


# --- state and step -------------------------------------------------------------------------


class CRNState(struct.PyTreeNode):
    step: jax.Array
    params: Any
    opt_state: Any
    tx: optax.GradientTransformation = struct.field(pytree_node=False)


def make_crn_train_step(
    model,
    phi,
    *,
    pixel_weight: float = 1.0,
    feature_weight: float = 1.0,
    log_norms: bool = True,
    axis_name: str | None = None,
):
    """Return a pure ``train_step(state, batch, rng) -> (state, metrics)``; ``phi`` maps
    images in [0, 1] to a list of feature maps (None: pixel loss only)."""

    def train_step(state: CRNState, batch: dict, rng: jax.Array):
        del rng  # deterministic
        x, y = batch["input"], batch["image"]
        target = to_unit_range(y, "-1_1")
        target_features = None if phi is None else jax.lax.stop_gradient(phi(target))

        def loss_fn(params):
            out = (model.apply({"params": params}, x) + 1.0) * 0.5  # [0, 1]
            parts = {"l1": jnp.mean(jnp.abs(out - target))}
            total = pixel_weight * parts["l1"]
            if phi is not None:
                terms = [
                    jnp.mean(jnp.abs(a - b)) for a, b in zip(phi(out), target_features, strict=True)
                ]
                parts["feature_loss"] = sum(terms)
                total = total + feature_weight * parts["feature_loss"]
            return total, parts

        (loss, parts), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        params, opt_state, grads = optimizer_step(
            state.params, state.opt_state, grads, state.tx, axis_name
        )
        new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state)
        metrics = {"loss": loss, **parts, **norms("", grads, state.params, log_norms)}
        return new_state, maybe_pmean(metrics, axis_name)

    return train_step


# --- the family -----------------------------------------------------------------------------


@family_lib.register("crn")
def build(config, image_shape, num_classes) -> family_lib.Family:
    """The CRN of ``config.model``; see ``experiments/crn.py``."""
    del num_classes
    m, o = config.model, config.optim
    translation.check_input_channels(config)
    if m.feature_net != "none" and not m.feature_net.startswith("domain:"):
        raise ValueError(f"model.feature_net must be 'domain:W' or 'none', got '{m.feature_net}'")
    input_shape = (*image_shape[:2], m.input_channels)
    model = CascadedRefinementNetwork(image_shape[-1], width=m.width, max_width=m.max_width)
    tx = optax.adam(translation.lr_schedule(o.lr, config.train.steps, o.decay_from), o.b1, o.b2)

    def init_state(rng):
        params = model.init(rng, jnp.zeros((1, *input_shape)))["params"]
        return CRNState(
            step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params), tx=tx
        )

    def make_train_step(axis_name):
        return make_crn_train_step(
            model,
            feature_layers(m.feature_net, image_shape),
            pixel_weight=m.pixel_weight,
            feature_weight=m.feature_weight,
            log_norms=config.train.log_norms,
            axis_name=axis_name,
        )

    def translate(state, inputs, rng=None):
        del rng  # deterministic
        return to_unit_range(model.apply({"params": state.params}, inputs), "-1_1")

    return family_lib.Family(
        name="crn",
        data_scale="-1_1",
        init_state=init_state,
        make_train_step=make_train_step,
        translate=translate,
        input_shape=input_shape,
        eval_groups=translation.eval_groups(config.data.source),
        default_metrics=translation.default_metrics(config.data.source),
    )

"""The classifier family ("classifier"): state, the pure train step, config blocks, builder.

One step: optional light augmentation (random horizontal flip, random 2-pixel-padded crop),
then one AdamW step on the softmax cross-entropy of integer labels (no label smoothing).
Weight decay is decoupled (``optax.adamw``) and applied to conv/dense kernels only, not to
biases or batch-norm scales. The trained network's penultimate features (``Family.classify``)
are the "domain" feature extractor of ``genimg.metrics.extractors.domain_extractor``.

Evaluation group: ``accuracy`` (top-1 on the test images).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from genimg.errors import UserError
from genimg.models import precision
from genimg.models.classifier import ConvClassifier
from genimg.train import family as family_lib
from genimg.train.common import State as ParamsState
from genimg.train.common import apply_gradients, device_rng, maybe_pmean

AUGMENTS = ("none", "flip", "flip_crop")
CROP_PAD = 2  # pixels of zero padding before a random crop back to the original size


# --- config ---------------------------------------------------------------------------------


def model_config() -> ml_collections.ConfigDict:
    """The ``model`` block."""
    m = ml_collections.ConfigDict()
    m.widths = (32, 64)  # channels per stage, each stage ends in a 2x2 max pool
    m.convs_per_stage = 2
    m.feature_dim = 256  # penultimate width = the domain feature dimension
    m.dropout = 0.3
    m.norm = "batch"  # "batch" | "none"
    m.dtype = "float32"  # compute dtype: "float32" | "bfloat16" (params/optimizer/losses float32)
    return m


def optim_config() -> ml_collections.ConfigDict:
    """The ``optim`` block: AdamW with warm-up and cosine decay."""
    o = ml_collections.ConfigDict()
    o.lr = 2e-3
    o.schedule = "cosine"  # linear warm-up then cosine decay to 0; or "constant"
    o.warmup_steps = 200
    o.b1 = 0.9
    o.b2 = 0.999
    o.weight_decay = 0.05  # decoupled (AdamW), kernels only
    return o


# --- state and step -------------------------------------------------------------------------


class State(ParamsState):
    """step, params, opt_state, batch-norm statistics (+ static apply_fn, tx)."""

    batch_stats: Any


def build_model(config, num_classes: int, axis_name: str | None = None):
    """The ``ConvClassifier`` of ``config.model`` (``axis_name``: cross-device batch norm),
    computing in ``model.dtype`` (`genimg.models.precision`)."""
    m = config.model
    return precision.wrap(_conv_classifier(m, num_classes, axis_name), m.get("dtype", "float32"))


def _conv_classifier(m, num_classes: int, axis_name: str | None) -> ConvClassifier:
    return ConvClassifier(
        num_classes=num_classes,
        widths=tuple(m.widths),
        convs_per_stage=m.convs_per_stage,
        feature_dim=m.feature_dim,
        dropout=m.dropout,
        norm=m.norm,
        axis_name=axis_name,
    )


def _decay_mask(params):
    """True for kernels (ndim >= 2): weight decay skips biases and norm scales."""
    return jax.tree.map(lambda p: p.ndim >= 2, params)


def make_optimizer(optim_cfg, total_steps: int) -> optax.GradientTransformation:
    """AdamW with a linear warm-up and cosine decay (``optim.schedule="cosine"``) or a constant
    learning rate (``"constant"``)."""
    if optim_cfg.schedule == "cosine":
        lr = optax.warmup_cosine_decay_schedule(
            0.0, optim_cfg.lr, min(optim_cfg.warmup_steps, total_steps - 1), max(total_steps, 2)
        )
    elif optim_cfg.schedule == "constant":
        lr = optim_cfg.lr
    else:
        raise ValueError(
            f"unknown optim.schedule '{optim_cfg.schedule}'; expected 'cosine' or 'constant'"
        )
    return optax.adamw(
        lr, b1=optim_cfg.b1, b2=optim_cfg.b2, weight_decay=optim_cfg.weight_decay, mask=_decay_mask
    )


def create_state(model: ConvClassifier, tx, rng: jax.Array, image_shape) -> State:
    """Initialise ``model`` on one blank image and its optimizer."""
    variables = model.init(rng, jnp.zeros((1, *image_shape)), train=False)
    return State.create(
        apply_fn=model.apply,
        params=variables["params"],
        tx=tx,
        batch_stats=variables["batch_stats"],
    )


def augment(rng: jax.Array, images: jax.Array, mode: str) -> jax.Array:
    """Random horizontal flips (``"flip"``), plus random crops of the zero-padded image
    (``"flip_crop"``), drawn independently per image; ``"none"`` is the identity."""
    if mode not in AUGMENTS:
        raise ValueError(f"unknown data.augment '{mode}'; expected one of {', '.join(AUGMENTS)}")
    if mode == "none":
        return images
    flip_rng, crop_rng = jax.random.split(rng)
    b, h, w, _ = images.shape
    flip = jax.random.bernoulli(flip_rng, 0.5, (b, 1, 1, 1))
    images = jnp.where(flip, images[:, :, ::-1], images)
    if mode == "flip_crop":
        padded = jnp.pad(images, ((0, 0), (CROP_PAD, CROP_PAD), (CROP_PAD, CROP_PAD), (0, 0)))
        offsets = jax.random.randint(crop_rng, (b, 2), 0, 2 * CROP_PAD + 1)
        crop = lambda img, o: jax.lax.dynamic_slice(img, (o[0], o[1], 0), (h, w, img.shape[-1]))
        images = jax.vmap(crop)(padded, offsets)
    return images


def make_classifier_train_step(
    model: ConvClassifier,
    *,
    augment_mode: str = "none",
    log_norms: bool = True,
    axis_name: str | None = None,
):
    """Return a pure ``train_step(state, batch, rng) -> (state, metrics)``.

    ``batch`` holds ``image`` (float, the family's [0, 1] scale) and integer ``label``. With
    ``axis_name`` set, gradients, batch-norm statistics and metrics are averaged over that
    pmap axis; dropout and augmentation draw independent noise per device.
    """
    augment(jax.random.key(0), jnp.zeros((1, 2, 2, 1)), augment_mode)  # validates eagerly

    def train_step(state: State, batch: dict, rng: jax.Array):
        rng = device_rng(jax.random.fold_in(rng, state.step), axis_name)
        aug_rng, dropout_rng = jax.random.split(rng)
        images = augment(aug_rng, batch["image"], augment_mode)
        labels = batch["label"]

        def loss_fn(params):
            (_, logits), new_vars = model.apply(
                {"params": params, "batch_stats": state.batch_stats},
                images,
                train=True,
                rngs={"dropout": dropout_rng},
                mutable=["batch_stats"],
            )
            loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
            return loss, (logits, new_vars["batch_stats"])

        (loss, (logits, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state.params
        )
        new_state, norm_metrics = apply_gradients(
            state, grads, axis_name, log_norms=log_norms, batch_stats=batch_stats
        )
        metrics = {
            "loss": loss,
            "accuracy": jnp.mean(jnp.argmax(logits, -1) == labels),
            **norm_metrics,
        }
        return new_state, maybe_pmean(metrics, axis_name)

    return train_step


# --- inference and evaluation ---------------------------------------------------------------


def predict(family, state, images: np.ndarray, batch_size: int = 500):
    """``(features [N, D], logits [N, K])`` float32 numpy arrays of uint8 images [N, H, W, C].

    The last batch is padded to ``batch_size``, so the network compiles once.
    """
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4:
        raise ValueError(
            f"predict expects uint8 images [N, H, W, C], got {images.dtype} {images.shape}"
        )
    classify = jax.jit(lambda s, x: family.classify(s, x.astype(jnp.float32) / 255.0))
    feats, logits = [], []
    for start in range(0, len(images), batch_size):
        chunk = images[start : start + batch_size]
        pad = batch_size - len(chunk)
        if pad:
            chunk = np.concatenate([chunk, np.zeros((pad, *chunk.shape[1:]), chunk.dtype)])
        f, lo = jax.device_get(classify(state, chunk))
        feats.append(f[: batch_size - pad])
        logits.append(lo[: batch_size - pad])
    return np.concatenate(feats), np.concatenate(logits)


def accuracy_group(family, state, data) -> dict:
    """Top-1 accuracy on the test images, overall and per class (``accuracy/class<k>``: the
    ceiling of a sample's ``label_accuracy`` when this classifier judges a conditional model)."""
    if data.labels is None:
        raise UserError("metric group 'accuracy' needs labelled test data")
    _, logits = predict(family, state, data.images, data.batch_size)
    correct = np.argmax(logits, -1) == data.labels
    per_class = {
        f"accuracy/class{k}": float(np.mean(correct[data.labels == k]))
        for k in range(family.num_classes or 0)
        if np.any(data.labels == k)
    }
    return {"accuracy": float(np.mean(correct)), **per_class}


# --- the family -----------------------------------------------------------------------------


@family_lib.register("classifier")
def build(config, image_shape, num_classes) -> family_lib.Family:
    """The classifier of ``config.model``; see ``experiments/classifier.py``."""
    if not num_classes:
        raise UserError("family 'classifier' needs labelled data; this data source has no labels")
    model = build_model(config, num_classes)
    augment_mode = config.data.augment
    augment(jax.random.key(0), jnp.zeros((1, 2, 2, 1)), augment_mode)
    tx = make_optimizer(config.optim, config.train.steps)

    def init_state(rng):
        return create_state(model, tx, rng, image_shape)

    def make_train_step(axis_name):
        return make_classifier_train_step(
            build_model(config, num_classes, axis_name),
            augment_mode=augment_mode,
            log_norms=config.train.log_norms,
            axis_name=axis_name,
        )

    def classify(state, images):
        """Inference-mode ``(features, logits)`` (running batch-norm statistics)."""
        variables = {"params": state.params, "batch_stats": state.batch_stats}
        return model.apply(variables, images)

    return family_lib.Family(
        name="classifier",
        data_scale="0_1",
        init_state=init_state,
        make_train_step=make_train_step,
        num_classes=num_classes,
        classify=classify,
        eval_groups={"accuracy": accuracy_group},
        default_metrics=("accuracy",),
    )

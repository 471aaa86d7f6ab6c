"""What the image-to-image families (pix2pix, the L1 U-Net, CRN) share: the input-channel
check, the learning-rate schedule and the evaluation groups.

Evaluation groups (on the test pairs of the run's ``paired:`` source, translated without
noise, as uint8 images):

  translation  ``l1`` (mean absolute error in [0, 1]), ``mse``, ``psnr``, ``ssim`` against the
               true images (dm-pix, `genimg.metrics.reconstruction`);
  layout       the layout transform of the input (``paired:labelmap:`` / ``paired:edges:``
               sources) applied to the outputs, against the input map: ``layout_miou``,
               ``layout_pixel_acc`` and the IoU of each class (`genimg.metrics.layout`);
  figures      ``W/figures/translations.png``: input | output | truth for 12 test pairs.

Sample-quality groups (``fid``, ``kid``, ``pr``, ``is``) score the translations of the test
inputs against the test images through ``genimg.evaluate`` (any family with ``translate``).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import optax

from genimg import images as images_lib
from genimg import synthesis
from genimg.data import decode_inputs, paired, transforms
from genimg.errors import UserError
from genimg.metrics import layout
from genimg.metrics.reconstruction import reconstruction_scores


def check_input_channels(config) -> None:
    """``model.input_channels`` against what a layout-transform source gives (a ValueError
    naming the right value); other paired sources are checked by the loop on their data."""
    kind = paired.transform_of(config.data.source)
    if kind is None:
        return
    want = len(transforms.LABEL_CLASSES) if kind == "labelmap" else 1
    if config.model.input_channels != want:
        raise ValueError(
            f"model.input_channels={config.model.input_channels} but {config.data.source} gives "
            f"{want}-channel inputs; set --config.model.input_channels={want}"
        )


def lr_schedule(lr: float, steps: int, decay_from: float):
    """Constant ``lr``, then linear decay to 0 from ``decay_from * steps`` to ``steps`` (the
    pix2pix code's 100 + 100 epochs is ``decay_from=0.5``); ``decay_from >= 1``: constant."""
    if not 0.0 <= decay_from:
        raise ValueError(f"optim.decay_from must be >= 0, got {decay_from}")
    start = int(decay_from * steps)
    if start >= steps:
        return lr
    return optax.join_schedules(
        [optax.constant_schedule(lr), optax.linear_schedule(lr, 0.0, steps - start)], [start]
    )


def _require_pairs(data) -> None:
    if data.inputs is None:
        raise UserError("this group needs paired test data (a paired: data source)")


def _outputs(family, state, data) -> np.ndarray:
    _require_pairs(data)
    return synthesis.translate_all(
        family, state, data.inputs, data.input_classes, data.batch_size, progress=False
    )


def translation_group(family, state, data) -> dict:
    """L1 / MSE / PSNR / SSIM of the translations against the true test images."""
    out = _outputs(family, state, data)
    sums = {"l1": 0.0, "mse": 0.0, "psnr": 0.0, "ssim": 0.0}
    for start in range(0, len(out), data.batch_size):
        y = jnp.asarray(data.images[start : start + data.batch_size], jnp.float32) / 255.0
        x = jnp.asarray(out[start : start + data.batch_size], jnp.float32) / 255.0
        scores = reconstruction_scores(y, x)
        sums["l1"] += float(jnp.sum(jnp.mean(jnp.abs(x - y), axis=(1, 2, 3))))
        for name in ("mse", "psnr", "ssim"):
            sums[name] += float(jnp.sum(scores[name]))
    return {name: total / len(out) for name, total in sums.items()}


def layout_group(family, state, data) -> dict:
    """Mean IoU (and pixel accuracy, per-class IoU) of the outputs' layout with the input's."""
    kind = paired.transform_of(data.source or "")
    if kind is None:
        raise UserError(
            f"metric group 'layout' needs a paired:labelmap: or paired:edges: source, not "
            f"'{data.source}'"
        )
    out = _outputs(family, state, data)
    fn, names = transforms.TRANSFORMS[kind]
    want = data.inputs[..., 0] if data.input_classes else (data.inputs[..., 0] > 127)
    confusion = layout.confusion_matrix(want, fn(out), len(names))
    return {f"layout_{k}": v for k, v in layout.iou_scores(confusion, list(names)).items()}


def figures_group(family, state, data, num: int = 12) -> dict:
    """``W/figures/translations.png``: rows of input | output | truth."""
    _require_pairs(data)
    inputs = data.inputs[:num]
    out = synthesis.translate_all(family, state, inputs, data.input_classes, progress=False)
    shown = images_lib.show_inputs(
        np.asarray(decode_inputs(inputs, data.input_classes)), data.input_classes
    )
    picture = images_lib.translation_grid(shown, out / 255.0, data.images[:num] / 255.0)
    images_lib.save_png(data.workdir / "figures" / "translations.png", picture)
    return {}


EVAL_GROUPS = {"translation": translation_group, "layout": layout_group, "figures": figures_group}


def eval_groups(source: str) -> dict:
    """The groups that apply to a run on ``source`` (``layout`` needs a layout transform)."""
    groups = dict(EVAL_GROUPS)
    if paired.transform_of(source) is None:
        del groups["layout"]
    return groups


def default_metrics(source: str) -> tuple[str, ...]:
    return ("translation", "layout") if paired.transform_of(source) else ("translation",)

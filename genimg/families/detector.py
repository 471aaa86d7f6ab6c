"""The detector family ("detector"): a real-vs-generated image classifier.

The network, optimizer and train step are the classifier family's (`ConvClassifier` with two
classes, 0 = real and 1 = generated, AdamW, softmax cross-entropy), trained on a
``real_vs_fake:REAL,FAKE...`` data source. What makes it a detector is the augmentation of
Wang et al. 2020 ("CNN-generated images are surprisingly easy to spot... for now"): each
training image is, with probability 1/2 each, Gaussian-blurred (sigma ~ U[0, 3]) and JPEG
re-encoded (quality ~ U{30..100}), so the detector cannot lean on high-frequency traces that
any re-save destroys. JPEG has no XLA kernel, so this runs on the host in the data pipeline
(`Family.host_augment`, `genimg.corruptions.blur_jpeg`), seeded by (seed, step); the jitted
step keeps the classifier's random flips.

Evaluation group: ``roc`` on the run's own test split (real test images against the
fakes' test split): ROC-AUC, average precision and accuracy (`genimg.metrics.detection`).
Any other set of images is scored with ``genimg.evaluate --metrics=detect --detector=W``.
"""

from __future__ import annotations

import functools

import ml_collections
import numpy as np

from genimg.corruptions import blur_jpeg
from genimg.errors import UserError
from genimg.families import classifier
from genimg.metrics import detection
from genimg.train import family as family_lib

NUM_CLASSES = 2  # 0 = real, 1 = generated


def model_config() -> ml_collections.ConfigDict:
    """The ``model`` block: the classifier's, smaller (28x28 detectors train in minutes)."""
    m = classifier.model_config()
    m.update(widths=(32, 64), convs_per_stage=1, feature_dim=128)
    return m


def augment_config(data: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Adds the host-side blur + JPEG keys (Wang et al. 2020's "Blur+JPEG (0.5)") to ``data``."""
    data.blur_prob = 0.5
    data.blur_sigma = 3.0  # sigma ~ U[0, blur_sigma], in pixels
    data.jpeg_prob = 0.5
    data.jpeg_quality = (30, 100)  # quality ~ U{lo..hi}
    return data


def make_host_augment(data_cfg):
    """``(images, rng) -> images`` of the config's blur/JPEG settings (None when both are off);
    its arguments are checked here, at build time."""
    if data_cfg.blur_prob == 0 and data_cfg.jpeg_prob == 0:
        return None
    fn = functools.partial(
        blur_jpeg,
        blur_prob=data_cfg.blur_prob,
        blur_sigma=data_cfg.blur_sigma,
        jpeg_prob=data_cfg.jpeg_prob,
        jpeg_quality=tuple(data_cfg.jpeg_quality),
    )
    fn(np.zeros((1, 8, 8, 1), np.uint8), np.random.default_rng(0))  # validates eagerly
    return fn


def roc_group(family, state, data) -> dict:
    """ROC-AUC / AP / accuracy on the run's labelled test split (0 = real, 1 = generated)."""
    if data.labels is None:
        raise UserError("metric group 'roc' of a detector run needs its real_vs_fake data")
    _, logits = classifier.predict(family, state, data.images, data.batch_size)
    score = (logits[:, 1] - logits[:, 0]).astype(np.float64)
    fake = data.labels == 1
    return {
        "detect_auc": detection.roc_auc(score, data.labels),
        "detect_ap": detection.average_precision(score, data.labels),
        "detect_acc": float(((score[fake] > 0).mean() + (score[~fake] <= 0).mean()) / 2),
    }


@family_lib.register("detector")
def build(config, image_shape, num_classes) -> family_lib.Family:
    """The detector of ``config``; see ``experiments/detector.py``."""
    if num_classes != NUM_CLASSES:
        raise UserError(
            "family 'detector' needs real_vs_fake:REAL,FAKE data (real=0, generated=1); "
            f"this data source has {num_classes or 'no'} classes"
        )
    base = classifier.build(config, image_shape, num_classes)
    return family_lib.Family(
        name="detector",
        data_scale=base.data_scale,
        init_state=base.init_state,
        make_train_step=base.make_train_step,
        num_classes=NUM_CLASSES,
        classify=base.classify,
        eval_groups={"roc": roc_group},
        default_metrics=("roc",),
        host_augment=make_host_augment(config.data),
    )

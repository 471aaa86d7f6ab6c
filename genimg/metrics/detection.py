"""How well a detector of generated images separates generated from real images.

    detector = load_detector("runs/detector")          # a run of experiments/detector.py
    result = detect(fake_images, real_images, detector)  # {"detect_auc": ..., "detect_ap": ...}

A detector is any classifier run with two classes (0 = real, 1 = generated); its score of an
image is the logit difference ``logit[1] - logit[0]`` (monotone in P(generated)), computed by
the same batched extraction as the domain features (`extractors.domain_extractor`: images of
another size or channel count are converted to what the detector saw in training).

Keys: ``detect_auc`` (ROC-AUC: the probability that a random generated image scores above a
random real one, ties counting one half), ``detect_ap`` (average precision with "generated"
as the positive class, the step-wise sum of scikit-learn's ``average_precision_score``),
``detect_acc`` (balanced accuracy at the detector's own threshold, logit difference 0),
``detect_fake_mean_p`` (mean P(generated) of the fakes), plus ``detect_n_real``,
``detect_n_fake`` and ``detector`` (``detector/logits@`` and a checksum of its weights).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import scipy.special
import scipy.stats

from genimg.errors import UserError
from genimg.metrics import extractors as extractors_lib


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` for binary ``labels`` (1 = positive): the
    Mann-Whitney U statistic over n_pos * n_neg, with average ranks for ties (float64)."""
    scores, labels = _check(scores, labels)
    pos = labels == 1
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    ranks = scipy.stats.rankdata(scores)  # average ranks: a tie counts one half
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """Average precision of ``scores`` for binary ``labels``: sum over the distinct score
    thresholds (high to low) of (recall gained) * (precision there), no interpolation."""
    scores, labels = _check(scores, labels)
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], labels[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # the end of each run of ties
    tp = np.cumsum(y)[last]
    precision = tp / (last + 1)
    recall_gain = np.diff(np.r_[0, tp]) / tp[-1]
    return float(np.sum(recall_gain * precision))


def _check(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, np.float64).ravel()
    labels = np.asarray(labels).ravel()
    if scores.shape != labels.shape or not np.isin(labels, (0, 1)).all():
        raise ValueError("scores and labels must be 1-D of one length, labels in {0, 1}")
    if labels.all() or not labels.any():
        raise ValueError("need both real (0) and generated (1) images")
    if not np.isfinite(scores).all():
        raise ValueError("the detector gave non-finite scores")
    return scores, labels.astype(np.int64)


def load_detector(workdir) -> extractors_lib.Extractor:
    """The detector run in ``workdir`` as an extractor whose logits are (real, generated)."""
    try:
        detector = extractors_lib.domain_extractor(workdir)
    except FileNotFoundError:
        raise UserError(
            f"--detector={workdir} is not a training run (no config.json); train one with "
            f"python -m experiments.detector --workdir={workdir}"
        ) from None
    if detector.num_logits != 2:
        raise UserError(
            f"--detector={workdir} is a classifier of {detector.num_logits} classes, not a "
            "detector (real=0, generated=1); train one with python -m experiments.detector"
        )
    # Results name it as a detector ("detector/logits@<weights hash>"), not as features.
    return dataclasses.replace(detector, name="detector/logits")


def scores(detector: extractors_lib.Extractor, images: np.ndarray, batch_size: int = 250):
    """The detector's score ``logit[1] - logit[0]`` of uint8 images ``[N, H, W, C]``."""
    out = extractors_lib.extract(
        detector, images, batch_size, keep_features=False, keep_logits=True, progress=False
    )
    return (out.logits[:, 1] - out.logits[:, 0]).astype(np.float64)


def detect(fake_images, real_images, detector, batch_size: int = 250) -> dict:
    """ROC-AUC, AP and accuracy of ``detector`` (an `Extractor` from `load_detector`) telling
    uint8 ``fake_images`` from ``real_images``; see the module docstring for the keys."""
    fake_images = extractors_lib.check_uint8_images(fake_images, "fake images")
    real_images = extractors_lib.check_uint8_images(real_images, "real images")
    fake = scores(detector, fake_images, batch_size)
    real = scores(detector, real_images, batch_size)
    all_scores = np.concatenate([fake, real])
    labels = np.r_[np.ones(len(fake), np.int64), np.zeros(len(real), np.int64)]
    return {
        "detect_auc": roc_auc(all_scores, labels),
        "detect_ap": average_precision(all_scores, labels),
        "detect_acc": float(((fake > 0).mean() + (real <= 0).mean()) / 2),
        "detect_fake_mean_p": float(scipy.special.expit(fake).mean()),
        "detect_n_real": len(real),
        "detect_n_fake": len(fake),
        "detector": detector.id,
    }

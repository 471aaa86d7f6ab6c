"""Layout fidelity of image-to-image outputs: how well a generated image keeps the layout
(label map, edge map) it was asked for.

Apply the layout transform that made the input to the output and compare the two maps: mean
intersection-over-union over the classes, with intersections and unions summed over the whole
test set before dividing (the dataset-level IoU of semantic-segmentation benchmarks and of
pix2pix's FCN score), and pixel accuracy.
"""

from __future__ import annotations

import numpy as np


def confusion_matrix(target: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    """int64 [K, K]: ``[i, j]`` counts pixels of class ``i`` in ``target`` predicted as ``j``."""
    target, predicted = np.asarray(target), np.asarray(predicted)
    if target.shape != predicted.shape:
        raise ValueError(f"maps differ in shape: {target.shape} vs {predicted.shape}")
    for name, m in (("target", target), ("predicted", predicted)):
        if m.size and (m.min() < 0 or m.max() >= num_classes):
            raise ValueError(f"{name} ids must lie in 0..{num_classes - 1}")
    index = target.astype(np.int64).ravel() * num_classes + predicted.astype(np.int64).ravel()
    return np.bincount(index, minlength=num_classes**2).reshape(num_classes, num_classes)


def iou_scores(confusion: np.ndarray, names=None) -> dict:
    """``miou`` (mean over classes present in the target or the prediction), ``pixel_acc``
    and ``iou/<name>`` per class from a confusion matrix."""
    confusion = np.asarray(confusion, np.float64)
    k = confusion.shape[0]
    names = names or [str(i) for i in range(k)]
    inter = np.diag(confusion)
    union = confusion.sum(0) + confusion.sum(1) - inter
    present = union > 0
    iou = np.where(present, inter / np.maximum(union, 1), np.nan)
    out = {
        "miou": float(np.nanmean(iou)) if present.any() else float("nan"),
        "pixel_acc": float(inter.sum() / max(confusion.sum(), 1)),
    }
    out.update({f"iou/{n}": float(v) for n, v in zip(names, iou, strict=True)})
    return out

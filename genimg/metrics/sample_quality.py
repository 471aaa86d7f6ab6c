"""Sample quality of generated images against a real data split: FID, KID, P/R/D/C, IS.

    fake = load_fake("npz:samples.npz")               # uint8 [N, H, W, C]
    result = sample_quality(fake, "fashion_mnist", extractor="domain:runs/classifier")

The real split's features go through `refstats.cached_reference_stats`, keyed by the data
source, split, number of images, a SHA-256 of the image bytes, the extractor id (which
includes a checksum of its weights), its preprocessing and `extractors.CODE_VERSION`. A
second evaluation against the same data with the same extractor skips the pass over it.

Metric groups (``metrics``) and the keys they add:
  fid  ``fid``: Frechet distance of the feature moments (float64).
  kid  ``kid``, ``kid_std``: unbiased cubic-kernel MMD^2, mean / std over 100 subsets of
       ``min(1000, n_real, n_fake)`` rows (not scaled by 1e3).
  pr   ``precision``, ``recall`` (k=3 nearest-neighbour manifolds), ``density``, ``coverage``.
  is   ``is``, ``is_std`` with the Inception extractor (1008 logits, 10 splits). With the
       domain extractor the same formula over the classifier's K classes is reported as
       ``is_domain``, ``is_domain_std`` (at most K; often called a "classifier score"), never
       as ``is``, so it cannot be mistaken for an Inception Score.
Every result also says ``n_real``, ``n_fake``, ``real``, ``split``, ``extractor`` (its id),
``preprocessing`` and ``real_from_cache``.

`per_class_quality` scores the same groups per class (each class's samples against the real
images of that class), with the samples' classes as requested from a conditional model or as
predicted by a domain classifier, and the classifier's accuracy on requested labels.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence

import numpy as np

from genimg.metrics import extractors as extractors_lib
from genimg.metrics import refstats
from genimg.metrics.fid import fid_from_features, frechet_distance
from genimg.metrics.inception_score import inception_score
from genimg.metrics.kid import kernel_inception_distance
from genimg.metrics.prdc import precision_recall_density_coverage

METRICS = ("fid", "kid", "pr", "is")
_log = logging.getLogger(__name__)


def default_cache_dir() -> str:
    """``$GENIMG_CACHE_DIR/refstats`` (default ``~/.cache/genimg/refstats``)."""
    from genimg.metrics.inception_weights import cache_dir  # noqa: PLC0415

    return os.fspath(cache_dir() / "refstats")


def load_fake(spec: str, split: str = "train", num: int | None = None) -> np.ndarray:
    """Generated (or any) images as uint8 [N, H, W, C] from a data source string.

    ``folder:DIR`` (PNG/JPEG files) and ``npz:FILE`` (key ``images``, as ``python -m
    genimg.sample`` writes) are the usual forms; any `genimg.data.load` source works, e.g.
    ``fashion_mnist`` with split "train" for the train-vs-test floor. ``num`` keeps the first N.
    """
    from genimg.data import load  # noqa: PLC0415

    return load(spec, split, max_examples=num or None).images


def _check_metrics(metrics: Sequence[str]) -> tuple[str, ...]:
    if isinstance(metrics, str):
        metrics = tuple(m for m in metrics.split(",") if m)
    metrics = tuple(metrics)
    unknown = [m for m in metrics if m not in METRICS]
    if unknown or not metrics:
        raise ValueError(f"unknown metrics {unknown or metrics}; expected some of {METRICS}")
    return metrics


def _is_inception(extractor: extractors_lib.Extractor) -> bool:
    return extractor.name.startswith("inception")


def sample_quality(
    fake_images,
    real_source: str,
    real_split: str = "test",
    extractor="inception",
    metrics: Sequence[str] = ("fid", "kid", "pr", "is"),
    num_real: int | None = None,
    cache_dir=None,
    *,
    batch_size: int = 250,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    pr_k: int = 3,
    is_splits: int = 10,
    seed: int = 0,
    progress: bool = True,
) -> dict:
    """Metrics of uint8 ``fake_images`` [N, H, W, C] against ``real_source``/``real_split``.

    Args:
      fake_images: generated images, uint8 NHWC (C in {1, 3}); resized / converted by the
        extractor as it does for the real images.
      real_source: a `genimg.data.load` source string, e.g. "fashion_mnist", "npz:FILE".
      real_split: the real split, "test" by default.
      extractor: an `Extractor` or a spec string ("inception", "inception:legacy",
        "domain:CLASSIFIER_WORKDIR").
      metrics: some of ``METRICS``, as a sequence or a comma-separated string.
      num_real: use the first N real images (default: the whole split).
      cache_dir: reference-statistics cache (default `default_cache_dir()`).
      batch_size: images per extractor call.
      kid_subsets, kid_subset_size, seed: KID subsets (see `kernel_inception_distance`).
      pr_k: neighbourhood size for precision / recall / density / coverage.
      is_splits: splits of the Inception Score (clipped to the number of fakes).
      progress: show tqdm bars during feature extraction.

    Returns:
      A flat dict of floats and provenance strings (see the module docstring).
    """
    metrics = _check_metrics(metrics)
    fake_images = extractors_lib.check_uint8_images(fake_images, "fake images")
    n_fake = fake_images.shape[0]
    if n_fake < 2:
        raise ValueError(f"need at least 2 fake images, got {n_fake}")
    extractor = extractors_lib.make_extractor(extractor)
    need_features = "kid" in metrics or "pr" in metrics
    need_logits = "is" in metrics and extractor.num_logits is not None
    if "is" in metrics and extractor.num_logits is None:
        _log.warning("IS skipped: extractor %s gives no logits", extractor.id)
    real, (mu_r, sigma_r, extra) = _reference(
        real_source, real_split, extractor, num_real, cache_dir, need_features, batch_size, progress
    )
    n_real = len(real)
    fake = extractors_lib.extract(
        extractor,
        fake_images,
        batch_size,
        keep_features=need_features,
        keep_logits=need_logits,
        progress=progress,
        desc="fake",
    )

    result: dict = {}
    if "fid" in metrics:
        result["fid"] = frechet_distance(fake.stats.mean, fake.stats.cov, mu_r, sigma_r)
    if "kid" in metrics:
        kid, kid_std = kernel_inception_distance(
            extra["features"], fake.features, kid_subsets, kid_subset_size, seed
        )
        result.update(kid=kid, kid_std=kid_std)
    if "pr" in metrics:
        result.update(precision_recall_density_coverage(extra["features"], fake.features, pr_k))
    if need_logits:
        name = "is" if _is_inception(extractor) else "is_domain"
        score, std = inception_score(fake.logits, splits=min(is_splits, n_fake))
        result.update({name: score, f"{name}_std": std})
    result.update(
        n_real=n_real,
        n_fake=n_fake,
        real=real_source,
        split=real_split,
        extractor=extractor.id,
        preprocessing=extractor.preprocessing,
        real_from_cache=bool(extra["from_cache"]),
    )
    return result


def _reference(source, split, extractor, num_real, cache_dir, need_features, batch_size, progress):
    """``(real data, (mu, sigma, extra))``: the real split and its cached feature moments
    (``extra["features"]`` [N, D] too when ``need_features``)."""
    from genimg.data import load  # noqa: PLC0415

    real = load(source, split, max_examples=num_real or None)
    if len(real) < 2:
        raise ValueError(f"need at least 2 real images, {source} {split} has {len(real)}")
    key = {
        "dataset": source,
        "split": split,
        "num_images": len(real),
        "data_sha256": hashlib.sha256(real.images.tobytes()).hexdigest(),
        "image_shape": list(real.images.shape[1:]),
        "extractor": extractor.name,
        "weights_hash": extractor.weights_hash,
        "preprocessing": extractor.preprocessing,
        "code_version": extractors_lib.CODE_VERSION,
    }

    def compute_real():
        return extractors_lib.extract(
            extractor,
            real.images,
            batch_size,
            keep_features=need_features,
            keep_logits=False,
            progress=progress,
            desc=f"real {source}:{split}",
        ).stats

    stats = refstats.cached_reference_stats(
        key,
        compute_real,
        default_cache_dir() if cache_dir is None else cache_dir,
        store_features=need_features,
    )
    return real, stats


def per_class_quality(
    fake_images,
    fake_labels,
    real_source: str,
    real_split: str = "test",
    extractor="inception",
    metrics: Sequence[str] = ("fid", "kid", "pr"),
    num_real: int | None = None,
    cache_dir=None,
    *,
    batch_size: int = 250,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    pr_k: int = 3,
    seed: int = 0,
    progress: bool = True,
) -> dict:
    """Sample quality per class: for each class c, the fakes of class c against the real
    images labelled c, in the features of ``extractor``.

    ``fake_labels`` are the classes the fakes were drawn for (a conditional model); with None
    they are the extractor's predicted classes, which needs an extractor with logits over the
    data's classes (a domain classifier). When both are available, ``label_accuracy`` is the
    fraction of fakes the classifier puts in the class they were drawn for ("does it draw what
    it was asked for"); ``label_accuracy/class{c}`` per class.

    Returns flat keys ``class{c}/{metric}`` (``fid``, ``kid``, ``precision``, ``recall``,
    ``density``, ``coverage`` as requested by ``metrics``; ``is`` is not a per-class metric),
    ``class{c}/n_fake`` and ``class{c}/n_real``, their means over the classes that have scores
    (``class_mean/{metric}``, over ``class_mean/num_classes`` classes), ``labels_from``
    ("requested" or "classifier"), ``extractor`` and ``real``. A class with fewer than 2
    fakes has no scores (NaN). Per-class FID rests on ~1000 images a side, so it is biased
    upward against a 10k-sample FID: compare it only between models at the same counts.
    """
    metrics = [m for m in _check_metrics(metrics) if m != "is"]
    fake_images = extractors_lib.check_uint8_images(fake_images, "fake images")
    extractor = extractors_lib.make_extractor(extractor)
    real, (_, _, extra) = _reference(
        real_source, real_split, extractor, num_real, cache_dir, True, batch_size, progress
    )
    if real.labels is None:
        raise ValueError(f"per-class metrics need labelled real data; {real_source} has none")
    num_classes = int(real.num_classes or real.labels.max() + 1)
    fake = extractors_lib.extract(
        extractor, fake_images, batch_size, keep_features=True, keep_logits=True,
        progress=progress, desc="fake",
    )  # fmt: skip
    domain = fake.logits is not None and fake.logits.shape[-1] == num_classes
    predicted = np.argmax(fake.logits, -1) if domain else None
    result: dict = {}
    if fake_labels is not None:
        fake_labels = np.asarray(fake_labels)
        if fake_labels.shape != (len(fake_images),):
            raise ValueError(f"expected {len(fake_images)} fake labels, got {fake_labels.shape}")
        labels_from = "requested"
        if domain:
            hit = predicted == fake_labels
            result["label_accuracy"] = float(np.mean(hit))
            for c in range(num_classes):
                result[f"label_accuracy/class{c}"] = float(np.mean(hit[fake_labels == c]))
    elif domain:
        fake_labels, labels_from = predicted, "classifier"
    else:
        raise ValueError(
            "unconditional samples are grouped by a domain classifier's predicted class: "
            f"use a domain extractor over the {num_classes} classes of {real_source}"
        )

    real_feats = extra["features"]
    sums: dict[str, list[float]] = {}
    for c in range(num_classes):
        r, f = real_feats[real.labels == c], fake.features[fake_labels == c]
        scores = dict.fromkeys(_per_class_keys(metrics), float("nan"))
        if len(f) >= 2 and len(r) >= 2:
            if "fid" in metrics:
                scores["fid"] = fid_from_features(f, r)
            if "kid" in metrics:
                size = min(kid_subset_size, len(r), len(f))
                scores["kid"], _ = kernel_inception_distance(r, f, kid_subsets, size, seed)
            if "pr" in metrics:
                scores.update(precision_recall_density_coverage(r, f, min(pr_k, len(f) - 1)))
        for name, value in scores.items():
            result[f"class{c}/{name}"] = float(value)
            sums.setdefault(name, []).append(float(value))
        result[f"class{c}/n_fake"] = int(len(f))
        result[f"class{c}/n_real"] = int(len(r))
    for name, values in sums.items():
        finite = [v for v in values if np.isfinite(v)]
        result[f"class_mean/{name}"] = float(np.mean(finite)) if finite else float("nan")
    result["class_mean/num_classes"] = int(
        sum(result[f"class{c}/n_fake"] >= 2 for c in range(num_classes))
    )
    result.update(labels_from=labels_from, extractor=extractor.id, real=real_source)
    return result


def _per_class_keys(metrics) -> list[str]:
    keys = []
    for m in metrics:
        keys += {"fid": ["fid"], "kid": ["kid"]}.get(
            m, ["precision", "recall", "density", "coverage"]
        )
    return keys

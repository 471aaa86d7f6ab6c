"""Feature extractors for sample-quality metrics: one interface, two networks.

An `Extractor` maps a uint8 NHWC batch to ``{"features": [N, D] float32, "logits": [N, K]
float32 or None}`` and says exactly what it is: ``id`` (name + a checksum of its weights, so
cached reference statistics are never reused across different weights) and ``preprocessing``.

- `inception_extractor(weights_path, mode)`: the FID Inception-v3 (`genimg.models.inception`),
  2048-d pool3 features and the 1008 logits (for IS). ``mode`` is the 299x299 resize:
  "clean" (clean-fid: PIL bicubic, antialiased; on the host) or "legacy" (pytorch-fid:
  bilinear without antialiasing; inside the jitted network).
- `domain_extractor(classifier_workdir)`: a classifier trained with ``experiments/classifier.py``;
  its penultimate features (e.g. 256-d) and class logits. Works offline, but its numbers are
  only comparable between evaluations that use the same classifier run (same ``id``).

`extract(extractor, images, batch_size)` runs an extractor over a large array in fixed-size
batches (the last one zero-padded, so each network compiles once) behind a tqdm bar and
accumulates `FeatureStats`. `make_extractor("inception" | "inception:legacy" | "domain:DIR")`
parses the command-line spec.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import tqdm

from genimg.data.sources import resize_images
from genimg.errors import UserError
from genimg.metrics import inception_weights, preprocess
from genimg.metrics.feature_stats import FeatureStats
from genimg.metrics.refstats import array_tree_checksum
from genimg.models.inception import INPUT_SIZE, NUM_CLASSES, POOL_DIM, FIDInceptionV3
from genimg.train import checkpoint

# Bump when extraction changes what it computes for the same weights and images: it is part
# of the reference-statistics cache key.
CODE_VERSION = 1
SPEC_HELP = "inception, inception:clean, inception:legacy or domain:CLASSIFIER_WORKDIR"
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R 601-2, as PIL's convert("L")

# uint8 [B, H, W, C] -> (features [B, D], logits [B, K] or None), numpy in and out.
BatchFn = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray | None]]


@dataclasses.dataclass(frozen=True)
class Extractor:
    """A feature network plus everything that determines its output, for cache keys."""

    name: str  # what network and layer, e.g. "inception_v3_fid/pool3"
    weights_hash: str  # `refstats.array_tree_checksum` of the variables
    preprocessing: str  # how uint8 images become network input, e.g. "clean_pil_bicubic_299"
    feature_dim: int
    num_logits: int | None  # K, or None when the extractor gives no logits
    batch_fn: BatchFn
    description: str = ""  # human-readable provenance (weights file, classifier run)

    @property
    def id(self) -> str:
        """``name@<first 16 hex of the weights hash>``: the extractor in results and keys."""
        return f"{self.name}@{self.weights_hash[:16]}"

    def __call__(self, images) -> dict:
        """uint8 [N, H, W, C] -> ``{"features": [N, D], "logits": [N, K] or None}`` float32."""
        images = check_uint8_images(images, "extractor input")
        features, logits = self.batch_fn(images)
        return {
            "features": np.asarray(features, np.float32),
            "logits": None if logits is None else np.asarray(logits, np.float32),
        }


class Extraction(NamedTuple):
    """What `extract` returns."""

    stats: FeatureStats  # streaming float64 mean / covariance of the features
    features: np.ndarray | None  # [N, D] float32 when keep_features
    logits: np.ndarray | None  # [N, K] float32 when keep_logits and the extractor has logits


def check_uint8_images(images, what: str = "images") -> np.ndarray:
    """``images`` as a uint8 [N, H, W, C] array with C in {1, 3}, or a one-line ValueError."""
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(f"{what} must be [N, H, W, C] with C in (1, 3), got shape {images.shape}")
    if images.dtype != np.uint8:
        raise ValueError(
            f"{what} must be uint8 in [0, 255], got {images.dtype}; convert floats in [0, 1] "
            "with np.round(x * 255).astype(np.uint8)"
        )
    return images


def extract(
    extractor: Extractor,
    images,
    batch_size: int = 250,
    *,
    keep_features: bool = True,
    keep_logits: bool = True,
    progress: bool = True,
    desc: str | None = None,
) -> Extraction:
    """Run ``extractor`` over uint8 ``images`` [N, H, W, C] in batches of ``batch_size``.

    Every call of ``extractor.batch_fn`` sees the same batch shape (``min(batch_size, N)``; the
    last batch is zero-padded and the padding dropped), so a jitted network compiles once.
    """
    images = check_uint8_images(images)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n = images.shape[0]
    if n == 0:
        raise ValueError("no images to extract features from")
    batch = min(batch_size, n)
    stats = FeatureStats(keep_features=keep_features)
    logits = [] if keep_logits and extractor.num_logits else None
    bar = tqdm.tqdm(
        total=n, desc=desc or extractor.name, unit="img", disable=not progress, dynamic_ncols=True
    )
    with bar:
        for start in range(0, n, batch):
            chunk = images[start : start + batch]
            valid = chunk.shape[0]
            if valid < batch:
                pad = np.zeros((batch - valid, *chunk.shape[1:]), np.uint8)
                chunk = np.concatenate([chunk, pad])
            out = extractor(chunk)
            stats.update(out["features"][:valid])
            if logits is not None:
                logits.append(out["logits"][:valid])
            bar.update(valid)
    return Extraction(
        stats=stats,
        features=stats.features if keep_features else None,
        logits=None if logits is None else np.concatenate(logits),
    )


# ---------------------------------------------------------------------------------------------
# Inception.


def inception_extractor(
    weights_path=None, mode: str = "clean", *, variables=None, download: bool = False
) -> Extractor:
    """The FID Inception-v3: 2048-d pool3 features and 1008 logits.

    Args:
      weights_path: pytorch-fid's ``.pth`` or our ``.npz`` cache; default
        ``$GENIMG_INCEPTION_WEIGHTS``, then the cache directory (see
        `genimg.metrics.inception_weights`). A missing file is a FileNotFoundError saying
        where to put it.
      mode: "clean" (clean-fid's resize) or "legacy" (pytorch-fid's); see
        `genimg.metrics.preprocess`.
      variables: Flax variables to use instead of loading weights (e.g. random weights in
        tests); their checksum is the weights hash, so they never share a cache entry with the
        real weights.
      download: fetch the weights when no file is found (the only network access).
    """
    if mode not in preprocess.MODES:
        raise ValueError(
            f"unknown Inception resize mode '{mode}'; expected one of {preprocess.MODES}"
        )
    if variables is None:
        path = inception_weights.resolve_weights_path(weights_path, download=download)
        variables = inception_weights.load_inception_params(path)
        source = str(path)
    else:
        source = "in-memory variables"
    variables = jax.tree.map(jnp.asarray, variables)
    model = FIDInceptionV3()

    @jax.jit
    def net(variables, x):  # x: float [B, 299, 299, 3] in [0, 1]
        return model.apply(variables, x)

    @jax.jit
    def net_legacy(variables, images_uint8):
        x = preprocess.resize_legacy(images_uint8.astype(jnp.float32) / 255.0)
        if x.shape[-1] == 1:
            x = jnp.repeat(x, 3, axis=-1)
        return model.apply(variables, x)

    def batch_fn(images):
        if mode == "clean":
            pool, logits = net(variables, preprocess.resize_for_inception(images, "clean"))
        else:
            pool, logits = net_legacy(variables, images)
        return jax.device_get((pool, logits))

    resize = {"clean": "clean_pil_bicubic", "legacy": "legacy_bilinear"}[mode]
    return Extractor(
        name="inception_v3_fid/pool3",
        weights_hash=array_tree_checksum(jax.device_get(variables)),
        preprocessing=f"{resize}_{INPUT_SIZE}_gray_to_rgb",
        feature_dim=POOL_DIM,
        num_logits=NUM_CLASSES,
        batch_fn=batch_fn,
        description=f"FID Inception-v3 ({source}), {mode} resize",
    )


# ---------------------------------------------------------------------------------------------
# Domain classifier.


def conform_images(images: np.ndarray, image_shape) -> np.ndarray:
    """uint8 [N, H, W, C] -> uint8 [N, *image_shape]: PIL-bilinear resize (antialiased, as
    ``genimg.data.load(..., image_size)``), RGB -> gray by ITU-R 601 luma, gray -> RGB by
    replication. Images already of that shape are returned unchanged."""
    images = check_uint8_images(images)
    h, w, c = image_shape
    if images.shape[1:] == (h, w, c):
        return images
    if h != w:
        raise ValueError(f"can only resize to square images, the classifier expects {h}x{w}")
    if images.shape[1:3] != (h, w):
        images = resize_images(images, h)
    if images.shape[-1] == 3 and c == 1:
        luma = images.astype(np.float32) @ _LUMA
        images = np.clip(np.round(luma), 0, 255).astype(np.uint8)[..., None]
    elif images.shape[-1] == 1 and c == 3:
        images = np.repeat(images, 3, axis=-1)
    return images


def domain_extractor(classifier_workdir) -> Extractor:
    """Penultimate features and class logits of a trained classifier run.

    ``classifier_workdir`` is a run of ``experiments/classifier.py`` (any run whose family has
    ``classify``). Images of another size or channel count are converted to what the
    classifier saw in training (`conform_images`).
    """
    workdir = pathlib.Path(classifier_workdir)
    if not (workdir / "config.json").is_file():
        raise FileNotFoundError(
            f"domain extractor: {workdir} is not a classifier run; train one with "
            f"python -m experiments.classifier --workdir={workdir} "
            "--config=experiments/classifier.py:fast (about 2 minutes on a CPU)"
        )
    _, family, state, info = checkpoint.restore_run(workdir)
    if family.classify is None:
        raise UserError(f"{workdir} is a '{family.name}' run, not a classifier run")
    image_shape = tuple(info["image_shape"])

    @jax.jit
    def net(state, images_uint8):
        return family.classify(state, images_uint8.astype(jnp.float32) / 255.0)

    def batch_fn(images):
        return jax.device_get(net(state, conform_images(images, image_shape)))

    features, logits = jax.eval_shape(
        net, state, jax.ShapeDtypeStruct((1, *image_shape), jnp.uint8)
    )
    h, w, c = image_shape
    return Extractor(
        name=f"domain_classifier/penultimate{features.shape[-1]}",
        weights_hash=array_tree_checksum(jax.tree.leaves(jax.device_get(state))),
        preprocessing=f"domain_pil_bilinear_{h}x{w}x{c}_unit",
        feature_dim=features.shape[-1],
        num_logits=logits.shape[-1],
        batch_fn=batch_fn,
        description=f"domain classifier {workdir} trained on {info.get('data', '?')}",
    )


def make_extractor(spec) -> Extractor:
    """An extractor from a spec string (see ``SPEC_HELP``), or ``spec`` itself if it is one."""
    if isinstance(spec, Extractor):
        return spec
    if not isinstance(spec, str):
        raise ValueError(f"extractor must be a spec string ({SPEC_HELP}), got {spec!r}")
    kind, sep, arg = spec.partition(":")
    if kind == "inception":
        return inception_extractor(mode=arg if sep else "clean")
    if kind == "domain" and arg:
        return domain_extractor(arg)
    raise ValueError(f"unknown extractor '{spec}'; expected {SPEC_HELP}")

"""The model-family interface and its open registry.

A family (GAN, VAE, autoencoder, classifier, and every new one) is one module that registers
a builder::

    @family.register("gan")
    def build(config, image_shape, num_classes) -> Family: ...

``build`` reads the keys of a locked config directly and returns a `Family`: the record of
everything the shared loop, ``genimg.sample``, ``genimg.evaluate`` and ``genimg.synthesis``
may call. None of those modules names a concrete family; they only look at which fields are
set (a family without ``sample`` cannot be sampled, one without ``encode`` cannot be
inverted, ...).

The training loop records where the builder lives (``family_location``) in the run's
``config.json``; `load_builder` imports that module again (or, failing that, loads the file),
so a family defined outside ``genimg/`` -- in a forked experiment or a test module -- can be
sampled and evaluated from its workdir alone.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import pathlib
import sys
from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np

from genimg.errors import ConfigError, UserError
from genimg.watermark import Provenance

# (state, batch, rng) -> (state, metrics)
TrainStep = Callable[[Any, dict, jax.Array], tuple[Any, dict]]
# (config, image_shape, num_classes) -> Family
Builder = Callable[[Any, tuple[int, int, int], "int | None"], "Family"]


@dataclasses.dataclass
class EvalData:
    """What an evaluation group gets besides the family and its state: the test images and
    the evaluator's settings."""

    images: np.ndarray  # uint8 [N, H, W, C] test images of the run's data source
    labels: np.ndarray | None  # int32 [N] or None
    workdir: pathlib.Path  # the run's folder (figures go below it)
    batch_size: int
    seed: int
    k: int | None = None  # importance samples for likelihood groups (None: the config's)
    # Paired data: uint8 inputs [N, H, W, C'] (label ids when input_classes is set), whose
    # targets are ``images``; see genimg.data.paired and genimg.data.decode_inputs.
    inputs: np.ndarray | None = None
    input_classes: int | None = None
    source: str | None = None  # the data source string the test split was read from
    provenance: Provenance | None = None  # what figures of generated images carry

    def batches(self, images=None, with_labels: bool = False):
        """Float batches in [0, 1] of ``batch_size`` (``(x, labels)`` tuples when
        ``with_labels``), the form ``genimg.metrics`` evaluators take."""
        images = self.images if images is None else images
        for start in range(0, len(images), self.batch_size):
            x = images[start : start + self.batch_size].astype(np.float32) / 255.0
            yield (x, self.labels[start : start + self.batch_size]) if with_labels else x


# (family, state, data) -> flat dict of numbers (and provenance strings)
EvalGroup = Callable[["Family", Any, EvalData], dict]


@dataclasses.dataclass(frozen=True, eq=False)
class Family:
    """What a model family plugs into the loop, the sampler, the evaluator and synthesis.

    Only ``name``, ``data_scale``, ``init_state`` and ``make_train_step`` are required; every
    other field is a capability that is None (or empty) when the family lacks it. Images
    crossing this interface are float ``[N, H, W, C]`` in [0, 1]; labels are int32 ``[N]``.
    """

    name: str
    data_scale: str  # "-1_1" or "0_1": how the data pipeline scales pixels for the step
    init_state: Callable[[jax.Array], Any]  # rng -> unreplicated state with a ``.step``
    make_train_step: Callable[[str | None], TrainStep]  # axis_name -> pure train step
    # (state, rng, num, labels=None) -> (images, labels or None); EMA weights when present.
    # Conditional families draw balanced labels (0, 1, ..., K-1, 0, ...) when given None.
    sample: Callable[..., tuple[jax.Array, jax.Array | None]] | None = None
    num_classes: int | None = None  # classes of a conditional family (or a classifier)
    conditional: bool = False  # sample/encode/decode/reconstruct take labels
    # (state, images, labels=None) -> latent codes [N, D]: the posterior mean for a VAE.
    encode: Callable[..., jax.Array] | None = None
    # (state, codes, labels=None) -> images: the generator or decoder (its mean image); pure
    # and differentiable in the codes (GAN inversion takes its gradient).
    decode: Callable[..., jax.Array] | None = None
    # (state, images, labels=None) -> reconstructions (for a denoiser: of its input).
    reconstruct: Callable[..., jax.Array] | None = None
    # (state, images) -> (features [N, F], logits [N, K]): a classifier's penultimate layer.
    classify: Callable[[Any, jax.Array], tuple[jax.Array, jax.Array]] | None = None
    # Size of the codes of ``encode`` / ``decode``; a family that samples draws its codes from
    # a standard normal of this size (what the synthesis tools assume for prior codes).
    latent_dim: int | None = None
    eval_groups: Mapping[str, EvalGroup] = dataclasses.field(default_factory=dict)
    # Groups ``genimg.evaluate`` runs without --metrics (sample-quality names included).
    default_metrics: tuple[str, ...] = ()
    batch_multiplier: int = 1  # images per example slot, e.g. n_critic real batches per step
    # Image-to-image families (paired data): (state, inputs, rng=None) -> images, from inputs
    # float [N, *input_shape] in [0, 1] (label maps one-hot, see genimg.data.decode_inputs).
    # rng=None is the deterministic translation; with a key, the family's noise (e.g. dropout)
    # is on. The loop checks paired data against ``input_shape`` before anything is written.
    translate: Callable[..., jax.Array] | None = None
    input_shape: tuple[int, int, int] | None = None
    # (uint8 images [B, H, W, C], np.random.Generator) -> uint8 images: a host-side transform
    # of every training batch that XLA cannot run (e.g. JPEG re-encoding); the data pipeline
    # applies it with a generator seeded by (seed, step), so a resumed run sees the same.
    host_augment: Callable[[np.ndarray, np.random.Generator], np.ndarray] | None = None
    # The shape of one example's label: () for class ids, (L,) for a caption's token ids.
    label_shape: tuple[int, ...] = ()
    # (text) -> one example's label (e.g. int32 token ids [L]) for ``genimg.sample --prompt``;
    # raises a one-line `UserError` for text it cannot take. None: no text conditioning.
    encode_prompt: Callable[[str], np.ndarray] | None = None

    def check_labels(self, labels, num: int | None = None) -> np.ndarray | None:
        """``labels`` as int32 numpy, checked against this family (None stays None)."""
        if labels is None:
            return None
        if not self.conditional:
            raise UserError(f"family '{self.name}' is unconditional: it takes no labels")
        labels = np.asarray(labels)
        shape = tuple(self.label_shape)
        if (
            labels.ndim != 1 + len(shape)
            or labels.shape[1:] != shape
            or (num is not None and len(labels) != num)
        ):
            what = "class ids" if not shape else f"labels of shape {shape}"
            raise UserError(f"labels must be a {1 + len(shape)}-D list of {num or 'N'} {what}")
        if (
            self.num_classes
            and len(labels)
            and (labels.min() < 0 or labels.max() >= self.num_classes)
        ):
            bad = int(labels[(labels < 0) | (labels >= self.num_classes)][0])
            raise UserError(
                f"label {bad} is out of range: this run has classes 0..{self.num_classes - 1}"
            )
        return labels.astype(np.int32)


# ---------------------------------------------------------------------------------------------
# Registry.

_BUILDERS: dict[str, Builder] = {}


def register(name: str) -> Callable[[Builder], Builder]:
    """Decorator: register ``build(config, image_shape, num_classes) -> Family`` as ``name``.

    Registering a name twice keeps the first builder if the second comes from the same source
    file (a file executed again, e.g. by ``--config=file.py`` or as ``__main__``); two
    different files claiming one name is an error, so a fork cannot shadow a family by
    accident.
    """

    def decorator(build: Builder) -> Builder:
        old = _BUILDERS.get(name)
        if old is None:
            _BUILDERS[name] = build
        elif _source_file(old) != _source_file(build):
            raise ValueError(
                f"family '{name}' is registered by {_source_file(old)} already; "
                f"{_source_file(build)} must use another name"
            )
        return build

    return decorator


def _source_file(fn) -> str:
    return str(pathlib.Path(fn.__code__.co_filename).resolve())


def registered() -> list[str]:
    """Names of the families registered so far (those whose modules have been imported)."""
    return sorted(_BUILDERS)


def get_builder(name: str) -> Builder:
    if name not in _BUILDERS:
        known = ", ".join(registered()) or "none"
        raise ConfigError(
            f"unknown family '{name}' (registered: {known}); import the module that "
            "registers it (e.g. genimg.families.gan) before building the config's family"
        )
    return _BUILDERS[name]


def build_family(config, image_shape, num_classes: int | None) -> Family:
    """Build ``config.family`` for data of ``image_shape`` with ``num_classes`` labels."""
    return get_builder(config.family)(config, tuple(int(s) for s in image_shape), num_classes)


def _module_name(fn) -> str:
    """The importable name of ``fn``'s module, also when it runs as ``python -m pkg.mod``."""
    name = fn.__module__
    if name == "__main__":
        spec = getattr(sys.modules["__main__"], "__spec__", None)
        if spec is not None and spec.name:
            return spec.name
    return name


def family_location(name: str) -> dict:
    """``{"name", "module", "file"}`` of a registered family: where `load_builder` finds it."""
    build = get_builder(name)
    module = sys.modules.get(build.__module__)
    file = getattr(module, "__file__", None)
    return {
        "name": name,
        "module": _module_name(build),
        "file": str(pathlib.Path(file).resolve()) if file else None,
    }


def load_builder(location: dict) -> Builder:
    """The builder of a family recorded by `family_location`: already registered, else its
    module is imported (or, when that fails, its file is loaded) so that it registers itself."""
    name, module, file = location["name"], location.get("module"), location.get("file")
    reason = "it does not register that name"
    if name not in _BUILDERS and module and module != "__main__":
        try:
            importlib.import_module(module)
        except ImportError as err:
            reason = f"it cannot be imported: {err}"
    if name not in _BUILDERS and file and pathlib.Path(file).is_file():
        spec = importlib.util.spec_from_file_location(f"genimg_family_{name}", file)
        loaded = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = loaded
        spec.loader.exec_module(loaded)
    if name not in _BUILDERS:
        raise UserError(
            f"family '{name}' was defined in {module} ({file}), but {reason}; run from the "
            "folder that holds it or add that folder to PYTHONPATH"
        )
    return _BUILDERS[name]

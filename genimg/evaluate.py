"""Evaluate a trained run -- or a folder / .npz of images -- against its data's test split.

    python -m genimg.evaluate --workdir=runs/vae
    python -m genimg.evaluate --workdir=runs/vae --metrics=nll,recon --k=5000 --num_images=1000
    python -m genimg.evaluate --workdir=runs/dcgan --metrics=fid,kid,pr \
        --extractor=domain:runs/classifier
    python -m genimg.evaluate --fake=npz:samples.npz --real=fashion_mnist --metrics=fid,kid,pr \
        --extractor=domain:runs/classifier
    python -m genimg.evaluate --workdir=runs/dcgan --metrics=detect --detector=runs/detector

    python -m genimg.evaluate --workdir=runs/pix2pix --metrics=translation,layout,fid \
        --extractor=domain:runs/classifier
    python -m genimg.evaluate --workdir=runs/bigan --metrics=probe
    python -m genimg.evaluate --workdir=runs/bigan --metrics=probe --untrained
    python -m genimg.evaluate --real=fashion_mnist --metrics=probe

Without --metrics, a run is evaluated on what its model family supports (VAE: nll,recon;
autoencoder: recon; GAN: fid,kid,pr; classifier: accuracy; pix2pix/CRN: translation,layout;
BiGAN: recon,probe). Metric groups:

  nll       ELBO and importance-weighted NLL (IWAE, --k samples) in nats and bits/dim
  recon     MSE, PSNR and SSIM of reconstructions of the test images (a denoising
            autoencoder reconstructs corrupted inputs and is scored against the clean ones)
  figures   reconstruction, sample and latent-traversal grids, written to W/figures/
  accuracy  top-1 test accuracy of a classifier
  fid, kid, pr, is
            sample quality of --num_samples generated images (or the images of --fake)
            against the test split: FID, KID, precision/recall/density/coverage, Inception
            Score, in the features of --extractor: "inception" (the standard FID network;
            its weights must be on disk, see README) or "domain:W" (a classifier run W,
            offline). The test split's features are cached. Image-to-image runs
            (pix2pix, CRN) are scored on their translations of the test inputs; a
            conditional run draws a balanced set of classes.
  detect    how well the detector run --detector=W (python -m experiments.detector) tells
            the same generated images from the real ones of --real/--split: ROC-AUC and
            average precision ("generated" positive), accuracy at its threshold
  probe     any unconditional family with an encoder: linear-probe (logistic regression,
            optax L-BFGS) and 1-NN (cosine) test accuracy of its frozen codes, fitted on the
            train split's labels (--num_train images). Without --workdir, --real=SOURCE
            probes raw pixels.
  translation, layout, figures (pix2pix, CRN)
            L1/MSE/PSNR/SSIM of the translations against the true images; mean IoU of their
            label/edge map with the input map; input | output | truth grids.

--per_class adds fid/kid/pr per class (each class's samples against the test images of
that class, keys class<c>/<metric> and their means class_mean/<metric>): samples of a
conditional run are grouped by the class they were drawn for, and the domain classifier's
accuracy on them is label_accuracy; samples of an unconditional run (or --fake) are grouped
by the domain classifier's predicted class.

--untrained evaluates the family's freshly initialised state (seeded by --seed) instead of
the checkpoint: the random-network baseline.

The numbers are printed and merged into W/eval.json (W/eval_untrained.json with --untrained;
eval.json beside --fake's files; the raw-pixel probe is only printed); a
run's W/MODEL_CARD.md is rewritten with them. Figures carry the run's provenance (PNG text
and the invisible watermark), like every image file genimg writes.
"""

from __future__ import annotations

import json
import pathlib

import jax
import numpy as np

from genimg import cli, synthesis
from genimg.data import DataError, load
from genimg.errors import UserError
from genimg.metrics import detection
from genimg.metrics import extractors as extractors_lib
from genimg.metrics import probe as probe_lib
from genimg.metrics.sample_quality import METRICS as SAMPLE_QUALITY
from genimg.metrics.sample_quality import load_fake, per_class_quality, sample_quality
from genimg.train import model_card
from genimg.train.checkpoint import restore_run
from genimg.train.family import EvalData
from genimg.train.run_provenance import provenance_for_run
from genimg.train.workdir import atomic_write_text

EVAL_FILE = "eval.json"
UNTRAINED_EVAL_FILE = "eval_untrained.json"  # --untrained: kept apart from the run's numbers
# Groups that score a set of generated images (a run's samples or --fake) against real ones.
IMAGE_SET = (*SAMPLE_QUALITY, "detect")


class EvalError(UserError, ValueError):
    """The requested evaluation does not apply to this run; the message is one line."""


PROBE = "probe"


def available_metrics(family) -> list[str]:
    """The metric groups ``family`` supports: its own, the image-set groups (sample quality,
    detection) if it samples or translates, the linear / 1-NN probe if it encodes without
    labels (a conditional encoder is given the class, so a probe of its codes would read the
    answer)."""
    groups = list(family.eval_groups)
    if family.sample is not None or family.translate is not None:
        groups += list(IMAGE_SET)
    if family.encode is not None and not family.conditional:
        groups.append(PROBE)
    return groups


def run(
    workdir,
    metrics=None,
    *,
    k: int | None = None,
    num_images: int = 0,
    batch_size: int | None = None,
    seed: int = 0,
    split: str = "test",
    fake: str | None = None,
    real: str | None = None,
    extractor: str = "inception",
    num_samples: int = 10000,
    num_train: int = 0,
    untrained: bool = False,
    detector: str | None = None,
    per_class: bool = False,
) -> dict:
    """Evaluate the run in ``workdir``; returns the results and merges them into ``eval.json``.

    ``metrics``: group names (default: the family's ``default_metrics``). Sample-quality
    groups compare ``num_samples`` samples of the run (or the images of ``fake``:
    ``npz:FILE`` / ``folder:DIR``, in which case ``workdir`` may be None and ``eval.json``
    goes beside them) with the ``split`` of ``real`` (default: the run's data source), in the
    features of ``extractor``; an image-to-image family's samples are its translations of the
    first ``num_samples`` test inputs; ``detect`` scores the same images with the ``detector``
    run. ``probe`` fits on the first ``num_train`` (0: all) training images. ``untrained``
    scores ``family.init_state(key(seed))`` instead of the checkpoint. Every input is checked
    before samples are drawn. A conditional family draws classes ``0, 1, ..., K-1, 0, ...``
    (balanced). ``per_class`` adds `per_class_quality` for the sample-quality groups.
    """
    if num_images < 0:
        raise EvalError(f"--num_images must be >= 0 (0 = the whole split), got {num_images}")
    if num_samples < 1:
        raise EvalError(f"--num_samples must be >= 1, got {num_samples}")
    if num_train < 0:
        raise EvalError(f"--num_train must be >= 0 (0 = the whole split), got {num_train}")
    if workdir is None:
        if untrained:
            raise EvalError("--untrained needs --workdir (a run whose family to initialise)")
        if list(metrics or ()) == [PROBE]:
            return _probe_pixels(real, split, num_images, num_train, seed)
        return _run_on_files(
            metrics,
            fake,
            real,
            split,
            extractor,
            num_images,
            num_samples,
            seed,
            detector,
            per_class,
        )

    workdir = pathlib.Path(workdir)
    config, family, state, _ = restore_run(workdir)
    if untrained:
        state = jax.jit(family.init_state)(jax.random.key(seed))
    metrics = list(metrics or family.default_metrics)
    supported = available_metrics(family) + ([] if fake is None else list(IMAGE_SET))
    unknown = [m for m in metrics if m not in supported]
    if unknown:
        raise EvalError(
            f"metric group(s) {', '.join(unknown)} not available for this '{family.name}' run; "
            f"it supports {', '.join(dict.fromkeys(supported)) or 'none'}"
        )
    quality = _quality_groups(metrics, per_class)
    groups = [m for m in metrics if m not in IMAGE_SET and m != PROBE]
    detector_net = _detector(metrics, detector)  # fails early, as does the extractor
    feature_net = extractors_lib.make_extractor(extractor) if quality else None
    translating = (quality or detector_net) and fake is None and family.sample is None

    cli.log_devices()  # the inputs are checked: say where the work runs
    results: dict = {"step": int(state.step), "split": split}
    if untrained:
        results["untrained_seed"] = seed
    dc = config.data
    batch = lambda: int(batch_size or config.eval.batch_size)  # noqa: E731 (GAN runs have none)
    test = None
    if groups or translating or PROBE in metrics:
        test = load(dc.source, split, dc.image_size or None, max_examples=num_images or None)
    if groups:
        data = EvalData(
            images=test.images,
            labels=test.labels,
            workdir=workdir,
            batch_size=batch(),
            seed=seed,
            k=k,
            inputs=test.inputs,
            input_classes=test.input_classes,
            source=dc.source,
            provenance=provenance_for_run(workdir, state),
        )
        for name in groups:
            numbers = family.eval_groups[name](family, state, data)
            if numbers:  # "figures" adds none, and must not relabel earlier numbers' count
                results.update(numbers, num_images=len(test.images))
    if PROBE in metrics:
        train = load(dc.source, "train", dc.image_size or None, max_examples=num_train or None)
        encode = lambda x: family.encode(state, x)  # noqa: E731
        results.update(
            _probe(
                lambda images: probe_lib.encode_images(encode, images, batch()),
                train,
                test,
                seed,
            )
        )
    if quality or detector_net:
        real = real or config.data.source
        reals = _load_real(real, split, num_images) if detector_net else None
        fake_labels = None
        if fake is not None:
            fakes = load_fake(fake, num=num_samples)
        elif translating:
            if test.inputs is None:
                raise EvalError(f"'{family.name}' translates paired inputs; {dc.source} has none")
            inputs = test.inputs[:num_samples]
            fakes = synthesis.translate_all(family, state, inputs, test.input_classes, batch())
        else:
            balanced = None
            if family.conditional and family.num_classes:
                balanced = np.arange(num_samples) % family.num_classes
            fakes, fake_labels = synthesis.generate(
                family, state, num_samples, seed, labels=balanced
            )
        if quality:
            results.update(
                _sample_quality(fakes, real, split, feature_net, quality, num_images, seed)
            )
        if per_class:
            results.update(
                _per_class(fakes, fake_labels, real, split, feature_net, quality, num_images, seed)
            )
        if detector_net:
            results.update(_detect(fakes, reals, detector_net))
    _write(workdir / (UNTRAINED_EVAL_FILE if untrained else EVAL_FILE), results)
    if not untrained:
        model_card.refresh(workdir, state)
    return results


def _probe(features_fn, train, test, seed: int) -> dict:
    """Linear-probe and 1-NN scores of ``features_fn`` (uint8 images -> [N, D]) fitted on
    ``train`` and scored on ``test`` (`ImageData` with labels)."""
    for part, name in ((train, "train"), (test, "test")):
        if part.labels is None:
            raise EvalError(f"metric group 'probe' needs labelled data; the {name} split has none")
    scores = probe_lib.probe_scores(
        features_fn(train.images), train.labels, features_fn(test.images), test.labels, seed
    )
    return dict(scores, probe_num_train=len(train.images), probe_num_test=len(test.images))


def _probe_pixels(real, split, num_images, num_train, seed) -> dict:
    """The probe on raw pixels of ``real`` (its train split against ``split``)."""
    if real is None:
        raise EvalError("--metrics=probe without --workdir probes raw pixels: give --real=SOURCE")
    train = load(real, "train", max_examples=num_train or None)
    test = load(real, split, max_examples=num_images or None)
    pixels = lambda images: images.reshape(len(images), -1).astype(np.float32) / 255.0  # noqa: E731
    return dict(_probe(pixels, train, test, seed), real=real, split=split, features="pixels")


def _run_on_files(
    metrics, fake, real, split, extractor, num_images, num_samples, seed, detector, per_class
) -> dict:
    """Sample quality (and detection) of the images of ``fake`` against ``real``, without a
    run."""
    if fake is None or real is None:
        raise EvalError("give --workdir (a training run), or --fake and --real (two data sets)")
    metrics = list(metrics or ("fid", "kid", "pr"))
    others = [m for m in metrics if m not in IMAGE_SET]
    if others:
        raise EvalError(
            f"without --workdir only {', '.join(IMAGE_SET)} apply, not {', '.join(others)}"
        )
    quality = _quality_groups(metrics, per_class)
    detector_net = _detector(metrics, detector)
    feature_net = extractors_lib.make_extractor(extractor) if quality else None
    reals = _load_real(real, split, num_images) if detector_net else None
    fakes = load_fake(fake, num=num_samples)
    cli.log_devices()
    results: dict = {}
    if quality:
        results.update(_sample_quality(fakes, real, split, feature_net, quality, num_images, seed))
    if detector_net:
        results.update(_detect(fakes, reals, detector_net), real=real, split=split)
    if per_class:
        results.update(_per_class(fakes, None, real, split, feature_net, quality, num_images, seed))
    return _write(_fake_dir(fake) / EVAL_FILE, results)


def _quality_groups(metrics, per_class: bool) -> list[str]:
    """The sample-quality groups of ``metrics``; ``per_class`` needs at least one."""
    quality = [m for m in metrics if m in SAMPLE_QUALITY]
    if per_class and not quality:
        raise EvalError("--per_class applies to the sample-quality groups fid, kid, pr")
    return quality


def _detector(metrics, detector):
    """The detector network when ``detect`` is asked for (checked before any work), else
    None; a detector without the group is an error too, so a typo cannot go unnoticed."""
    if "detect" not in metrics:
        if detector is not None:
            raise EvalError("--detector is only used by --metrics=detect")
        return None
    if not detector:
        raise EvalError(
            "metric group 'detect' needs --detector=W, a run of python -m experiments.detector"
        )
    return detection.load_detector(detector)


def _load_real(real, split, num_images):
    return load(real, split, max_examples=num_images or None).images


def _detect(fakes, reals, detector_net) -> dict:
    """`detection.detect` with its input errors as `EvalError`."""
    try:
        return detection.detect(fakes, reals, detector_net)
    except ValueError as err:
        raise EvalError(cli.one_line(err)) from err


def _sample_quality(fakes, real, split, extractor, metrics, num_images, seed) -> dict:
    """`sample_quality` with its input errors as `EvalError`."""
    try:
        return sample_quality(
            fakes, real, split, extractor, metrics, num_real=num_images or None, seed=seed
        )
    except ValueError as err:
        if isinstance(err, DataError):
            raise
        raise EvalError(cli.one_line(err)) from err


def _per_class(fakes, labels, real, split, extractor, metrics, num_images, seed) -> dict:
    """`per_class_quality` with its input errors as `EvalError`."""
    metrics = [m for m in metrics if m != "is"]
    try:
        return per_class_quality(
            fakes, labels, real, split, extractor, metrics, num_real=num_images or None, seed=seed
        )
    except ValueError as err:
        if isinstance(err, DataError):
            raise
        raise EvalError(cli.one_line(err)) from err


def _fake_dir(spec: str) -> pathlib.Path:
    """Where ``eval.json`` goes without a workdir: beside an npz, in a folder, else here."""
    kind, _, rest = spec.partition(":")
    if kind == "npz":
        return pathlib.Path(rest).parent
    return pathlib.Path(rest) if kind == "folder" else pathlib.Path(".")


def _write(path: pathlib.Path, results: dict) -> dict:
    """Merge ``results`` into the JSON file at ``path`` (atomically, fsynced) and return them."""
    merged = json.loads(path.read_text()) if path.exists() else {}
    merged.update(results)
    atomic_write_text(path, json.dumps(merged, indent=2) + "\n")
    return results


def format_table(results: dict) -> str:
    """Two aligned columns, numbers with 4 significant decimals."""
    width = max(len(k) for k in results)
    fmt = lambda v: f"{v:.4f}" if isinstance(v, float) else str(v)
    return "\n".join(f"{k:<{width}}  {fmt(v)}" for k, v in results.items())


def define_flags() -> None:
    cli.workdir_flag("A training run's folder (optional with --fake and --real).", False)
    cli.define_list("metrics", None, "Metric groups (default: what the run supports).")
    cli.define_integer("k", None, "Importance samples for nll (default: the run's eval.k).")
    cli.num_images_flag()
    cli.batch_size_flag(None, "Test images per batch (default: the run's eval.batch_size).")
    cli.seed_flag(0, "Seed of the samples, importance samples and corruptions.")
    cli.define_string("split", "test", "Split of the data to compare with.")
    cli.define_string("fake", None, "Images to score instead of samples: npz:FILE or folder:DIR.")
    cli.define_string("real", None, "Reference data source (default: the run's data).")
    cli.define_string(
        "extractor",
        "inception",
        "Features for fid/kid/pr/is: inception, inception:legacy or domain:W.",
    )
    cli.num_samples_flag(10000, "Samples drawn from the run (or first images of --fake).")
    cli.define_integer("num_train", 0, "probe: fit on the first N training images (0 = all).", 0)
    cli.define_bool(
        "untrained", False, "Evaluate the family's random initial state, not the checkpoint."
    )
    cli.define_string("detector", None, "Detector run for --metrics=detect (experiments.detector).")
    cli.define_bool(
        "per_class", False, "Also score fid/kid/pr per class (see above; label_accuracy)."
    )


def main(args) -> None:
    results = run(
        args.workdir,
        args.metrics,
        k=args.k,
        num_images=args.num_images,
        batch_size=args.batch_size,
        seed=args.seed,
        split=args.split,
        fake=args.fake,
        real=args.real,
        extractor=args.extractor,
        num_samples=args.num_samples,
        num_train=args.num_train,
        untrained=args.untrained,
        detector=args.detector,
        per_class=args.per_class,
    )
    print(format_table(results))
    if args.workdir:
        name = UNTRAINED_EVAL_FILE if args.untrained else EVAL_FILE
        print(f"written to {pathlib.Path(args.workdir) / name}")
    elif args.fake:
        print(f"written to {_fake_dir(args.fake) / EVAL_FILE}")


if __name__ == "__main__":
    cli.run(main, __doc__, define_flags)

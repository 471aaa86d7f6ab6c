"""Evaluate a trained run -- or a folder / .npz of images -- against its data's test split.

    python -m genimg.evaluate --workdir=runs/vae
    python -m genimg.evaluate --workdir=runs/vae --metrics=nll,recon --k=5000 --num_images=1000
    python -m genimg.evaluate --workdir=runs/dcgan --metrics=fid,kid,pr \
        --extractor=domain:runs/classifier
    python -m genimg.evaluate --fake=npz:samples.npz --real=fashion_mnist --metrics=fid,kid,pr \
        --extractor=domain:runs/classifier

Without --metrics, a run is evaluated on what its model family supports (VAE: nll,recon;
autoencoder: recon; GAN: fid,kid,pr; classifier: accuracy). Metric groups:

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
            offline). The test split's features are cached. A conditional run draws a
            balanced set of classes.

--per_class adds fid/kid/pr per class (each class's samples against the test images of
that class, keys class<c>/<metric> and their means class_mean/<metric>): samples of a
conditional run are grouped by the class they were drawn for, and the domain classifier's
accuracy on them is label_accuracy; samples of an unconditional run (or --fake) are grouped
by the domain classifier's predicted class.

The numbers are printed and merged into W/eval.json (or eval.json beside --fake's files).
"""

from __future__ import annotations

import json
import pathlib

import numpy as np

from genimg import cli, synthesis
from genimg.data import DataError, load
from genimg.errors import UserError
from genimg.metrics import extractors as extractors_lib
from genimg.metrics.sample_quality import METRICS as SAMPLE_QUALITY
from genimg.metrics.sample_quality import load_fake, per_class_quality, sample_quality
from genimg.train.checkpoint import restore_run
from genimg.train.family import EvalData

EVAL_FILE = "eval.json"


class EvalError(UserError, ValueError):
    """The requested evaluation does not apply to this run; the message is one line."""


def available_metrics(family) -> list[str]:
    """The metric groups ``family`` supports: its own, plus sample quality if it samples."""
    return list(family.eval_groups) + (list(SAMPLE_QUALITY) if family.sample else [])


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
    per_class: bool = False,
) -> dict:
    """Evaluate the run in ``workdir``; returns the results and merges them into ``eval.json``.

    ``metrics``: group names (default: the family's ``default_metrics``). Sample-quality
    groups compare ``num_samples`` samples of the run (or the images of ``fake``:
    ``npz:FILE`` / ``folder:DIR``, in which case ``workdir`` may be None and ``eval.json``
    goes beside them) with the ``split`` of ``real`` (default: the run's data source), in the
    features of ``extractor``. Every input is checked before samples are drawn. A
    conditional family draws classes ``0, 1, ..., K-1, 0, ...`` (balanced). ``per_class``
    adds `per_class_quality` for the sample-quality groups.
    """
    if num_images < 0:
        raise EvalError(f"--num_images must be >= 0 (0 = the whole split), got {num_images}")
    if num_samples < 1:
        raise EvalError(f"--num_samples must be >= 1, got {num_samples}")
    if workdir is None:
        return _run_on_files(
            metrics, fake, real, split, extractor, num_images, num_samples, seed, per_class
        )

    workdir = pathlib.Path(workdir)
    config, family, state, _ = restore_run(workdir)
    metrics = list(metrics or family.default_metrics)
    supported = available_metrics(family) + ([] if fake is None else list(SAMPLE_QUALITY))
    unknown = [m for m in metrics if m not in supported]
    if unknown:
        raise EvalError(
            f"metric group(s) {', '.join(unknown)} not available for this '{family.name}' run; "
            f"it supports {', '.join(dict.fromkeys(supported)) or 'none'}"
        )
    quality = [m for m in metrics if m in SAMPLE_QUALITY]
    groups = [m for m in metrics if m not in SAMPLE_QUALITY]
    feature_net = extractors_lib.make_extractor(extractor) if quality else None  # fails early

    results: dict = {"step": int(state.step), "split": split}
    if groups:
        dc = config.data
        test = load(dc.source, split, dc.image_size or None, max_examples=num_images or None)
        data = EvalData(
            images=test.images,
            labels=test.labels,
            workdir=workdir,
            batch_size=int(batch_size or config.eval.batch_size),
            seed=seed,
            k=k,
        )
        for name in groups:
            numbers = family.eval_groups[name](family, state, data)
            if numbers:  # "figures" adds none, and must not relabel earlier numbers' count
                results.update(numbers, num_images=len(test.images))
    if per_class and not quality:
        raise EvalError("--per_class applies to the sample-quality groups fid, kid, pr")
    if quality:
        fake_labels = None
        if fake is not None:
            fakes = load_fake(fake, num=num_samples)
        else:
            balanced = None
            if family.conditional and family.num_classes:
                balanced = np.arange(num_samples) % family.num_classes
            fakes, fake_labels = synthesis.generate(
                family, state, num_samples, seed, labels=balanced
            )
        real = real or config.data.source
        results.update(_sample_quality(fakes, real, split, feature_net, quality, num_images, seed))
        if per_class:
            results.update(
                _per_class(fakes, fake_labels, real, split, feature_net, quality, num_images, seed)
            )
    return _write(workdir / EVAL_FILE, results)


def _run_on_files(
    metrics, fake, real, split, extractor, num_images, num_samples, seed, per_class=False
) -> dict:
    """Sample quality of the images of ``fake`` against ``real``, without a run."""
    if fake is None or real is None:
        raise EvalError("give --workdir (a training run), or --fake and --real (two data sets)")
    metrics = list(metrics or ("fid", "kid", "pr"))
    others = [m for m in metrics if m not in SAMPLE_QUALITY]
    if others:
        raise EvalError(
            f"without --workdir only {', '.join(SAMPLE_QUALITY)} apply, not {', '.join(others)}"
        )
    feature_net = extractors_lib.make_extractor(extractor)
    fakes = load_fake(fake, num=num_samples)
    results = _sample_quality(fakes, real, split, feature_net, metrics, num_images, seed)
    if per_class:
        results.update(_per_class(fakes, None, real, split, feature_net, metrics, num_images, seed))
    return _write(_fake_dir(fake) / EVAL_FILE, results)


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
    """Merge ``results`` into the JSON file at ``path`` (atomically) and return them."""
    merged = json.loads(path.read_text()) if path.exists() else {}
    merged.update(results)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(merged, indent=2) + "\n")
    tmp.replace(path)
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
        per_class=args.per_class,
    )
    print(format_table(results))
    where = pathlib.Path(args.workdir) if args.workdir else _fake_dir(args.fake)
    print(f"written to {where / EVAL_FILE}")


if __name__ == "__main__":
    cli.run(main, __doc__, define_flags)

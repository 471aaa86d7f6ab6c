"""Evaluate a finished run on its data source's test split; one entry point for every family.

    python -m genimg.evaluate --workdir=W --metrics=nll,recon --k=5000 [--num=N]
    python -m genimg.evaluate --workdir=W --metrics=figures
    python -m genimg.evaluate --workdir=W --metrics=fid,kid,pr,is [--extractor=domain:W_CLS]
        [--num_fake=10000] [--real=fashion_mnist] [--num=N]
    python -m genimg.evaluate --fake=npz:FILE --real=fashion_mnist --metrics=fid,kid,pr

Restores the latest checkpoint of ``W`` (``genimg.train.checkpoint.restore_run``), runs the
requested metric groups on the first N test images (all when N is 0), prints a table and
merges the numbers into ``W/eval.json`` (earlier keys from other groups are kept).

Metric groups (``METRIC_GROUPS``; a group is ``fn(ctx: EvalContext) -> dict``):
  nll      VAE / cVAE: ``elbo`` (the bound, nats, mean over k samples), ``nll_iwae`` (``-IWAE_k``,
           nats, always <= ``-elbo``), ``k``, ``bits_per_dim``; test images binarised as in
           training (see ``genimg.train.vae``).
  recon    autoencoders and VAEs: ``mse``, ``psnr`` (dB), ``ssim`` (dm-pix) of the
           reconstruction against the clean test image; a DAE sees corrupted inputs.
  figures  PNGs in ``W/figures``: reconstructions (rows: input | [corrupted |] output), prior
           samples and a latent traversal for VAEs.
Sample quality (``genimg.metrics.sample_quality``; any family that samples, or ``--fake``):
  fid, kid, pr, is  ``fid``, ``kid``(+``kid_std``), ``precision``, ``recall``, ``density``,
           ``coverage``, ``is`` (Inception only; ``is_domain`` with a domain classifier), with
           ``n_real``, ``n_fake``, ``split``, ``extractor`` and ``preprocessing``. The real
           split's features are cached per (data, split, extractor, preprocessing).
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
import sys
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from genimg import synthesis
from genimg.data import DataError, load, scale_images
from genimg.metrics.likelihood import evaluate_nll
from genimg.metrics.reconstruction import evaluate_reconstruction
from genimg.metrics.sample_quality import METRICS as SAMPLE_QUALITY
from genimg.metrics.sample_quality import load_fake, sample_quality

VAE_FAMILIES = ("vae", "cvae")
AE_FAMILIES = ("ae", "dae")
EVAL_FILE = "eval.json"


class EvalError(ValueError):
    """The requested evaluation does not apply to this run; the message is one line."""


@dataclasses.dataclass
class EvalContext:
    """Everything a metric group may need: the restored run and its test images."""

    workdir: pathlib.Path
    config: Any  # the run's ml_collections.ConfigDict
    family: Any  # genimg.train.common.Family
    state: Any
    run_info: dict
    images: np.ndarray  # uint8 [N, H, W, C] test images
    labels: np.ndarray | None  # int32 [N] or None
    k: int  # importance samples for "nll"
    batch_size: int
    seed: int

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])

    def batches(self, images=None, with_labels: bool = False):
        """Float batches in [0, 1] (``(x, labels)`` tuples when ``with_labels``)."""
        images = self.images if images is None else images
        for start in range(0, len(images), self.batch_size):
            x = scale_images(images[start : start + self.batch_size], "0_1")
            if with_labels:
                yield x, jnp.asarray(self.labels[start : start + self.batch_size])
            else:
                yield x


def _vae_images(ctx: EvalContext) -> np.ndarray:
    """Test images binarised as the run was trained (uint8 0/255), or unchanged."""
    from genimg.train.vae import eval_binarize  # noqa: PLC0415

    x = eval_binarize(scale_images(ctx.images, "0_1"), ctx.config.data.get("binarize", "none"))
    return np.asarray(jnp.round(x * 255.0), np.uint8)


def nll_group(ctx: EvalContext) -> dict:
    """ELBO and IWAE-k NLL of a VAE on the test images."""
    from genimg.train.vae import likelihood_fns  # noqa: PLC0415

    if ctx.family.name not in VAE_FAMILIES:
        raise EvalError(
            f"metric group 'nll' needs a VAE run (model.family in {VAE_FAMILIES}); "
            f"this run is '{ctx.family.name}'"
        )
    eval_cfg = ctx.config.get("eval", {})
    chunk = int(eval_cfg.get("chunk_size", 500))
    encode_fn, log_lik_fn = likelihood_fns(
        ctx.config, ctx.state, ctx.image_shape, ctx.run_info.get("num_classes")
    )
    gaussian = ctx.config.model.likelihood.startswith("gaussian")
    return evaluate_nll(
        encode_fn,
        log_lik_fn,
        ctx.batches(_vae_images(ctx), with_labels=ctx.family.name == "cvae"),
        jax.random.key(ctx.seed),
        ctx.k,
        chunk_size=chunk,
        num_bins=256 if gaussian else None,
    )


def _reconstruct_setup(ctx: EvalContext):
    """(reconstruct_fn, clean images, corrupt_fn, with_labels) for the run's family."""
    if ctx.family.reconstruct is None:
        raise EvalError(
            f"metric group 'recon' needs an autoencoder or VAE run, not '{ctx.family.name}'"
        )
    reconstruct = jax.jit(lambda x, *extra: ctx.family.reconstruct(ctx.state, x, *extra))
    if ctx.family.name in VAE_FAMILIES:
        return reconstruct, _vae_images(ctx), None, ctx.family.name == "cvae"
    from genimg.train.autoencoder import make_corruption_fn  # noqa: PLC0415

    return reconstruct, ctx.images, make_corruption_fn(ctx.config), False


def recon_group(ctx: EvalContext) -> dict:
    """MSE / PSNR / SSIM of reconstructions of the test images (DAE: from corrupted inputs)."""
    reconstruct, images, corrupt_fn, with_labels = _reconstruct_setup(ctx)
    corrupt = None if corrupt_fn is None else jax.jit(corrupt_fn)
    rng = jax.random.fold_in(jax.random.key(ctx.seed), 1)
    scores = evaluate_reconstruction(reconstruct, ctx.batches(images, with_labels), corrupt, rng)
    return {name: scores[name] for name in ("mse", "psnr", "ssim")}


def figures_group(ctx: EvalContext, num: int = 10) -> dict:
    """Reconstruction, prior-sample and latent-traversal grids as PNGs in ``W/figures``."""
    reconstruct, images, corrupt_fn, with_labels = _reconstruct_setup(ctx)
    out_dir = ctx.workdir / "figures"
    x = scale_images(images[:num], "0_1")
    extra = (jnp.asarray(ctx.labels[:num]),) if with_labels else ()
    rows = [x]
    if corrupt_fn is not None:
        x = corrupt_fn(jax.random.fold_in(jax.random.key(ctx.seed), 2), x)
        rows.append(x)
    rows.append(reconstruct(x, *extra))
    written = {"reconstructions": jnp.concatenate(rows)}
    if ctx.family.name in VAE_FAMILIES:
        from genimg.train.vae import latent_traversal  # noqa: PLC0415

        n = 100 if ctx.family.name == "cvae" else 64
        written["samples"] = ctx.family.sample(ctx.state, jax.random.key(ctx.seed), n)
        written["traversal"] = latent_traversal(
            ctx.config,
            ctx.state,
            ctx.image_shape,
            ctx.run_info.get("num_classes"),
            rows[0],
            *extra,
        )
    for name, pics in written.items():
        ncols = {"reconstructions": len(rows[0]), "traversal": 11}.get(name)
        ncols = ncols or (10 if len(pics) == 100 else math.ceil(math.sqrt(len(pics))))
        synthesis.save_png(out_dir / f"{name}.png", synthesis.make_grid(pics, ncols=ncols))
    return {}


# name -> fn(ctx) -> dict of numbers. The sample-quality group (fid, kid, pr, is) joins here.
METRIC_GROUPS: dict[str, Callable[[EvalContext], dict]] = {
    "nll": nll_group,
    "recon": recon_group,
    "figures": figures_group,
}


def run(
    workdir,
    metrics=("nll", "recon"),
    *,
    k: int | None = None,
    num: int = 0,
    batch_size: int | None = None,
    seed: int = 0,
    split: str = "test",
    fake: str | None = None,
    real: str | None = None,
    extractor: str = "inception",
    num_fake: int = 10000,
) -> dict:
    """Evaluate the run in ``workdir``; returns and merges the results into ``eval.json``.

    Sample-quality groups (``fid``, ``kid``, ``pr``, ``is``) compare ``num_fake`` samples of
    the run (or the images of ``fake``: ``npz:FILE`` / ``folder:DIR``, in which case
    ``workdir`` may be None and ``eval.json`` goes next to them) with the ``split`` of
    ``real`` (default: the run's data source), in the features of ``extractor``
    (``inception`` or ``domain:CLASSIFIER_WORKDIR``).
    """
    from genimg.train.checkpoint import restore_run  # noqa: PLC0415

    unknown = [m for m in metrics if m not in METRIC_GROUPS and m not in SAMPLE_QUALITY]
    if unknown:
        raise EvalError(
            f"unknown metric group(s) {unknown}; expected some of "
            f"{list(METRIC_GROUPS) + list(SAMPLE_QUALITY)}"
        )
    if num < 0:
        raise EvalError(f"--num must be >= 0 (0 = the whole split), got {num}")
    quality = [m for m in metrics if m in SAMPLE_QUALITY]
    metrics = [m for m in metrics if m not in SAMPLE_QUALITY]
    if workdir is None:
        if metrics or fake is None or real is None:
            raise EvalError("--workdir is required unless --fake and --real are given")
        return _write(
            _fake_dir(fake) / EVAL_FILE,
            sample_quality_results(
                load_fake(fake, num=num_fake), real, split, extractor, quality, num, seed
            ),
        )
    workdir = pathlib.Path(workdir)
    config, family, state, info = restore_run(workdir)
    dc = config.data
    test = load(dc.source, split, dc.get("image_size") or None, max_examples=num or None)
    eval_cfg = config.get("eval", {})
    ctx = EvalContext(
        workdir=workdir,
        config=config,
        family=family,
        state=state,
        run_info=info,
        images=test.images,
        labels=test.labels,
        k=int(k or eval_cfg.get("k", 5000)),
        batch_size=int(batch_size or eval_cfg.get("batch_size", 50)),
        seed=seed,
    )
    results = {"step": int(state.step), "split": split}
    for name in metrics:
        numbers = METRIC_GROUPS[name](ctx)
        if numbers:  # "figures" adds none, and must not relabel earlier numbers' image count
            results.update(numbers, num_images=len(test.images))
    if quality:
        if fake is not None:
            fakes = load_fake(fake, num=num_fake)
        else:
            from genimg.synthesis import generate  # noqa: PLC0415

            if family.sample is None:
                raise EvalError(f"run '{family.name}' cannot sample; pass --fake=npz:FILE")
            fakes = generate(family, state, num_fake, seed)
        results.update(
            sample_quality_results(fakes, real or dc.source, split, extractor, quality, num, seed)
        )
    return _write(workdir / EVAL_FILE, results)


def sample_quality_results(fakes, real, split, extractor, metrics, num, seed) -> dict:
    """`genimg.metrics.sample_quality.sample_quality` with the evaluator's errors."""
    try:
        return sample_quality(
            fakes, real, split, extractor, metrics, num_real=num or None, seed=seed
        )
    except ValueError as err:
        if isinstance(err, DataError):
            raise
        raise EvalError(str(err).splitlines()[0]) from err


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


def main() -> None:
    """The absl entry point (flags are defined here, not at import)."""
    from absl import app, flags, logging  # noqa: PLC0415

    from genimg import platform  # noqa: PLC0415

    platform.configure_cpu_defaults()
    flags.DEFINE_string("workdir", None, "A training run's folder.")
    flags.DEFINE_list("metrics", ["nll", "recon"], f"Metric groups: {', '.join(METRIC_GROUPS)}.")
    flags.DEFINE_integer("k", None, "Importance samples for nll (default: config.eval.k).")
    flags.DEFINE_integer("num", 0, "Evaluate the first N test images (0 = all).")
    flags.DEFINE_integer("batch_size", None, "Images per batch (default: config.eval.batch_size).")
    flags.DEFINE_integer("seed", 0, "Key for importance samples and corruptions.")
    flags.DEFINE_string("split", "test", "Split of the run's data source.")
    flags.DEFINE_string(
        "fake", None, "Images to score instead of the run's samples: npz:FILE or folder:DIR."
    )
    flags.DEFINE_string("real", None, "Reference data source (default: the run's data.source).")
    flags.DEFINE_string(
        "extractor", "inception", "Features for fid/kid/pr/is: inception or domain:W_CLS."
    )
    flags.DEFINE_integer(
        "num_fake", 10000, "Samples drawn from the run (or first images of --fake)."
    )

    def _main(argv):
        if len(argv) > 1:
            raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
        logging.set_verbosity(logging.WARNING)  # Orbax is chatty at INFO
        f = flags.FLAGS
        try:
            results = run(
                f.workdir,
                f.metrics,
                k=f.k,
                num=f.num,
                batch_size=f.batch_size,
                seed=f.seed,
                split=f.split,
                fake=f.fake,
                real=f.real,
                extractor=f.extractor,
                num_fake=f.num_fake,
            )
        except (EvalError, DataError, FileNotFoundError, FloatingPointError) as err:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(1)
        print(format_table(results))
        where = pathlib.Path(f.workdir) if f.workdir else _fake_dir(f.fake)
        print(f"written to {where / EVAL_FILE}")

    app.run(_main)


if __name__ == "__main__":
    main()

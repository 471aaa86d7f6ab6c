"""Draw samples from a trained run (its latest checkpoint; EMA weights when it has them).

    python -m genimg.sample --workdir=runs/dcgan --num_samples=10000 --out=runs/dcgan/samples.npz
    python -m genimg.sample --workdir=runs/cvae --labels=3,7 --num_samples=16 --out=s.npz --png=s/
    python -m genimg.sample --workdir=runs/t2i --prompt="a bag right of a sneaker" --num_samples=16

Writes "images" (uint8, N x H x W x C) -- and "labels" for conditional runs -- to the .npz
file, the format python -m genimg.evaluate --fake=npz:FILE reads; --png also writes one PNG
per image and grid.png into that folder, each carrying the run's provenance (PNG text and
the invisible watermark, unless the run was trained with provenance.watermark=False; check
them with python -m genimg.provenance check FILE). --prompt (families with
Family.encode_prompt, e.g. text2image) conditions every sample on one caption; without --out
and --png its samples go to W/prompts/<the prompt's words and digits joined by _>/
(samples.npz, PNGs and grid.png).

The classification accuracy score (CAS; Ravuri & Vinyals 2019) trains a classifier on
generated images only and tests it on real ones: --with_test_split=SOURCE stores the samples
as the "train" split and SOURCE's real test split as the "test" split of the .npz, so that

    python -m genimg.sample --workdir=runs/cgan --labels=all --num_samples=60000 \
        --with_test_split=fashion_mnist --out=runs/cas_cgan.npz
    python -m experiments.classifier --workdir=runs/cas_cgan \
        --config.data.source=npz:runs/cas_cgan.npz

reports the CAS as the classifier's test accuracy.
"""

from __future__ import annotations

import math
import pathlib
import re

import numpy as np

from genimg import cli
from genimg import images as images_lib
from genimg.data import load
from genimg.synthesis import generate
from genimg.train.checkpoint import restore_run
from genimg.train.run_provenance import provenance_for_run, warn_if_unmarked


def define_flags() -> None:
    cli.workdir_flag()
    cli.num_samples_flag(64)
    cli.define_string("out", None, "Output .npz file (required unless --prompt is given).")
    cli.define_string("png", None, "Optional folder for one PNG per sample and a grid.")
    cli.seed_flag(0, "Sampling seed.")
    cli.batch_size_flag(256, "Samples per device call.")
    cli.labels_flag()
    cli.define_string(
        "prompt", None, "Text-conditional families: the caption every sample is drawn for."
    )
    cli.define_string(
        "with_test_split",
        None,
        "Store the samples as the train split and this data source's test split beside them "
        "(train_images/train_labels, test_images/test_labels), for the classification "
        "accuracy score.",
    )


def prompt_folder(prompt: str) -> str:
    """The folder name of a prompt's samples: its runs of letters and digits joined by _
    ("a bag, a shirt and a boot" -> "a_bag_a_shirt_and_a_boot")."""
    return "_".join(re.findall(r"[A-Za-z0-9]+", prompt)) or "prompt"


def main(args) -> None:
    if args.prompt is not None and args.labels is not None:
        cli.fail("give --prompt or --labels, not both")
    if args.out is None and args.prompt is None:
        cli.fail("--out is required (an .npz file)")
    if args.out is not None and not args.out.endswith(".npz"):
        cli.fail(f"--out must end in .npz, got {args.out}")
    _, family, state, info = restore_run(args.workdir)
    num_classes = family.num_classes if family.conditional else None
    labels = cli.parse_labels(args.labels, args.num_samples, num_classes)
    if args.prompt is not None:
        if family.encode_prompt is None:
            cli.fail(f"family '{family.name}' takes no text prompts (it has no encode_prompt)")
        tokens = np.asarray(family.encode_prompt(args.prompt))
        labels = np.repeat(tokens[None], args.num_samples, axis=0)
        if args.out is None:
            folder = pathlib.Path(args.workdir) / "prompts" / prompt_folder(args.prompt)
            args.out = str(folder / "samples.npz")
            args.png = args.png or str(folder)
    test = None
    if args.with_test_split:
        if not family.conditional:
            cli.fail("--with_test_split needs a conditional run: the samples need labels")
        test = load(args.with_test_split, "test")
        if test.labels is None or test.images.shape[1:] != tuple(info["image_shape"]):
            cli.fail(
                f"--with_test_split={args.with_test_split}: its test split must be labelled "
                f"images of the run's shape {tuple(info['image_shape'])}, got "
                f"{test.images.shape[1:]}{'' if test.labels is not None else ' without labels'}"
            )
    cli.log_devices()
    images, labels = generate(family, state, args.num_samples, args.seed, args.batch_size, labels)
    if test is None:
        images_lib.write_npz(args.out, images, labels)
    else:
        images_lib.write_npz_splits(
            args.out, {"train": (images, labels), "test": (test.images, test.labels)}
        )
    if args.png:
        folder = pathlib.Path(args.png)
        provenance = provenance_for_run(args.workdir, state)
        warn_if_unmarked(provenance, folder)
        images_lib.save_pngs(folder, images, provenance)
        grid = images_lib.make_grid(images / 255.0, ncols=math.ceil(math.sqrt(len(images))))
        images_lib.save_png(folder / "grid.png", grid, provenance)
    if args.prompt is not None:
        what = f" for {args.prompt!r}"
    else:
        what = "" if labels is None else f" with labels {sorted(set(labels.tolist()))}"
    print(f"wrote {len(images)} samples {images.shape[1:]}{what} to {args.out}")


if __name__ == "__main__":
    cli.run(main, __doc__, define_flags)

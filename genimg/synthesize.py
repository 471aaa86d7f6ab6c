"""Edit and combine images with a trained run: interpolation, latent arithmetic, inpainting and
compositing, on any family that has the pieces each needs.

    python -m genimg.synthesize interpolate --workdir=runs/dcgan --out=runs/dcgan/edit
    python -m genimg.synthesize interpolate --workdir=runs/vae --out=runs/vae/edit --pairs=4
    python -m genimg.synthesize arithmetic --workdir=runs/cgan --out=runs/cgan/edit
    python -m genimg.synthesize arithmetic --workdir=runs/dcgan --classifier=runs/classifier \
        --out=runs/dcgan/edit
    python -m genimg.synthesize inpaint --workdir=runs/vae --mask=center --num_images=1000 \
        --out=runs/vae/inpaint
    python -m genimg.synthesize composite --workdir=runs/cgan --canvas=64 --out=runs/cgan/edit

Commands (the first argument):

  interpolate  rows from one code to another in --steps steps, by lerp and/or slerp
               (--interpolation): codes drawn from the prior of a family that samples (a
               GAN), or the posterior means of two test images of a family with an encoder (a
               VAE/AE; both images of a pair from one class for a conditional family).
               --source=prior|images overrides the choice.
  arithmetic   latent arithmetic c - b + a: each row is an example c of class b moved to each
               target class a by adding the difference of the class-mean codes; the class
               means come from encoded test images (a family with an encoder) or from samples
               labelled by --classifier (a GAN). The first row decodes the class means. A
               conditional family keeps z and changes the class instead ("same pose, other
               garment").
  inpaint      hide part of the first --num_images test images (--mask) and fill it:
               --method=invert optimises the generator's code on the visible pixels (Adam,
               --restarts, --inversion_steps, --prior_weight), --method=encode_decode iterates
               the encoder-decoder with the visible pixels clamped (--iterations); auto picks
               encode_decode when the family has an encoder. Scores the filled region (MSE,
               PSNR, SSIM) beside two baselines: the training mean image and the training
               image nearest on the visible pixels. A conditional family is given each image's
               class.
  composite    --num_scenes canvases of --canvas pixels with --min_items..--max_items
               generated objects each, alpha from their own brightness (--matte,
               --threshold), layered in order; also the per-pixel class map of the top object
               (background = the number of classes). Class ids come from a conditional
               family, or from --classifier for an unconditional one.

Writes DIR/<command>.png (a grid) and DIR/<command>.npz into --out: "images" (uint8, the
grid's images in row-major order, or the filled images / the scenes) and "grid_shape", plus
the command's own arrays (codes, labels, masks, label maps, ...); inpaint also writes
DIR/inpaint.json with the scores. Every input is checked before anything is written. The
same functions are importable from genimg.synthesis.
"""

from __future__ import annotations

import colorsys
import json
import pathlib

import jax
import numpy as np

from genimg import cli, synthesis
from genimg import images as images_lib
from genimg.data import load
from genimg.errors import UserError
from genimg.metrics.reconstruction import hole_scores
from genimg.train.checkpoint import restore_run
from genimg.train.run_provenance import provenance_for_run

COMMANDS = ("interpolate", "arithmetic", "inpaint", "composite")
BLANK = 1.0  # value of the empty cells of a grid (white, like the grid's padding)


def define_flags() -> None:
    cli.workdir_flag()
    cli.define_string("out", None, "Output folder for <command>.png and <command>.npz.", True)
    cli.seed_flag(0, "Seed of every random draw (codes, masks, layouts).")
    cli.batch_size_flag(256, "Images per device call.")
    cli.define_string(
        "labels",
        None,
        "Class ids like 3,7 or 'all': the classes of the pairs (interpolate), the target "
        "classes (arithmetic), the classes placed (composite).",
    )
    cli.define_string(
        "classifier",
        None,
        "A classifier run that labels the samples of an unconditional GAN (arithmetic, composite).",
    )
    # interpolate
    cli.define_integer("pairs", 8, "interpolate: number of pairs (rows).", lower_bound=1)
    cli.define_integer("steps", 10, "interpolate: points per row, ends included.", lower_bound=2)
    cli.define_enum(
        "interpolation", "both", ["lerp", "slerp", "both"], "interpolate: lerp, slerp or both."
    )
    cli.define_enum(
        "source",
        "auto",
        ["auto", "prior", "images"],
        "interpolate: codes from the prior or from test images (auto: images if the family "
        "has an encoder).",
    )
    # arithmetic
    cli.define_integer("num_rows", 8, "arithmetic: examples (rows).", lower_bound=1)
    cli.define_integer(
        "num_codes",
        5000,
        "arithmetic, GAN: samples drawn and labelled by --classifier for the class means.",
        lower_bound=1,
    )
    cli.define_float(
        "min_confidence",
        0.9,
        "arithmetic, GAN: keep samples the classifier labels with at least this probability.",
    )
    # inpaint
    cli.define_string("mask", "center", f"inpaint: {synthesis.MASK_HELP}.")
    cli.define_enum(
        "method",
        "auto",
        ["auto", "invert", "encode_decode"],
        "inpaint: invert the generator or iterate the encoder-decoder (auto: encode_decode "
        "when the family has an encoder).",
    )
    cli.num_images_flag(100, "inpaint: the first N test images.")
    cli.define_integer("iterations", 20, "inpaint, encode_decode: iterations.", lower_bound=1)
    cli.define_integer(
        "inversion_steps", 100, "inpaint, invert: Adam steps per restart.", lower_bound=0
    )
    cli.define_integer("restarts", 2, "inpaint, invert: random starts per image.", lower_bound=1)
    cli.define_float("lr", 0.1, "inpaint, invert: Adam learning rate.")
    cli.define_float("prior_weight", 0.01, "inpaint, invert: weight of mean(z^2).")
    cli.define_bool("baselines", True, "inpaint: also score the mean-image and nearest fills.")
    # composite
    cli.define_integer("num_scenes", 16, "composite: canvases.", lower_bound=1)
    cli.define_integer("canvas", 64, "composite: canvas side in pixels.", lower_bound=1)
    cli.define_integer("min_items", 2, "composite: fewest objects per canvas.", lower_bound=1)
    cli.define_integer("max_items", 4, "composite: most objects per canvas.", lower_bound=1)
    cli.define_enum("matte", "soft", list(synthesis.MATTES), "composite: hard or soft alpha.")
    cli.define_float("threshold", 0.1, "composite: brightness where an object starts.")


# --- inputs -----------------------------------------------------------------------------------


def parse_classes(spec: str | None, num_classes: int | None) -> list[int] | None:
    """``--labels`` as a list of distinct class ids in the order given (None: not given)."""
    if spec is None:
        return None
    if not num_classes:
        raise UserError("--labels needs class ids: this run has no classes (and no --classifier)")
    ids = list(range(num_classes)) if spec.strip() == "all" else _ints(spec)
    bad = [c for c in ids if not 0 <= c < num_classes]
    if bad:
        raise UserError(
            f"label {bad[0]} is out of range: this run has classes 0..{num_classes - 1}"
        )
    return list(dict.fromkeys(ids))


def _ints(spec: str) -> list[int]:
    try:
        ids = [int(part) for part in spec.split(",") if part.strip()]
    except ValueError:
        raise UserError(f"--labels={spec}: expected class ids like 3,7 or 'all'") from None
    if not ids:
        raise UserError("--labels is empty: give class ids like 3,7 or 'all'")
    return ids


def restore_classifier(path: str, image_shape):
    """``(family, state)`` of a classifier run whose images have ``image_shape``."""
    _, family, state, info = restore_run(path)
    if family.classify is None:
        raise UserError(f"--classifier={path} is a '{family.name}' run, not a classifier run")
    if tuple(info["image_shape"]) != tuple(image_shape):
        raise UserError(
            f"--classifier={path} was trained on images {tuple(info['image_shape'])}, the run "
            f"makes {tuple(image_shape)}"
        )
    return family, state


def _test_split(config, num: int = 0):
    """The run's test images as float [N, H, W, C] in [0, 1] and their labels."""
    dc = config.data
    test = load(dc.source, "test", dc.image_size or None, max_examples=num or None)
    return test.images.astype(np.float32) / 255.0, test.labels


def _pick_per_class(labels, classes, num: int) -> np.ndarray:
    """Indices of ``num`` examples, row r of class ``classes[r % len(classes)]``, each the
    first unused one of its class."""
    labels = np.asarray(labels)
    used: dict[int, int] = {}
    rows = []
    for r in range(num):
        c = classes[r % len(classes)]
        where = np.flatnonzero(labels == c)
        k = used.get(c, 0)
        if k >= len(where):
            raise UserError(f"not enough examples of class {c} (found {len(where)})")
        rows.append(where[k])
        used[c] = k + 1
    return np.asarray(rows)


# --- commands ---------------------------------------------------------------------------------


def interpolate(args, config, family, state, info) -> dict:
    source = args.source
    if source == "auto":
        source = "images" if family.encode is not None else "prior"
    modes = ["lerp", "slerp"] if args.interpolation == "both" else [args.interpolation]
    if args.labels is not None and not family.conditional:
        raise UserError(f"family '{family.name}' is unconditional: interpolate takes no --labels")
    num_classes = family.num_classes if family.conditional else None
    classes = parse_classes(args.labels, num_classes)
    pair_labels = None
    if family.conditional:
        classes = classes or list(range(num_classes))
        pair_labels = np.asarray([classes[i % len(classes)] for i in range(args.pairs)], np.int32)
    ends = None
    if source == "prior":
        synthesis.require(family, "interpolate between prior codes", "sample", "latent_dim")
        codes = synthesis.prior_codes(family, jax.random.key(args.seed), 2 * args.pairs)
        a, b = np.asarray(codes[: args.pairs]), np.asarray(codes[args.pairs :])
    else:
        synthesis.require(family, "interpolate between images", "encode", "decode")
        x, y = _test_split(config)
        if family.conditional:
            # Row r of _pick_per_class has class list[r]: pair p takes two images of its class.
            index = _pick_per_class(y, list(np.repeat(pair_labels, 2)), 2 * args.pairs)
            index = index.reshape(args.pairs, 2)
        else:
            if 2 * args.pairs > len(x):
                raise UserError(f"--pairs={args.pairs} needs {2 * args.pairs} test images")
            index = np.arange(2 * args.pairs).reshape(args.pairs, 2)
        ends = x[index]  # [P, 2, H, W, C]
        a = synthesis.encode_images(family, state, ends[:, 0], pair_labels, args.batch_size)
        b = synthesis.encode_images(family, state, ends[:, 1], pair_labels, args.batch_size)
    rows, codes, row_modes, row_labels = [], [], [], []
    for p in range(args.pairs):
        for mode in modes:
            path = synthesis.interpolate_codes(a[p : p + 1], b[p : p + 1], args.steps, mode)[0]
            labels = None if pair_labels is None else np.full(args.steps, pair_labels[p])
            images = synthesis.decode_codes(family, state, path, labels, args.batch_size)
            if ends is not None:  # the real images at both ends of the row
                images = np.concatenate([ends[p, :1], images, ends[p, 1:]])
            rows.append(images)
            codes.append(path)
            row_modes.append(mode)
            row_labels.append(-1 if pair_labels is None else int(pair_labels[p]))
    grid = np.stack(rows)  # [rows, cols, H, W, C]
    return {
        "grid": grid,
        "arrays": {
            "codes": np.stack(codes),
            "t": np.linspace(0.0, 1.0, args.steps),
            "modes": np.asarray(row_modes),
            "labels": np.asarray(row_labels, np.int32),
            "source": np.asarray(source),
        },
        "summary": f"{args.pairs} pairs x {len(modes)} ({', '.join(modes)}), codes from {source}",
    }


def arithmetic(args, config, family, state, info) -> dict:
    synthesis.require(family, "do latent arithmetic", "decode", "latent_dim")
    classifier = None
    if family.conditional:
        num_classes = family.num_classes
    elif family.encode is not None:
        num_classes = info.get("num_classes")
        if not num_classes:
            raise UserError("arithmetic needs class labels: this run's data has none")
    else:
        if args.classifier is None:
            raise UserError(
                f"family '{family.name}' has no encoder: arithmetic needs --classifier=W (a "
                "classifier run) to label its samples for the class means"
            )
        classifier = restore_classifier(args.classifier, info["image_shape"])
        num_classes = classifier[0].num_classes
    targets = parse_classes(args.labels, num_classes) or list(range(num_classes))

    # Codes with their classes, and the example shown at the start of each row.
    if family.encode is not None:
        x, y = _test_split(config)
        if y is None:
            raise UserError("arithmetic needs labelled test images")
        pool_codes = synthesis.encode_images(
            family, state, x, y if family.conditional else None, args.batch_size
        )
        pool_labels, pool_images = y, x
    else:
        codes = np.asarray(synthesis.prior_codes(family, jax.random.key(args.seed), args.num_codes))
        if family.conditional:
            pool_labels = np.arange(args.num_codes) % num_classes
            pool_codes = codes
        else:
            images = synthesis.decode_codes(family, state, codes, None, args.batch_size)
            pool_labels, confidence = synthesis.predict_labels(classifier[0], classifier[1], images)
            keep = confidence >= args.min_confidence
            pool_codes, pool_labels = codes[keep], pool_labels[keep]
        pool_images = None
    present = [c for c in range(num_classes) if np.any(pool_labels == c)]
    missing = [c for c in targets if c not in present]
    if missing and not family.conditional:
        how = (
            ""
            if classifier is None
            else (
                f" (samples the classifier labels with confidence >= {args.min_confidence} among "
                f"{args.num_codes}: raise --num_codes or lower --min_confidence)"
            )
        )
        raise UserError(f"no codes of class {missing[0]} for its class mean{how}")
    index = _pick_per_class(pool_labels, present, args.num_rows)
    row_codes, row_labels = pool_codes[index], np.asarray(pool_labels)[index].astype(np.int32)
    first = None if pool_images is None else pool_images[index]
    if first is None:
        first = synthesis.decode_codes(
            family, state, row_codes, row_labels if family.conditional else None, args.batch_size
        )
    arrays = {"codes": row_codes, "source_labels": row_labels}
    if family.conditional:
        edited = synthesis.relabel(family, state, row_codes, targets, args.batch_size)
        grid = np.concatenate([first[:, None], edited], axis=1)
        what = "same code, other class"
    else:
        means, counts = synthesis.class_means(pool_codes, pool_labels, num_classes)
        edited = synthesis.vector_arithmetic(
            family, state, row_codes, row_labels, means, targets, args.batch_size
        )
        mean_row = synthesis.decode_codes(family, state, means[targets], None, args.batch_size)
        blank = np.full_like(mean_row[:1], BLANK)
        grid = np.concatenate(
            [
                np.concatenate([blank, mean_row])[None],
                np.concatenate([first[:, None], edited], axis=1),
            ]
        )
        arrays.update(means=means, counts=counts)
        what = f"class-mean vectors from {int(counts.sum())} codes"
    arrays["target_labels"] = np.asarray(targets, np.int32)
    return {"grid": grid, "arrays": arrays, "summary": f"{args.num_rows} rows, {what}"}


def inpaint(args, config, family, state, info) -> dict:
    method = args.method
    if method == "auto":
        method = "encode_decode" if family.reconstruct is not None else "invert"
    if method == "encode_decode":
        synthesis.require(family, "inpaint by encode-decode", "reconstruct")
    else:
        synthesis.require(family, "inpaint by inverting the generator", "decode", "latent_dim")
    h, w, _ = info["image_shape"]
    synthesis.make_mask(args.mask, 1, h, w, args.seed)  # a bad --mask fails before any work
    x, y = _test_split(config, args.num_images)
    labels = y if family.conditional else None
    if family.conditional and y is None:
        raise UserError("a conditional family inpaints given the class: the test data has none")
    mask = synthesis.make_mask(args.mask, len(x), h, w, args.seed)
    train = None
    if args.baselines or method == "encode_decode":
        dc = config.data
        train = load(dc.source, "train", dc.image_size or None).images
        mean_image = train.mean(axis=0).astype(np.float32) / 255.0
    arrays = {"masks": mask, "labels": np.asarray([] if y is None else y, np.int32)}
    if method == "encode_decode":
        filled = synthesis.inpaint_encode_decode(
            family, state, x, mask, labels, iterations=args.iterations, init=mean_image,
            batch_size=args.batch_size,
        )  # fmt: skip
    else:
        filled, inv = synthesis.inpaint_invert(
            family, state, x, mask, labels, seed=args.seed, steps=args.inversion_steps,
            restarts=args.restarts, lr=args.lr, prior_weight=args.prior_weight,
            batch_size=min(args.batch_size, 128), progress=True,
        )  # fmt: skip
        arrays.update(codes=inv["codes"], visible_mse_before=inv["before"])
        arrays["visible_mse_after"] = inv["after"]
    fills = {method: filled}
    if args.baselines:
        fills["mean_image"] = synthesis.inpaint_mean(x, mask, mean_image)
        fills["nearest_train"], arrays["nearest_index"] = synthesis.inpaint_nearest(
            x, mask, train.astype(np.float32) / 255.0
        )
    scores = {}
    for name, images in fills.items():
        per_image = hole_scores(x, images, mask)
        for metric, values in per_image.items():
            scores[f"{name}/{metric}"] = float(np.nanmean(values))
        scores[f"{name}/num_ssim"] = int(np.sum(np.isfinite(per_image["ssim"])))
    for name, images in fills.items():
        if name != method:
            arrays[name] = images_lib.to_uint8(images)
    shown = min(len(x), 10)
    masked = np.where(mask, 0.5, x)  # grey where hidden
    grid = np.stack([x[:shown], masked[:shown]] + [f[:shown] for f in fills.values()])
    record = {
        "method": method,
        "mask": args.mask,
        "num_images": len(x),
        "rows": ["truth", "masked"] + list(fills),
        **scores,
    }
    summary = ", ".join(
        f"{name}: PSNR {scores[f'{name}/psnr']:.2f} dB SSIM {scores[f'{name}/ssim']:.3f}"
        for name in fills
    )
    return {"grid": grid, "images": filled, "arrays": arrays, "json": record, "summary": summary}


def composite(args, config, family, state, info) -> dict:
    synthesis.require(family, "composite generated objects", "sample")
    if args.min_items > args.max_items:
        raise UserError(f"--min_items={args.min_items} exceeds --max_items={args.max_items}")
    label_images, num_classes = None, family.num_classes if family.conditional else None
    if not family.conditional:
        if args.classifier is None:
            raise UserError(
                f"family '{family.name}' is unconditional: composite needs --classifier=W to "
                "give its objects class ids"
            )
        clf, clf_state = restore_classifier(args.classifier, info["image_shape"])
        num_classes = clf.num_classes
        label_images = lambda x: synthesis.predict_labels(clf, clf_state, x)[0]  # noqa: E731
    classes = parse_classes(args.labels, num_classes)
    scenes = synthesis.composite_scenes(
        family, state, args.num_scenes, canvas=args.canvas, items=(args.min_items, args.max_items),
        classes=classes, label_images=label_images, num_classes=num_classes,
        matte_mode=args.matte, threshold=args.threshold, seed=args.seed,
        batch_size=args.batch_size,
    )  # fmt: skip
    pictures = scenes["images"]
    if pictures.shape[-1] == 1:
        pictures = np.repeat(pictures, 3, axis=-1)
    colours = label_colours(num_classes)[scenes["label_maps"]]
    cols = min(8, args.num_scenes)
    rows = []
    for start in range(0, args.num_scenes, cols):
        part = slice(start, start + cols)
        pad = cols - len(pictures[part])
        blank = np.full((pad, *pictures.shape[1:]), BLANK, np.float32)
        rows += [np.concatenate([pictures[part], blank]), np.concatenate([colours[part], blank])]
    arrays = {k: v for k, v in scenes.items() if k != "images"}
    arrays["alphas"] = images_lib.to_uint8(scenes["alphas"])
    arrays["background"] = np.asarray(scenes["background"])
    return {
        "grid": np.stack(rows),
        "images": scenes["images"],
        "arrays": arrays,
        "summary": f"{args.num_scenes} scenes of {args.canvas}x{args.canvas} px "
        "(grid rows: scenes, then their label maps)",
    }


def label_colours(num_classes: int) -> np.ndarray:
    """``[K + 1, 3]`` float colours: K evenly spaced hues, then black for the background."""
    hues = [colorsys.hsv_to_rgb(k / num_classes, 0.75, 1.0) for k in range(num_classes)]
    return np.asarray(hues + [(0.0, 0.0, 0.0)], np.float32)


# --- main -------------------------------------------------------------------------------------

RUNNERS = {
    "interpolate": interpolate,
    "arithmetic": arithmetic,
    "inpaint": inpaint,
    "composite": composite,
}


def write(out: pathlib.Path, command: str, result: dict, provenance=None) -> None:
    """``<command>.png`` (the grid, carrying ``provenance``: PNG text and the invisible
    watermark), ``<command>.npz`` (and ``<command>.json``)."""
    grid = result["grid"]  # [rows, cols, H, W, C]
    rows, cols = grid.shape[:2]
    images = result.get("images")
    if images is None:
        images = grid.reshape(rows * cols, *grid.shape[2:])
    out.mkdir(parents=True, exist_ok=True)
    picture = images_lib.make_grid(grid.reshape(rows * cols, *grid.shape[2:]), ncols=cols)
    images_lib.save_png(out / f"{command}.png", picture, provenance)
    arrays = dict(result["arrays"], images=images_lib.to_uint8(images), grid_shape=[rows, cols])
    tmp = out / f"{command}.tmp.npz"
    np.savez_compressed(tmp, **arrays)
    tmp.replace(out / f"{command}.npz")
    if "json" in result:
        (out / f"{command}.json").write_text(json.dumps(result["json"], indent=2) + "\n")


def main(args) -> None:
    out = pathlib.Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out={out} is a file; give a folder")
    config, family, state, info = restore_run(args.workdir)
    cli.log_devices()
    result = RUNNERS[args.command](args, config, family, state, info)
    write(out, args.command, result, provenance_for_run(args.workdir, state))
    print(f"{args.command}: {result['summary']}")
    if "json" in result:
        print(json.dumps({k: v for k, v in result["json"].items() if "/" in k}, indent=2))
    print(f"wrote {out / (args.command + '.png')} and {out / (args.command + '.npz')}")


if __name__ == "__main__":
    cli.run(main, __doc__, define_flags, commands=COMMANDS)

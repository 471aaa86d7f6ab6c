"""One figure that compares image-to-image runs on the same test inputs: a row per example,
columns input | run 1 | run 2 | ... | truth (the README's figures).

    python -m tools.translation_figure --workdirs=runs/pix2pix_labelmap,runs/unet_l1_labelmap,\
runs/crn_labelmap --num_images=8 --out=docs/labelmap_to_image.png

Every run must translate from the same paired source (the first run's test split is used).
"""

from __future__ import annotations

import numpy as np

from genimg import cli, images, synthesis
from genimg.data import decode_inputs, load
from genimg.train.checkpoint import restore_run


def define_flags() -> None:
    cli.define_list("workdirs", None, "Image-to-image runs, in column order.")
    cli.num_images_flag(8, "Test examples (rows).")
    cli.define_integer("offset", 0, "Index of the first test example.", 0)
    cli.define_string("out", None, "Output PNG.", required=True)


def main(args) -> None:
    if not args.workdirs:
        cli.fail("--workdirs needs at least one image-to-image run")
    if not args.out.endswith(".png"):
        cli.fail(f"--out must end in .png, got {args.out}")
    runs = [restore_run(w) for w in args.workdirs]
    sources = {config.data.source for config, *_ in runs}
    if len(sources) > 1:
        cli.fail(f"the runs translate from different sources: {', '.join(sorted(sources))}")
    config = runs[0][0]
    test = load(config.data.source, "test", config.data.image_size or None)
    part = slice(args.offset, args.offset + (args.num_images or 8))
    inputs, truth = test.inputs[part], test.images[part]
    shown = images.show_inputs(
        np.asarray(decode_inputs(inputs, test.input_classes)), test.input_classes
    )
    columns = [shown]
    for _, family, state, _ in runs:
        out = synthesis.translate_all(family, state, inputs, test.input_classes, progress=False)
        columns.append(out / 255.0)
    columns.append(truth / 255.0)
    if any(c.shape[-1] == 3 for c in columns):
        columns = [np.repeat(c, 3, -1) if c.shape[-1] == 1 else c for c in columns]
    grid = np.stack(columns, axis=1).reshape(-1, *columns[0].shape[1:])
    images.save_png(args.out, images.make_grid(grid, ncols=len(columns)))
    print(f"wrote {args.out}: input | {' | '.join(args.workdirs)} | truth")


if __name__ == "__main__":
    cli.run(main, __doc__, define_flags)

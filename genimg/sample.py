"""Draw samples from a trained run's latest checkpoint (EMA weights when the run has them).

    python -m genimg.sample --workdir=W --num=N --out=FILE.npz [--png=DIR] [--seed=0]

Writes ``images`` (uint8 NHWC) -- and ``labels`` for conditional models -- to FILE.npz, the
format ``genimg.evaluate --fake=npz:FILE`` reads; ``--png`` also writes one PNG per image.
"""

from __future__ import annotations

import pathlib
import sys

from genimg import platform

platform.configure_cpu_defaults()

from absl import app, flags  # noqa: E402
from PIL import Image  # noqa: E402

from genimg.synthesis import generate, write_npz  # noqa: E402
from genimg.train.checkpoint import restore_run  # noqa: E402

_WORKDIR = flags.DEFINE_string("workdir", None, "A training run's folder.", required=True)
_NUM = flags.DEFINE_integer("num", 64, "Number of samples.")
_OUT = flags.DEFINE_string("out", None, "Output .npz file.", required=True)
_PNG = flags.DEFINE_string("png", None, "Optional folder for one PNG per sample.")
_SEED = flags.DEFINE_integer("seed", 0, "Sampling seed.")
_BATCH = flags.DEFINE_integer("batch_size", 256, "Samples per device call.")


def main(argv):
    del argv
    if not _OUT.value.endswith(".npz"):
        sys.exit(f"error: --out must end in .npz, got {_OUT.value}")
    try:
        _, family, state, _ = restore_run(_WORKDIR.value)
        images = generate(family, state, _NUM.value, _SEED.value, _BATCH.value)
    except (FileNotFoundError, ValueError) as err:
        sys.exit(f"error: {err}")
    write_npz(_OUT.value, images)
    if _PNG.value:
        folder = pathlib.Path(_PNG.value)
        folder.mkdir(parents=True, exist_ok=True)
        for i, image in enumerate(images):
            Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(
                folder / f"{i:06d}.png"
            )
    print(f"wrote {len(images)} samples {images.shape[1:]} to {_OUT.value}")


if __name__ == "__main__":
    app.run(main)

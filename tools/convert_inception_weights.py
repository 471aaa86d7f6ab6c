r"""Converts pytorch-fid's Inception weights (.pth, needs torch) to genimg's .npz cache format.

Run once where torch is installed; the .npz then works without torch:

    python -m tools.convert_inception_weights \
        --pth ~/Downloads/pt_inception-2015-12-05-6726825d.pth \
        --npz ~/.cache/genimg/pt_inception-2015-12-05-6726825d.npz
    export GENIMG_INCEPTION_WEIGHTS=~/.cache/genimg/pt_inception-2015-12-05-6726825d.npz

The .pth must have the published SHA-256 (pass --no-verify only for other, e.g. test, weights).
With --download the .pth is fetched from pytorch-fid's GitHub release into the cache directory.
The written file is read back and checked against the model's variable tree.
"""

import argparse
import sys
from pathlib import Path

import jax
import numpy as np

from genimg.metrics import inception_weights as iw


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pth", type=Path, help=f"the {iw.WEIGHTS_FILENAME} file")
    parser.add_argument(
        "--npz",
        type=Path,
        help="output (default: $GENIMG_CACHE_DIR or ~/.cache/genimg, same name as the .pth)",
    )
    parser.add_argument("--download", action="store_true", help="fetch the .pth if --pth is absent")
    parser.add_argument("--no-verify", action="store_true", help="skip the SHA-256 check")
    args = parser.parse_args(argv)

    pth = args.pth
    if pth is None:
        pth = iw.cache_dir() / iw.WEIGHTS_FILENAME
        if not pth.is_file():
            if not args.download:
                parser.error(f"--pth not given and {pth} does not exist (or pass --download).")
            iw.download_weights(pth)
    npz = args.npz or iw.cache_dir() / pth.with_suffix(".npz").name
    iw.convert_pth_to_npz(pth, npz, verify=not args.no_verify)

    variables = iw.load_npz(npz, verify=not args.no_verify)
    count = sum(np.size(v) for v in jax.tree.leaves(variables["params"]))
    print(f"wrote {npz} ({count:,} parameters)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

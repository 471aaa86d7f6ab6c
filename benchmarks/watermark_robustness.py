"""Robustness, cost and false positives of the provenance watermark (``genimg.watermark``).

    python benchmarks/watermark_robustness.py --num_images=1000 --num_clean=10000

Marks the first ``--num_images`` test images of ``--data`` (each with its own random payload),
attacks them (PNG round trip, JPEG quality 90 and 75, resize to 90 % and 110 %, Gaussian noise
of std 2/255, a centred crop keeping 90 % of the area), and reports per attack the detection
rate and the payload bit accuracy; the PSNR of the mark; and the false-positive rate of
``detect`` on the first ``--num_clean`` unmarked images. Prints one JSON line.
"""

from __future__ import annotations

import json
import time

import numpy as np

from genimg import cli
from genimg import watermark as wm
from genimg.data import load


def define_flags():
    cli.define_string("data", "fashion_mnist", "Data source whose test images are marked.")
    cli.num_images_flag(1000, "Images to mark and attack.")
    cli.define_integer("num_clean", 10000, "Unmarked images for the false-positive rate.")
    cli.seed_flag(0)


def main(args):
    test = load(args.data, "test")
    rng = np.random.default_rng(args.seed)
    marked, payloads, psnrs = [], [], []
    start = time.perf_counter()
    for image in test.images[: args.num_images]:
        payload = rng.integers(0, 2, wm.PAYLOAD_BITS).astype(np.int8)
        out = wm.embed(image, payload)
        if out is None:
            cli.fail(f"{args.data} images {image.shape} are too small to carry the mark")
        marked.append(out)
        payloads.append(payload)
        mse = np.mean((out.astype(np.float64) - image) ** 2)
        psnrs.append(10 * np.log10(255.0**2 / max(mse, 1e-12)))
    embed_s = (time.perf_counter() - start) / len(marked)
    results = {}
    for name, fn in wm.attacks(rng).items():
        found = [wm.detect(fn(image)) for image in marked]
        results[name] = {
            "detected": float(np.mean([f.marked for f in found])),
            "bit_accuracy": float(
                np.mean([f.matches(p) for f, p in zip(found, payloads, strict=True)])
            ),
        }
    start = time.perf_counter()
    clean = [wm.detect(image) for image in test.images[: args.num_clean]]
    detect_s = (time.perf_counter() - start) / len(clean)
    print(
        json.dumps(
            {
                "data": test.description,
                "image_shape": list(test.images.shape[1:]),
                "num_marked": len(marked),
                "psnr_db": float(np.mean(psnrs)),
                "psnr_db_min": float(np.min(psnrs)),
                "attacks": results,
                "num_clean": len(clean),
                "false_positive_rate": float(np.mean([f.marked for f in clean])),
                "clean_max_score": float(max(f.score for f in clean)),
                "p_value_threshold": wm.P_VALUE_THRESHOLD,
                "embed_ms": 1000 * embed_s,
                "detect_ms": 1000 * detect_s,
            }
        )
    )


if __name__ == "__main__":
    cli.run(main, __doc__, define_flags)

"""Check whether image files carry genimg's provenance mark.

    python -m genimg.provenance check FILE [FILE ...] [--keys=KEY1,KEY2]

For each file: the invisible watermark (found or not, under which key, the p-value of finding
it by chance in an unmarked image, the 32 decoded payload bits) and the PNG text that genimg
writes beside it (family, run id, model hash). When the text is there, the decoded payload is
compared with the bits that run id and model hash give. Exit status 0 when every file carries
a mark, 1 when one does not (or cannot be read), so scripts can use it.

Keys: the public key every genimg run uses unless told otherwise, plus $GENIMG_WATERMARK_KEY
when set, plus --keys. Anyone with a key can check (and forge) its marks: use a secret key
($GENIMG_WATERMARK_KEY while training and sampling) for provenance that only you can verify.
"""

from __future__ import annotations

import os
import pathlib
import sys

import numpy as np
from PIL import Image, UnidentifiedImageError

from genimg import cli
from genimg import watermark as wm
from genimg.errors import UserError

KEY_ENV = wm.KEY_ENV


def default_keys() -> list[str]:
    """The public key, and ``$GENIMG_WATERMARK_KEY`` when it is set."""
    keys = [wm.DEFAULT_KEY]
    if os.environ.get(KEY_ENV):
        keys.append(os.environ[KEY_ENV])
    return keys


def read_image(path) -> tuple[np.ndarray, dict]:
    """(uint8 [H, W, C], PNG text) of an image file; a `UserError` if it is not one."""
    path = pathlib.Path(path)
    try:
        with Image.open(path) as image:
            text = dict(getattr(image, "text", {}) or {})
            if image.mode not in ("L", "RGB", "RGBA"):
                image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
            array = np.asarray(image)
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except (UnidentifiedImageError, OSError) as err:
        raise UserError(f"{path}: not a readable image ({cli.one_line(err)})") from None
    return (array[..., None] if array.ndim == 2 else array), text


def check_file(path, keys) -> dict:
    """What `check` reports for one file (see the module docstring)."""
    image, text = read_image(path)
    results = [(key, wm.detect(image, key)) for key in keys]
    key, found = min(results, key=lambda r: r[1].p_value)
    report = {
        "file": str(path),
        "marked": found.marked,
        "too_small": found.too_small,
        "key_id": wm.key_id(key) if found.marked else None,
        "p_value": found.p_value,
        "hypothesis": found.hypothesis,
        "payload": None if found.payload is None else "".join(map(str, found.payload)),
        "text": {k: v for k, v in text.items() if k.startswith(wm.TEXT_PREFIX)},
    }
    run_id = text.get(f"{wm.TEXT_PREFIX}run_id")
    model_hash = text.get(f"{wm.TEXT_PREFIX}model_hash")
    if found.payload is not None and run_id and model_hash:
        report["payload_matches_text"] = found.matches(wm.payload_bits(run_id, model_hash))
    return report


def format_report(report: dict) -> str:
    if report["too_small"]:
        mark = "no mark (too small to carry one)"
    elif report["marked"]:
        mark = (
            f"MARKED (key {report['key_id']}, p={report['p_value']:.2g}, "
            f"{report['hypothesis']}) payload {report['payload']}"
        )
    else:
        mark = f"no mark found (p={report['p_value']:.2g})"
    text = report["text"]
    if text:
        meta = (
            f"; text: family={text.get(wm.TEXT_PREFIX + 'family')} "
            f"run_id={text.get(wm.TEXT_PREFIX + 'run_id')} "
            f"watermark={text.get(wm.TEXT_PREFIX + 'watermark')}"
        )
        if "payload_matches_text" in report:
            meta += (
                f"; payload matches the text's run and model: {report['payload_matches_text']:.0%}"
            )
    else:
        meta = "; no genimg text"
    return f"{report['file']}: {mark}{meta}"


def define_flags() -> None:
    cli.define_list("keys", [], "Extra watermark keys to try (besides the public key).")


def main(args) -> None:
    command, *files = args.argv
    if command != "check":
        cli.fail(f"unknown command '{command}'; usage: python -m genimg.provenance check FILE...")
    if not files:
        cli.fail("no files given; usage: python -m genimg.provenance check FILE...")
    keys = default_keys() + list(args.keys)
    all_marked = True
    for path in files:
        report = check_file(path, keys)
        print(format_report(report))
        all_marked &= report["marked"]
    sys.exit(0 if all_marked else 1)


if __name__ == "__main__":
    cli.run(main, __doc__, define_flags, positional=True)

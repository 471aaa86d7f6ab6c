"""Check whether image files carry genimg's provenance mark.

    python -m genimg.provenance check FILE [FILE ...] [--keys=KEY1,KEY2] [--decoder=W]

For each file: the invisible watermark (found or not, under which key, the p-value of finding
it by chance in an unmarked image, the 32 decoded payload bits) and the PNG text that genimg
writes beside it (family, run id, model hash). When the text is there, the decoded payload is
compared with the bits that run id and model hash give. With ``--decoder=W`` (a Stable
Signature run, ``experiments/stable_signature.py``, or its ``watermark_decoder.npz``) each file
is also checked for the mark that run's generator draws into its own outputs (its 16 header
bits and their binomial p-value): the mark that survives when the model is called directly.
Exit status 0 when every file carries a mark (either kind), 1 when one does not (or cannot be
read), so scripts can use it.

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


def load_decoder(path) -> wm.SubspaceDecoder:
    """The generator-mark decoder of ``--decoder`` (a run folder or an ``.npz``)."""
    try:
        return wm.SubspaceDecoder.load(path)
    except ValueError as err:
        raise UserError(f"--decoder={path}: {err}") from None


def check_file(path, keys, decoder: wm.SubspaceDecoder | None = None) -> dict:
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
    if decoder is not None:
        report["generator_mark"] = _generator_mark(image, keys, decoder)
        report["marked"] = report["marked"] or report["generator_mark"]["marked"]
    return report


def _generator_mark(image, keys, decoder: wm.SubspaceDecoder) -> dict:
    """The generator mark of the first of ``keys`` that ``decoder`` was fitted for."""
    key = next((k for k in keys if wm.key_id(k) == decoder.key_id), None)
    if key is None:
        return {"marked": False, "p_value": 1.0, "why": f"no key with id {decoder.key_id}"}
    found = decoder.detect(image, key)
    return {
        "marked": found.marked,
        "p_value": found.p_value,
        "header_matches": int(found.score),
        "key_id": decoder.key_id,
        "hypothesis": found.hypothesis,
        "payload": "".join(map(str, found.payload)),
    }


def format_report(report: dict) -> str:
    if report["too_small"]:
        mark = "no mark (too small to carry one)"
    elif report["marked"] and report["key_id"]:
        mark = (
            f"MARKED (key {report['key_id']}, p={report['p_value']:.2g}, "
            f"{report['hypothesis']}) payload {report['payload']}"
        )
    else:
        mark = f"no mark found (p={report['p_value']:.2g})"
    generator = report.get("generator_mark")
    if generator is not None:
        if generator.get("why"):
            mark += f"; generator mark: not checked ({generator['why']})"
        else:
            found = "FOUND" if generator["marked"] else "not found"
            mark += (
                f"; generator mark {found} (key {generator['key_id']}, "
                f"{generator['header_matches']}/{wm.HEADER_BITS} header bits, "
                f"p={generator['p_value']:.2g}, {generator['hypothesis']})"
            )
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
    cli.define_string(
        "decoder",
        None,
        "A Stable Signature run (or its watermark_decoder.npz): also look for the mark its "
        "generator draws into its own outputs.",
    )


def main(args) -> None:
    command, *files = args.argv
    if command != "check":
        cli.fail(f"unknown command '{command}'; usage: python -m genimg.provenance check FILE...")
    if not files:
        cli.fail("no files given; usage: python -m genimg.provenance check FILE...")
    keys = default_keys() + list(args.keys)
    decoder = load_decoder(args.decoder) if args.decoder else None
    all_marked = True
    for path in files:
        report = check_file(path, keys, decoder)
        print(format_report(report))
        all_marked &= report["marked"]
    sys.exit(0 if all_marked else 1)


if __name__ == "__main__":
    cli.run(main, __doc__, define_flags, positional=True)

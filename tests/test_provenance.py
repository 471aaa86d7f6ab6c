"""Provenance of written images: PNG text and the mark through genimg.images.save_png, and
the `python -m genimg.provenance check` command."""

import os
import subprocess
import sys

import numpy as np
from PIL import Image

from genimg import images
from genimg import watermark as wm

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _picture(size=40, seed=0):
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, (5, 5)).astype(np.float32)
    return np.asarray(Image.fromarray(coarse).resize((size, size), Image.BICUBIC)).clip(0, 255)


def _check(*files, env=None):
    return subprocess.run(
        [sys.executable, "-m", "genimg.provenance", "check", *map(str, files)],
        cwd=REPO, capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip


def test_save_png_writes_text_and_mark_and_check_reads_them(tmp_path):
    picture = _picture().astype(np.uint8)[..., None]
    prov = wm.Provenance("run-1", "gan", "cfg-hash", "model-hash")
    images.save_png(tmp_path / "marked.png", picture, prov)
    images.save_png(tmp_path / "plain.png", picture)
    images.save_png(
        tmp_path / "off.png", picture, wm.Provenance("r", "gan", "c", "m", watermark=False)
    )
    with Image.open(tmp_path / "marked.png") as im:
        assert im.text["genimg:run_id"] == "run-1" and im.text["genimg:generated"] == "true"
        assert im.text["genimg:watermark"] == f"key {wm.key_id(wm.DEFAULT_KEY)}"
        back = np.asarray(im)[..., None]
    assert not np.array_equal(back, picture)  # the mark changed pixels
    with Image.open(tmp_path / "off.png") as im:
        assert im.text["genimg:watermark"] == "none"
        np.testing.assert_array_equal(np.asarray(im)[..., None], picture)

    result = _check(tmp_path / "marked.png")
    assert result.returncode == 0, result.stderr
    assert "MARKED" in result.stdout and "matches the text's run and model: 100%" in result.stdout
    result = _check(tmp_path / "marked.png", tmp_path / "plain.png", tmp_path / "off.png")
    assert result.returncode == 1
    lines = result.stdout.strip().splitlines()
    assert "MARKED" in lines[0] and "no mark found" in lines[1] and "no mark found" in lines[2]


def test_secret_keys_from_the_environment(tmp_path):
    picture = _picture(seed=3).astype(np.uint8)[..., None]
    images.save_png(tmp_path / "s.png", picture, wm.Provenance("r", "vae", "c", "m", key="s3cret"))
    assert _check(tmp_path / "s.png").returncode == 1  # the public key does not find it
    env = dict(os.environ, GENIMG_WATERMARK_KEY="s3cret")
    result = _check(tmp_path / "s.png", env=env)
    assert result.returncode == 0 and f"key {wm.key_id('s3cret')}" in result.stdout


def test_bad_input_is_one_line(tmp_path):
    (tmp_path / "junk.png").write_bytes(b"not a png")
    for args, message in (
        ([tmp_path / "missing.png"], "no such file"),
        ([tmp_path / "junk.png"], "not a readable image"),
    ):
        result = _check(*args)
        assert result.returncode == 1 and "Traceback" not in result.stderr
        assert result.stderr.strip().splitlines()[-1].startswith("error: ")
        assert message in result.stderr
    result = subprocess.run(
        [sys.executable, "-m", "genimg.provenance", "verify", "x"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 1 and "unknown command 'verify'" in result.stderr

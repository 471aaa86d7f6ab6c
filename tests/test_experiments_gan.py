"""End-to-end smoke tests of the GAN experiments and genimg.sample, through their CLIs."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(*args, timeout=600):
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=_REPO, capture_output=True, text=True, timeout=timeout
    )


def _error_line(result):
    """The CLI's error: one last line on stderr starting with 'error:', no traceback."""
    assert result.returncode == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1 and result.stderr.rstrip().endswith(errors[0]), result.stderr[-2000:]
    return errors[0]


@pytest.fixture(scope="module")
def rgb_npz(tmp_path_factory):
    """40 made-up 20x20 RGB images (resized to 32 by the run)."""
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("data") / "rgb.npz"
    images = rng.integers(0, 256, size=(40, 20, 20, 3), dtype=np.uint8)
    np.savez(path, images=images, labels=rng.integers(0, 4, size=40))
    return path


def test_dcgan_default_is_the_measured_recipe_and_classic_is_one_preset_away():
    from experiments import dcgan

    default = dcgan.get_config()
    assert (default.model.g_width, default.model.d_width, default.optim.g_lr) == (32, 32, 4e-4)
    assert (default.optim.d_lr, default.model.loss, default.train.steps) == (4e-4, "hinge", 6000)
    assert default.model.spectral_norm and (default.optim.b1, default.optim.b2) == (0.0, 0.9)
    classic = dcgan.get_config("classic")
    assert (classic.model.g_width, classic.model.d_width) == (64, 64)
    assert (classic.optim.g_lr, classic.optim.d_lr, classic.train.steps) == (1e-4, 4e-4, 2000)
    both = dcgan.get_config("classic,tiny")  # presets apply left to right
    assert both.model.g_width == dcgan.get_config("tiny").model.g_width == 8
    assert both.optim.g_lr == 1e-4


def test_dcgan_tiny_then_sample(tmp_path):
    workdir = tmp_path / "run"
    result = _run(
        "experiments.dcgan",
        f"--workdir={workdir}",
        "--config=experiments/dcgan.py:tiny",
        "--config.data.source=digits",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = (workdir / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(ln)["step"] for ln in lines] == [2, 4]
    assert (workdir / "samples" / "step_0000004.png").is_file()

    out = tmp_path / "samples.npz"
    result = _run(
        "genimg.sample", f"--workdir={workdir}", "--num_samples=5", f"--out={out}",
        f"--png={tmp_path / 'png'}", "--batch_size=4",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    saved = np.load(out)
    assert set(saved.files) == {"images"}  # unconditional: no labels
    images = saved["images"]
    assert images.shape == (5, 8, 8, 1) and images.dtype == np.uint8
    assert images.std() > 0  # not a constant image
    assert len(list((tmp_path / "png").glob("0*.png"))) == 5
    assert (tmp_path / "png" / "grid.png").is_file()

    # An unconditional run takes no labels; nothing is written.
    other = tmp_path / "other.npz"
    line = _error_line(
        _run("genimg.sample", f"--workdir={workdir}", "--labels=3", f"--out={other}")
    )
    assert "--labels needs a conditional run" in line and not other.exists()
    # Without --metrics the evaluator picks what a GAN supports: sample quality, whose
    # Inception weights are checked before any sample is drawn.
    env_missing = dict(os.environ, GENIMG_INCEPTION_WEIGHTS=str(tmp_path / "no.pth"))
    result = subprocess.run(
        [sys.executable, "-m", "genimg.evaluate", f"--workdir={workdir}"],
        cwd=_REPO, capture_output=True, text=True, timeout=600, env=env_missing,
    )  # fmt: skip
    line = _error_line(result)
    assert "no.pth does not exist" in line and "sampling" not in result.stderr


def test_mlp_gan_tiny_on_rgb_resized(tmp_path, rgb_npz):
    workdir = tmp_path / "run"
    result = _run(
        "experiments.mlp_gan",
        f"--workdir={workdir}",
        "--config=experiments/mlp_gan.py:tiny",
        f"--config.data.source=npz:{rgb_npz}",
        "--config.data.image_size=32",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((workdir / "run_info.json").read_text())["image_shape"] == [32, 32, 3]
    assert (workdir / "checkpoints" / "4").is_dir()


def test_bad_input_gives_one_line_errors(tmp_path):
    base = [
        "experiments.dcgan",
        f"--workdir={tmp_path / 'w'}",
        "--config=experiments/dcgan.py:tiny",
    ]
    line = _error_line(_run(*base, "--config.train.stepz=3"))
    assert "--config.train.stepz" in line and "steps" in line
    line = _error_line(_run(*base, f"--config.data.source=idx:{tmp_path / 'nothing'}"))
    assert "nothing" in line
    line = _error_line(_run(*base, "--config.data.source=imagenet9"))
    assert "unknown data source 'imagenet9'" in line
    line = _error_line(_run(*base, "--config.data.source=digits", "--config.model.loss=foo"))
    assert "cannot build the 'gan' model: unknown GAN loss 'foo'" in line
    line = _error_line(_run(*base, "--config.data.source=digits", "--config.data.image_size=18"))
    assert "DCGAN image size 18 is not supported" in line
    assert not (tmp_path / "w").exists()  # nothing written for a config that cannot work
    line = _error_line(_run(*base, "--config=experiments/dcgan.py:tiny,huge"))
    assert "unknown preset 'huge'; this experiment has classic, tiny" in line
    line = _error_line(_run(*base, "--config.data.source=digits", "--config.optim.g_lr=nan"))
    assert "non-finite g_param_norm=nan at step 1" in line
    assert not (tmp_path / "w" / "checkpoints" / "2").exists()  # nothing saved from a NaN state
    line = _error_line(_run("genimg.sample", f"--workdir={tmp_path / 'none'}", "--out=x.npz"))
    assert "config.json not found" in line


@pytest.mark.parametrize(
    "module, expected",
    [
        ("experiments.dcgan", ["--workdir", "--config", "--config.train.steps=6000"]),
        ("genimg.sample", ["--num_samples", "--labels", "--out"]),
        ("genimg.evaluate", ["--num_images", "--num_samples", "--metrics", "accuracy"]),
    ],
)
def test_help_is_for_users_and_exits_0(module, expected):
    result = _run(module, "--help")
    assert result.returncode == 0, result.stderr[-2000:]
    for text in expected:
        assert text in result.stdout, (text, result.stdout[:3000])
    for internal in ("EvalContext", "METRIC_GROUPS", "``", "absl"):
        assert internal not in result.stdout, internal

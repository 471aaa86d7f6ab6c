"""The pix2pix, CRN and BiGAN experiments end to end: tiny runs, exact resume, evaluation
(translation, layout, sample quality of translations, the probe on any encoder, --untrained)
and one-line errors for bad paired data."""

import json
import os
import subprocess
import sys

import chex
import jax
import numpy as np
import pytest

from experiments import autoencoder, bigan, crn, pix2pix
from genimg import evaluate
from genimg.data import DataError
from genimg.errors import ConfigError
from genimg.train.loop import Callback, train_from_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXPERIMENTS = {"pix2pix": pix2pix, "crn": crn, "bigan": bigan}


def _run(*args):
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True, timeout=600
    )


def _error_line(result) -> str:
    assert result.returncode == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: "), result.stderr[-2000:]
    return last


def _metrics(workdir):
    lines = [json.loads(ln) for ln in (workdir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in m.items() if k != "steps_per_s"} for m in lines]


def test_pix2pix_tiny_through_the_cli_then_evaluate(tmp_path, classifier_run):
    workdir = tmp_path / "run"
    result = _run(
        "experiments.pix2pix", f"--workdir={workdir}", "--config=experiments/pix2pix.py:tiny"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert [m["step"] for m in _metrics(workdir)] == [2, 4]
    assert (workdir / "samples" / "step_0000004.png").is_file()  # input | output | truth
    assert (workdir / "figures" / "translations.png").is_file()
    result = _run(
        "genimg.evaluate", f"--workdir={workdir}", "--metrics=translation,layout,fid",
        f"--extractor=domain:{classifier_run}", "--num_samples=50",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads((workdir / "eval.json").read_text())
    assert 0 < record["l1"] < 1 and 0 < record["ssim"] < 1 and record["psnr"] > 0
    assert 0 <= record["layout_miou"] <= 1 and set(record) >= {
        f"layout_iou/{c}" for c in ("background", "outline")
    }
    assert record["n_fake"] == 50 and record["real"] == "paired:labelmap:digits"
    assert record["fid"] > 0
    # pix2pix has no encoder: the probe is not offered, in one line.
    result = _run("genimg.evaluate", f"--workdir={workdir}", "--metrics=probe")
    assert "not available for this 'pix2pix' run" in _error_line(result)


@pytest.mark.parametrize("name", ["pix2pix", "crn", "bigan"])
def test_resume_reproduces_the_uninterrupted_run(tmp_path, name):
    config = EXPERIMENTS[name].get_config("tiny")
    config.train.update(steps=6, log_every=1)
    straight = train_from_config(config, tmp_path / "straight")

    class Killed(Exception):
        pass

    def kill(ctx):  # after the step-2 checkpoint, as a kill would (same config, same schedule)
        raise Killed

    with pytest.raises(Killed):
        train_from_config(config, tmp_path / "resumed", [Callback(2, kill)])
    resumed = train_from_config(config, tmp_path / "resumed")
    chex.assert_trees_all_equal(jax.tree.leaves(resumed), jax.tree.leaves(straight))
    assert _metrics(tmp_path / "resumed") == _metrics(tmp_path / "straight")


def test_bigan_probe_untrained_and_the_encoder_of_other_families(tmp_path):
    run = tmp_path / "bigan"
    train_from_config(bigan.get_config("tiny"), run)
    trained = evaluate.run(run, ["recon", "probe", "probe_d"], num_train=300)
    assert trained["probe_num_train"] == 300 and trained["probe_num_test"] == 359
    for key in ("probe_linear_acc", "probe_1nn_acc", "d_probe_linear_acc", "mse"):
        assert 0 < trained[key] < 1, key
    untrained = evaluate.run(run, ["probe"], num_train=300, untrained=True, seed=3)
    assert untrained["step"] == 0 and untrained["untrained_seed"] == 3
    assert json.loads((run / "eval.json").read_text())["step"] == 4  # kept apart
    assert (run / "eval_untrained.json").is_file()
    # Any family with an encoder gets the probe: the autoencoder's tiny run.
    ae_run = tmp_path / "ae"
    train_from_config(autoencoder.get_config("tiny"), ae_run)
    scores = evaluate.run(ae_run, ["probe"], num_train=300)
    assert scores["probe_dim"] == 2 and 0.1 < scores["probe_linear_acc"] <= 1
    # Raw pixels, without a run: the 8x8 digits are easy.
    pixels = evaluate.run(None, ["probe"], real="digits", num_train=600)
    assert pixels["probe_dim"] == 64 and pixels["probe_1nn_acc"] > 0.9


def test_bad_paired_data_is_a_one_line_error_before_anything_is_written(tmp_path):
    # A family that translates, on data without inputs.
    config = pix2pix.get_config("tiny")
    config.data.source = "digits"
    with pytest.raises(ConfigError, match="translates paired inputs, but data source 'digits'"):
        train_from_config(config, tmp_path / "a")
    # Label maps of 11 classes for a model built for 4.
    path = tmp_path / "maps.npz"
    rng = np.random.default_rng(0)
    np.savez(
        path, inputs=rng.integers(0, 11, (16, 8, 8)), targets=rng.integers(0, 256, (16, 8, 8)),
        input_classes=11,
    )  # fmt: skip
    config.data.source = f"paired:npz:{path}"
    with pytest.raises(ConfigError) as err:
        train_from_config(config, tmp_path / "b")
    assert "built for inputs [8, 8, 4] but" in str(err.value) and "\n" not in str(err.value)
    config.model.input_channels = 11  # ... which is the fix
    train_from_config(config, tmp_path / "c")
    # The wrong channel count for a layout transform is caught when the model is built.
    config.data.source = "paired:edges:digits"
    with pytest.raises(ConfigError, match="set --config.model.input_channels=1"):
        train_from_config(config, tmp_path / "d")
    # Pairs of different sizes.
    np.savez(path, inputs=np.zeros((4, 8, 8)), targets=np.zeros((4, 6, 6)))
    config.data.source = f"paired:npz:{path}"
    with pytest.raises(DataError, match="every input needs a target of its size"):
        train_from_config(config, tmp_path / "e")
    for name in "abde":
        assert not (tmp_path / name).exists()
    # Through the command line: one line, exit 1.
    result = _run(
        "experiments.crn", f"--workdir={tmp_path / 'f'}", "--config=experiments/crn.py:tiny",
        "--config.data.source=paired:edges:digits",
    )  # fmt: skip
    assert _error_line(result).endswith(
        "model.input_channels=4 but paired:edges:digits gives 1-channel inputs; set "
        "--config.model.input_channels=1"
    )
    assert not (tmp_path / "f").exists()

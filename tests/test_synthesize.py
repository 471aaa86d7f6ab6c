"""python -m genimg.synthesize on tiny trained runs (its commands in-process, the command line
in subprocesses), and genimg.evaluate's per-class sample quality."""

import json
import os
import subprocess
import sys
import types

import jax
import numpy as np
import pytest
from PIL import Image

from experiments import cgan, vae
from genimg import evaluate, synthesis, synthesize
from genimg.data import load
from genimg.errors import UserError
from genimg.metrics.sample_quality import per_class_quality
from genimg.train.checkpoint import restore_run
from genimg.train.loop import train_from_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def cgan_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("cgan_run")
    train_from_config(cgan.get_config("tiny"), workdir)
    return workdir


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("vae_run")
    train_from_config(vae.get_config("tiny"), workdir)
    return workdir


def _args(**overrides):
    """The command line's defaults, as `genimg.cli.args` hands them to the commands."""
    values = dict(
        seed=0, batch_size=64, labels=None, classifier=None, pairs=2, steps=4,
        interpolation="both", source="auto", num_rows=3, num_codes=300, min_confidence=0.0,
        mask="center", method="auto", num_images=12, iterations=3, inversion_steps=5,
        restarts=2, lr=0.05, prior_weight=0.01, baselines=True, num_scenes=3, canvas=16,
        min_items=2, max_items=3, matte="soft", threshold=0.2,
    )  # fmt: skip
    values.update(overrides)
    return types.SimpleNamespace(**values)


def _command(name, workdir, **overrides):
    config, family, state, info = restore_run(workdir)
    return getattr(synthesize, name)(_args(**overrides), config, family, state, info)


def test_interpolate_prior_codes_of_a_conditional_gan(cgan_run):
    result = _command("interpolate", cgan_run, labels="3,7")
    grid = result["grid"]
    assert grid.shape == (4, 4, 8, 8, 1)  # 2 pairs x (lerp, slerp), 4 steps
    np.testing.assert_array_equal(result["arrays"]["labels"], [3, 3, 7, 7])
    assert result["arrays"]["modes"].tolist() == ["lerp", "slerp", "lerp", "slerp"]
    codes = result["arrays"]["codes"]  # both modes of a pair share their ends
    np.testing.assert_array_equal(codes[0, [0, -1]], codes[1, [0, -1]])
    with pytest.raises(UserError, match="label 12 is out of range: this run has classes 0..9"):
        _command("interpolate", cgan_run, labels="3,12")


def test_interpolate_posterior_means_with_the_real_ends(vae_run):
    result = _command("interpolate", vae_run, interpolation="lerp")
    grid = result["grid"]
    assert grid.shape == (2, 6, 8, 8, 1)  # real image, 4 decoded steps, real image
    test = load("digits", "test").images[:4].astype(np.float32) / 255.0
    np.testing.assert_array_equal(grid[:, 0], test[[0, 2]])
    np.testing.assert_array_equal(grid[:, -1], test[[1, 3]])
    with pytest.raises(UserError, match="interpolate takes no --labels"):
        _command("interpolate", vae_run, labels="1")


def test_arithmetic_conditional_encoder_and_classifier_labelled(cgan_run, vae_run, gan_run,
                                                                classifier_run):  # fmt: skip
    result = _command("arithmetic", cgan_run, labels="0,5")
    assert result["grid"].shape == (3, 3, 8, 8, 1)  # the example, then classes 0 and 5
    result = _command("arithmetic", vae_run)
    # First row: the class means decoded (after a blank cell); then 3 examples x 10 classes.
    assert result["grid"].shape == (4, 11, 8, 8, 1)
    assert np.all(result["grid"][0, 0] == synthesize.BLANK)
    np.testing.assert_array_equal(result["arrays"]["source_labels"], [0, 1, 2])
    assert int(result["arrays"]["counts"].sum()) == len(load("digits", "test"))
    # A GAN without an encoder needs a classifier for the class means.
    with pytest.raises(UserError, match="needs --classifier=W"):
        _command("arithmetic", gan_run)
    _, clf, clf_state, _ = restore_run(classifier_run)
    _, family, state, _ = restore_run(gan_run)
    codes = synthesis.prior_codes(family, jax.random.key(0), 300)
    predicted, _ = synthesis.predict_labels(
        clf, clf_state, synthesis.decode_codes(family, state, codes)
    )
    present = np.unique(predicted)[:2]  # the classes the (tiny) classifier sees in the samples
    result = _command(
        "arithmetic", gan_run, classifier=str(classifier_run),
        labels=",".join(map(str, present)),
    )  # fmt: skip
    assert result["grid"].shape == (4, 1 + len(present), 8, 8, 1)
    assert set(result["arrays"]["source_labels"]) <= set(np.unique(predicted))


def test_composite_with_classifier_labels(gan_run, classifier_run):
    result = _command("composite", gan_run, classifier=str(classifier_run))
    arrays = result["arrays"]
    assert result["images"].shape == (3, 16, 16, 1)
    assert arrays["label_maps"].shape == (3, 16, 16) and int(arrays["background"]) == 10
    assert result["grid"].shape == (2, 3, 16, 16, 3)  # scenes, then their coloured label maps
    with pytest.raises(UserError, match="needs --classifier=W"):
        _command("composite", gan_run)
    with pytest.raises(UserError, match="--min_items=3 exceeds --max_items=2"):
        _command("composite", gan_run, min_items=3, max_items=2)


def _cli(*args):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(
        [sys.executable, "-m", "genimg.synthesize", *args], cwd=REPO, env=env,
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip


def _error_line(result) -> str:
    assert result.returncode == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: "), result.stderr[-2000:]
    return last


def test_inpaint_command_line_writes_grid_arrays_and_scores(vae_run, tmp_path):
    out = tmp_path / "out"
    result = _cli(
        "inpaint", f"--workdir={vae_run}", f"--out={out}", "--num_images=16", "--mask=left",
        "--iterations=3",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads((out / "inpaint.json").read_text())
    assert record["method"] == "encode_decode" and record["num_images"] == 16
    for fill in ("encode_decode", "mean_image", "nearest_train"):
        assert 0 < record[f"{fill}/mse"] < 1 and np.isfinite(record[f"{fill}/psnr"])
    saved = np.load(out / "inpaint.npz")
    truth = load("digits", "test", max_examples=16).images
    visible = ~saved["masks"]
    np.testing.assert_array_equal(saved["images"][visible], truth[visible])  # bit for bit
    np.testing.assert_array_equal(saved["nearest_train"][visible], truth[visible])
    assert tuple(saved["grid_shape"]) == (5, 10)  # truth, masked, and the three fills
    assert Image.open(out / "inpaint.png").size == (10 * 10 + 2, 5 * 10 + 2)


def test_bad_input_is_a_one_line_error_and_writes_nothing(gan_run, cgan_run, vae_run, tmp_path):
    out = tmp_path / "out"
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(tmp_path / "mask.png")
    cases = [
        (("blend", f"--workdir={gan_run}"), "unknown command 'blend'; expected one of interp"),
        (("inpaint", f"--workdir={vae_run}", f"--mask={tmp_path / 'mask.png'}"),
         "is 10x10 (width x height); the images are 8x8"),
        (("interpolate", f"--workdir={cgan_run}", "--labels=3,12"),
         "label 12 is out of range: this run has classes 0..9"),
        (("inpaint", f"--workdir={gan_run}", "--method=encode_decode"),
         "family 'gan' cannot inpaint by encode-decode: it has no encoder-decoder"),
    ]  # fmt: skip
    for args, message in cases:
        line = _error_line(_cli(*args, f"--out={out}"))
        assert message in line, (args, line)
        assert not out.exists(), args
    result = _cli("--help")
    assert result.returncode == 0 and "interpolate" in result.stdout and "--mask" in result.stdout


def test_per_class_quality_of_the_real_test_set_is_perfect(classifier_run):
    # The test images as "samples" with their own labels: every class matches itself.
    test = load("digits", "test")
    result = per_class_quality(
        test.images, test.labels, "digits", "test", f"domain:{classifier_run}", ("fid", "pr"),
        progress=False,
    )  # fmt: skip
    for c in range(10):
        assert abs(result[f"class{c}/fid"]) < 1e-6
        assert result[f"class{c}/precision"] == 1.0 and result[f"class{c}/recall"] == 1.0
        assert result[f"class{c}/n_fake"] == result[f"class{c}/n_real"] == np.sum(test.labels == c)
    accuracy = evaluate.run(classifier_run, ["accuracy"])["accuracy"]
    assert result["label_accuracy"] == pytest.approx(accuracy)  # the classifier's own accuracy
    assert result["labels_from"] == "requested"


def test_evaluate_per_class_on_conditional_and_unconditional_runs(cgan_run, gan_run,
                                                                  classifier_run):  # fmt: skip
    spec = f"domain:{classifier_run}"
    result = evaluate.run(cgan_run, ["fid", "kid"], extractor=spec, num_samples=40, per_class=True)
    assert result["labels_from"] == "requested"
    assert 0.0 <= result["label_accuracy"] <= 1.0
    assert [result[f"class{c}/n_fake"] for c in range(10)] == [4] * 10  # balanced draw
    assert np.isfinite(result["class_mean/fid"]) and "class3/kid" in result
    result = evaluate.run(gan_run, ["fid"], extractor=spec, num_samples=40, per_class=True)
    assert result["labels_from"] == "classifier" and "label_accuracy" not in result
    assert sum(result[f"class{c}/n_fake"] for c in range(10)) == 40


def test_sample_writes_a_classification_accuracy_score_data_set(cgan_run, tmp_path):
    out = tmp_path / "cas.npz"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, "-m", "genimg.sample", f"--workdir={cgan_run}", "--labels=all",
         "--num_samples=20", "--with_test_split=digits", f"--out={out}"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    train, test = load(f"npz:{out}", "train"), load(f"npz:{out}", "test")
    np.testing.assert_array_equal(train.labels, np.arange(20) % 10)  # the requested classes
    real = load("digits", "test")
    np.testing.assert_array_equal(test.images, real.images)
    np.testing.assert_array_equal(test.labels, real.labels)

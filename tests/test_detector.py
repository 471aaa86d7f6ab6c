"""The detector of generated images: blur/JPEG augmentation, the real_vs_fake source, the
ROC-AUC / AP against scikit-learn, the tiny experiment and ``evaluate --metrics=detect``."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import sklearn.metrics

from experiments import detector as experiment
from genimg import evaluate
from genimg.corruptions import blur_jpeg
from genimg.data import DataError, TrainData, load
from genimg.errors import UserError
from genimg.families import classifier
from genimg.metrics import detection
from genimg.train.checkpoint import restore_run
from genimg.train.loop import train_from_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _digits(n=16):
    return load("digits", "train", max_examples=n).images


# --- blur + JPEG ----------------------------------------------------------------------------


def test_blur_jpeg_is_deterministic_and_changes_images():
    images = _digits()
    a = blur_jpeg(images, np.random.default_rng(7), blur_prob=1.0, jpeg_prob=1.0)
    b = blur_jpeg(images, np.random.default_rng(7), blur_prob=1.0, jpeg_prob=1.0)
    c = blur_jpeg(images, np.random.default_rng(8), blur_prob=1.0, jpeg_prob=1.0)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.dtype == np.uint8 and a.shape == images.shape
    changed = np.abs(a.astype(int) - images).reshape(len(images), -1).max(1)
    assert (changed > 0).all()  # every image is touched
    # Off is the identity; blur alone (sigma up to 3) smooths: less total variation.
    off = blur_jpeg(images, np.random.default_rng(7), blur_prob=0.0, jpeg_prob=0.0)
    np.testing.assert_array_equal(off, images)
    blurred = blur_jpeg(images, np.random.default_rng(7), blur_prob=1.0, jpeg_prob=0.0)
    tv = lambda x: np.abs(np.diff(x.astype(int), axis=2)).sum()
    assert tv(blurred) < tv(images)


def test_blur_jpeg_matches_pil_and_scipy_for_one_image():
    """Sigma 0 (blur_sigma=0) and quality 50 fixed: the result is PIL's JPEG round trip."""
    import io

    from PIL import Image

    image = _digits(1)
    out = blur_jpeg(
        image, np.random.default_rng(0), blur_prob=1.0, blur_sigma=0.0, jpeg_prob=1.0,
        jpeg_quality=(50, 50),
    )  # fmt: skip
    buf = io.BytesIO()
    Image.fromarray(image[0, ..., 0]).save(buf, "JPEG", quality=50)
    np.testing.assert_array_equal(out[0, ..., 0], np.asarray(Image.open(buf)))


def test_blur_jpeg_rejects_bad_settings():
    with pytest.raises(ValueError, match="jpeg_quality"):
        blur_jpeg(_digits(2), np.random.default_rng(0), jpeg_quality=(50, 101))
    with pytest.raises(ValueError, match="uint8"):
        blur_jpeg(_digits(2).astype(np.float32), np.random.default_rng(0))


def test_host_augment_batches_depend_on_seed_and_step_only():
    images = _digits(32)
    calls = []

    def augment(x, rng):
        calls.append(x.copy())
        return blur_jpeg(x, rng, blur_prob=1.0, jpeg_prob=1.0)

    make = lambda: TrainData(images, None, global_batch=8, seed=3, scale="0_1",
                             host_augment=augment)  # fmt: skip
    plain = TrainData(images, None, global_batch=8, seed=3, scale="0_1")
    one, two = make(), make()
    for step in (5, 0, 5):
        a, b = np.asarray(one.batch(step)["image"]), np.asarray(two.batch(step)["image"])
        np.testing.assert_array_equal(a, b)
        # Same images in the same order as the device pipeline, before augmentation.
        expected = np.asarray(plain.batch(step)["image"])
        np.testing.assert_array_equal(calls[-1], np.rint(expected * 255).astype(np.uint8))
    assert not np.array_equal(np.asarray(one.batch(4)["image"]), np.asarray(one.batch(5)["image"]))


# --- the data source ------------------------------------------------------------------------


def test_real_vs_fake_source_balances_and_labels(tmp_path):
    fakes = 255 - _digits(40)
    np.savez(tmp_path / "f.npz", images=fakes)
    data = load(f"real_vs_fake:digits,npz:{tmp_path / 'f.npz'}", "train")
    assert data.num_classes == 2 and len(data) == 80
    assert (data.labels == 1).sum() == 40 and (data.labels == 0).sum() == 40
    np.testing.assert_array_equal(np.sort(data.images[data.labels == 1], 0), np.sort(fakes, 0))
    np.testing.assert_array_equal(
        np.sort(data.images[data.labels == 0], 0), np.sort(_digits(40), 0)
    )
    assert set(load(f"real_vs_fake:digits,npz:{tmp_path / 'f.npz'}", "train",
                    max_examples=20).labels) == {0, 1}  # fmt: skip
    np.savez(tmp_path / "big.npz", images=np.zeros((3, 16, 16), np.uint8))
    with pytest.raises(DataError, match="different image shapes"):
        load(f"real_vs_fake:digits,npz:{tmp_path / 'big.npz'}")
    with pytest.raises(DataError, match="expected real_vs_fake:REAL,FAKE"):
        load("real_vs_fake:digits")


# --- the numbers against scikit-learn -------------------------------------------------------


def test_auc_and_ap_match_sklearn():
    rng = np.random.default_rng(0)
    for n, ties in ((50, False), (200, True), (7, True)):
        labels = np.r_[np.zeros(n // 2), np.ones(n - n // 2)].astype(int)
        rng.shuffle(labels)
        scores = rng.normal(size=n) + labels
        if ties:
            scores = np.round(scores, 0)
        assert detection.roc_auc(scores, labels) == pytest.approx(
            sklearn.metrics.roc_auc_score(labels, scores), abs=1e-12
        )
        assert detection.average_precision(scores, labels) == pytest.approx(
            sklearn.metrics.average_precision_score(labels, scores), abs=1e-12
        )
    assert detection.roc_auc([1, 2, 3, 4], [0, 0, 1, 1]) == 1.0
    with pytest.raises(ValueError, match="both"):
        detection.roc_auc([1, 2], [1, 1])


# --- the experiment and the evaluator -------------------------------------------------------


@pytest.fixture(scope="module")
def detector_run(tmp_path_factory):
    """The tiny preset trained 4 steps on the digits against inverted digits."""
    tmp = tmp_path_factory.mktemp("detector")
    np.savez(tmp / "fakes.npz", images=255 - _digits(200))
    config = experiment.get_config("tiny")
    config.data.source = f"real_vs_fake:digits,npz:{tmp / 'fakes.npz'}"
    train_from_config(config, tmp / "run")
    return tmp


def test_tiny_preset_runs_end_to_end(tmp_path):
    results = experiment.main(experiment.get_config("tiny"), str(tmp_path))
    record = json.loads((tmp_path / "eval.json").read_text())
    assert record["step"] == 4 and record["detect_auc"] == results["detect_auc"]
    assert 0.0 <= record["detect_auc"] <= 1.0 and record["num_images"] == 718


def test_evaluate_detect_equals_sklearn(detector_run):
    run = detector_run / "run"
    fakes = 255 - load("digits", "test").images[:50]
    np.savez(detector_run / "test_fakes.npz", images=fakes)
    results = evaluate.run(
        None, ["detect"], fake=f"npz:{detector_run / 'test_fakes.npz'}", real="digits",
        detector=str(run),
    )  # fmt: skip
    # Independently: the detector's logits through the classifier's own predict.
    _, family, state, _ = restore_run(run)
    real = load("digits", "test").images
    _, lf = classifier.predict(family, state, fakes, 64)
    _, lr = classifier.predict(family, state, real, 64)
    scores = np.r_[lf[:, 1] - lf[:, 0], lr[:, 1] - lr[:, 0]]
    labels = np.r_[np.ones(50), np.zeros(len(real))]
    assert results["detect_auc"] == pytest.approx(
        sklearn.metrics.roc_auc_score(labels, scores), abs=1e-6
    )
    assert results["detect_ap"] == pytest.approx(
        sklearn.metrics.average_precision_score(labels, scores), abs=1e-6
    )
    assert results["detect_n_fake"] == 50 and results["detect_n_real"] == 359
    stored = json.loads((detector_run / "eval.json").read_text())
    assert stored["detect_auc"] == results["detect_auc"]
    # The run's own held-out group agrees with the same formula on its test split.
    own = evaluate.run(run)
    assert 0.0 <= own["detect_auc"] <= 1.0 and own["split"] == "test"


def test_detect_input_errors_are_one_line(detector_run, tmp_path, classifier_run):
    fake = f"npz:{detector_run / 'fakes.npz'}"
    with pytest.raises(UserError, match="needs --detector=W"):
        evaluate.run(None, ["detect"], fake=fake, real="digits")
    with pytest.raises(UserError, match="not a training run"):
        evaluate.run(None, ["detect"], fake=fake, real="digits", detector=str(tmp_path / "no"))
    with pytest.raises(UserError, match="classifier of 10 classes, not a detector"):
        evaluate.run(None, ["detect"], fake=fake, real="digits", detector=str(classifier_run))
    with pytest.raises(UserError, match="only used by --metrics=detect"):
        evaluate.run(None, ["fid"], fake=fake, real="digits", detector=str(detector_run / "run"))
    result = subprocess.run(
        [sys.executable, "-m", "genimg.evaluate", "--metrics=detect", f"--fake={fake}",
         "--real=digits", f"--detector={tmp_path / 'missing'}"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1 and "Traceback" not in result.stderr
    assert lines[0].startswith("error: --detector=") and "not a training run" in lines[0]


def test_evaluate_detect_on_a_generator_run(detector_run, gan_run):
    """A run's own samples against its data's test split, next to its sample-quality groups."""
    results = evaluate.run(
        gan_run, ["detect"], detector=str(detector_run / "run"), num_samples=16, seed=3
    )
    assert results["detect_n_fake"] == 16 and results["detect_n_real"] == 359
    assert 0.0 <= results["detect_auc"] <= 1.0 and 0.0 < results["detect_ap"] <= 1.0
    assert results["detector"].startswith("detector/logits@")
    assert json.loads((gan_run / "eval.json").read_text())["detector"] == results["detector"]

"""The family seam: a family defined outside genimg/ trains through the public experiment CLI
and is restored by genimg.sample and genimg.evaluate from its workdir alone."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from genimg.data import load

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(*args, cwd=REPO):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("toy") / "run"
    result = _run("tests.toy_family", f"--workdir={workdir}")
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir


def test_the_run_records_where_its_family_lives(toy_run):
    config = json.loads((toy_run / "config.json").read_text())
    location = config["family_location"]
    assert location["name"] == "toy" and location["module"] == "tests.toy_family"
    assert location["file"] == os.path.join(REPO, "tests", "toy_family.py")
    assert config["family"] == "toy" and config["model"] == {}  # only the keys it reads
    assert (toy_run / "samples" / "step_0000040.png").is_file()


@pytest.mark.parametrize("where", ["repo", "elsewhere"])
def test_sample_restores_the_toy_family_with_labels(toy_run, tmp_path, where):
    # From elsewhere the module "tests.toy_family" is not importable: its file is loaded.
    out = tmp_path / "s.npz"
    cwd = REPO if where == "repo" else str(tmp_path)
    result = _run(
        "genimg.sample", f"--workdir={toy_run}", "--labels=3,7", "--num_samples=6",
        f"--out={out}", cwd=cwd,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    saved = np.load(out)
    assert saved["images"].shape == (6, 8, 8, 1)
    np.testing.assert_array_equal(saved["labels"], [3, 7, 3, 7, 3, 7])
    # The learned class means: samples of class 3 look more like real 3s than like 7s.
    test = load("digits", "test")
    mean3 = test.images[test.labels == 3].mean(0)
    mean7 = test.images[test.labels == 7].mean(0)
    fake3 = saved["images"][saved["labels"] == 3].astype(float)
    assert np.abs(fake3 - mean3).mean() < np.abs(fake3 - mean7).mean()


def test_evaluate_runs_the_families_own_default_group(toy_run):
    result = _run("genimg.evaluate", f"--workdir={toy_run}")
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads((toy_run / "eval.json").read_text())
    test = load("digits", "test")
    untrained = float(np.mean(np.square(test.images / 255.0)))  # means start at zero
    assert record["num_images"] == len(test.images) and record["step"] == 40
    assert 0 < record["distance"] < 0.5 * untrained


def test_bad_labels_are_one_line_errors_and_write_nothing(toy_run, tmp_path):
    out = tmp_path / "s.npz"
    for labels, message in (
        ("12", "label 12 is out of range: this run has classes 0..9"),
        ("a,b", "expected class ids like 3,7 or 'all'"),
    ):
        result = _run("genimg.sample", f"--workdir={toy_run}", f"--labels={labels}", f"--out={out}")
        assert result.returncode == 1 and "Traceback" not in result.stderr
        last = result.stderr.strip().splitlines()[-1]
        assert last.startswith("error: ") and last.endswith(message), result.stderr[-2000:]
        assert not out.exists()

"""genimg.evaluate's sample-quality groups on a tiny GAN run with a tiny domain classifier."""

import json

import numpy as np
import pytest

from experiments import classifier, dcgan
from genimg import evaluate
from genimg.synthesis import write_npz
from genimg.train.loop import train_from_config


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    gan = dcgan.get_config("tiny")
    gan.data.source = "digits"
    train_from_config(gan, root / "gan")
    cls = classifier.get_config("tiny")
    cls.data.source = "digits"
    train_from_config(cls, root / "cls")
    return root


def test_run_samples_against_the_test_split(runs):
    results = evaluate.run(
        runs / "gan",
        ["fid", "kid", "pr"],
        extractor=f"domain:{runs / 'cls'}",
        num_fake=64,
    )
    assert results["n_fake"] == 64 and results["n_real"] == 359  # digits test split
    assert results["fid"] > 0 and np.isfinite(results["kid"])
    assert 0.0 <= results["precision"] <= 1.0 and 0.0 <= results["recall"] <= 1.0
    assert results["extractor"].startswith("domain")
    saved = json.loads((runs / "gan" / "eval.json").read_text())
    assert saved["fid"] == results["fid"]


def test_fake_files_without_a_run(runs, tmp_path):
    """Real test images scored as 'fakes' against themselves: FID ~ 0, P = R = 1."""
    from genimg.data import load

    real = load("digits", "test")
    write_npz(tmp_path / "fake.npz", real.images)
    results = evaluate.run(
        None,
        ["fid", "pr"],
        fake=f"npz:{tmp_path / 'fake.npz'}",
        real="digits",
        extractor=f"domain:{runs / 'cls'}",
    )
    assert abs(results["fid"]) < 1e-3
    assert results["precision"] == 1.0 and results["recall"] == 1.0
    assert json.loads((tmp_path / "eval.json").read_text())["n_fake"] == 359


def test_errors_are_one_line(runs):
    with pytest.raises(evaluate.EvalError, match="--workdir is required"):
        evaluate.run(None, ["fid"], fake="npz:x.npz")
    with pytest.raises(evaluate.EvalError, match="unknown metric group"):
        evaluate.run(runs / "gan", ["fidd"])


def test_the_loop_evaluates_every_k_steps(runs, tmp_path):
    config = dcgan.get_config("tiny")
    config.data.source = "digits"
    config.train.eval_every = 2
    config.train.eval_num = 32
    config.train.eval_extractor = f"domain:{runs / 'cls'}"
    config.train.eval_metrics = "fid,pr"
    train_from_config(config, tmp_path)
    lines = [json.loads(ln) for ln in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    evals = [ln for ln in lines if "eval/fid" in ln]
    assert [ln["step"] for ln in evals] == [2, 4]
    assert all(ln["eval/fid"] > 0 and 0 <= ln["eval/recall"] <= 1 for ln in evals)

"""genimg.evaluate's sample-quality groups on a tiny GAN run with a tiny domain classifier."""

import json

import numpy as np
import pytest

from experiments import dcgan
from genimg import evaluate
from genimg.images import write_npz


def test_run_samples_against_the_test_split(gan_run, classifier_run):
    results = evaluate.run(
        gan_run,
        ["fid", "kid", "pr"],
        extractor=f"domain:{classifier_run}",
        num_samples=64,
    )
    assert results["n_fake"] == 64 and results["n_real"] == 359  # digits test split
    assert results["fid"] > 0 and np.isfinite(results["kid"])
    assert 0.0 <= results["precision"] <= 1.0 and 0.0 <= results["recall"] <= 1.0
    assert results["extractor"].startswith("domain")
    saved = json.loads((gan_run / "eval.json").read_text())
    assert saved["fid"] == results["fid"]


def test_fake_files_without_a_run(classifier_run, tmp_path):
    """Real test images scored as 'fakes' against themselves: FID ~ 0, P = R = 1."""
    from genimg.data import load

    real = load("digits", "test")
    write_npz(tmp_path / "fake.npz", real.images)
    results = evaluate.run(
        None,
        ["fid", "pr"],
        fake=f"npz:{tmp_path / 'fake.npz'}",
        real="digits",
        extractor=f"domain:{classifier_run}",
    )
    assert abs(results["fid"]) < 1e-3
    assert results["precision"] == 1.0 and results["recall"] == 1.0
    assert json.loads((tmp_path / "eval.json").read_text())["n_fake"] == 359


def test_errors_are_one_line(gan_run):
    with pytest.raises(evaluate.EvalError, match="give --workdir"):
        evaluate.run(None, ["fid"], fake="npz:x.npz")
    with pytest.raises(evaluate.EvalError, match="fidd not available for this 'gan' run"):
        evaluate.run(gan_run, ["fidd"])


def test_the_loop_evaluates_every_k_steps(classifier_run, tmp_path):
    config = dcgan.get_config("tiny")
    config.data.source = "digits"
    config.eval.update(
        every=2, num_samples=32, extractor=f"domain:{classifier_run}", metrics="fid,pr"
    )
    dcgan.main(config, tmp_path)
    lines = [json.loads(ln) for ln in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    evals = [ln for ln in lines if "eval/fid" in ln]
    assert [ln["step"] for ln in evals] == [2, 4]
    assert all(ln["eval/fid"] > 0 and 0 <= ln["eval/recall"] <= 1 for ln in evals)

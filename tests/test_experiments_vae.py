"""Every VAE / autoencoder experiment's tiny preset end to end (logging what it logged before
the family refactor), then the shared evaluator."""

import importlib
import json

import chex
import numpy as np
import pytest

from genimg import evaluate
from genimg.train.loop import train_from_config
from tests.golden import assert_matches_golden, golden_config


def _config(name, preset="tiny", **train):
    config = importlib.import_module(f"experiments.{name}").get_config(preset)
    config.train.update(train)
    return config


def _metrics(workdir):
    lines = [json.loads(ln) for ln in (workdir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in m.items() if k != "steps_per_s"} for m in lines]


@pytest.mark.parametrize(
    "name, preset, groups",
    [  # conv trunks for two, MLP trunks (faster to compile) for the rest
        ("vae", "tiny", ("nll", "recon")),
        ("beta_vae", "tiny", ("nll",)),
        ("cvae", "mlp,tiny", ("nll", "recon")),
        ("autoencoder", "mlp,tiny", ("recon",)),
        ("denoising_ae", "tiny", ("recon",)),
    ],
)
def test_tiny_run_and_evaluate(tmp_path, name, preset, groups):
    train_from_config(golden_config(_config(name, preset)), tmp_path)
    assert_matches_golden(f"{name}:{preset}", tmp_path)
    metrics = _metrics(tmp_path)
    assert [m["step"] for m in metrics] == [2, 4]
    assert all(np.isfinite(v) for m in metrics for v in m.values())
    res = evaluate.run(tmp_path, groups, num_images=8)
    saved = json.loads((tmp_path / "eval.json").read_text())
    assert saved == res and res["step"] == 4 and res["num_images"] == 8
    if "nll" in groups:
        assert res["k"] == 8 and res["elbo"] < 0
        assert 0 < res["nll_iwae"] <= -res["elbo"]  # IWAE is the tighter bound
        assert res["bits_per_dim"] == pytest.approx(res["nll_iwae"] / (64 * np.log(2)))
    if "recon" in groups:
        assert 0 < res["mse"] < 1 and res["psnr"] > 0 and -1 <= res["ssim"] <= 1
    if name in ("vae", "denoising_ae"):  # the grids the experiments' main writes
        figures_only = evaluate.run(tmp_path, ["figures"], num_images=3)
        assert "num_images" not in figures_only  # keeps the count of the numbers above
        assert json.loads((tmp_path / "eval.json").read_text())["num_images"] == 8
        names = {p.name for p in (tmp_path / "figures").iterdir()}
        vae_figures = {"samples.png", "traversal.png"} if name == "vae" else set()
        assert names == {"reconstructions.png"} | vae_figures
    if name == "beta_vae":  # warm-up: 4 * step / 2 (step before the update), capped at 4
        assert [m["kl_weight"] for m in metrics] == [2.0, 4.0]
        assert metrics[0]["loss"] != pytest.approx(-metrics[0]["elbo"])


def test_resume_reproduces_the_uninterrupted_run(tmp_path):
    config = lambda steps: _config("denoising_ae", "mlp,tiny", steps=steps)
    straight = train_from_config(config(4), tmp_path / "straight")
    train_from_config(config(2), tmp_path / "resumed")
    resumed = train_from_config(config(4), tmp_path / "resumed")
    assert int(resumed.step) == int(straight.step) == 4
    chex.assert_trees_all_equal(resumed.params, straight.params)
    chex.assert_trees_all_equal(resumed.opt_state, straight.opt_state)
    assert _metrics(tmp_path / "resumed") == _metrics(tmp_path / "straight")


def test_evaluator_errors_are_clear(tmp_path):
    train_from_config(_config("autoencoder", "mlp,tiny", steps=2), tmp_path)
    with pytest.raises(evaluate.EvalError, match="nll not available for this 'ae' run; it sup"):
        evaluate.run(tmp_path, ["nll"], num_images=4)
    with pytest.raises(evaluate.EvalError, match="fid not available .* supports recon, figures"):
        evaluate.run(tmp_path, ["fid"], num_images=4)
    with pytest.raises(FileNotFoundError, match="not found"):
        evaluate.run(tmp_path / "nowhere", ["recon"])

"""The shared loop: outputs, exact auto-resume, stopping on non-finite values."""

import json

import chex
import jax
import numpy as np
import pytest

from experiments import dcgan
from genimg.train import checkpoint as ckpt
from genimg.train.loop import TrainingError, train_from_config


def _config(steps, **train):
    config = dcgan.get_config("tiny")
    config.data.source = "digits"
    config.train.steps = steps
    config.train.update(train)
    return config


def _metrics(workdir):
    lines = [json.loads(ln) for ln in (workdir / "metrics.jsonl").read_text().splitlines()]
    for line in lines:
        line.pop("steps_per_s")  # wall-clock, not a result
    return lines


def test_resume_reproduces_the_uninterrupted_run(tmp_path):
    straight = train_from_config(_config(6), tmp_path / "straight")
    # Stop after 4 steps, then rerun the same command with the full budget: it resumes.
    train_from_config(_config(4), tmp_path / "resumed")
    resumed = train_from_config(_config(6), tmp_path / "resumed")

    assert int(resumed.step) == int(straight.step) == 6
    chex.assert_trees_all_equal(resumed.g_params, straight.g_params)
    chex.assert_trees_all_equal(resumed.ema_params, straight.ema_params)
    chex.assert_trees_all_equal(resumed.d_opt_state, straight.d_opt_state)
    assert _metrics(tmp_path / "resumed") == _metrics(tmp_path / "straight")
    assert [m["step"] for m in _metrics(tmp_path / "straight")] == [2, 4, 6]


def test_run_outputs(tmp_path):
    train_from_config(_config(4), tmp_path)
    assert (tmp_path / "samples" / "step_0000004.png").is_file()
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["train"]["steps"] == 4 and config["model"]["arch"] == "dcgan"
    info = json.loads((tmp_path / "run_info.json").read_text())
    assert info["image_shape"] == [8, 8, 1] and info["num_classes"] == 10
    assert sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir()) == [2, 4]
    first = _metrics(tmp_path)[0]
    for key in ("d_loss", "g_loss", "g_grad_norm", "d_grad_norm", "g_param_norm"):
        assert np.isfinite(first[key])
    # restore_run rebuilds the model from the workdir alone.
    config, family, state, _ = ckpt.restore_run(tmp_path)
    assert int(state.step) == 4
    images, labels = family.sample(state, jax.random.key(0), 3)
    assert images.shape == (3, 8, 8, 1) and labels is None
    assert 0.0 <= float(images.min()) and float(images.max()) <= 1.0


def test_non_finite_stops_without_saving(tmp_path):
    bad = _config(6)
    bad.optim.d_lr = float("nan")  # the first D update turns D's weights into NaN
    with pytest.raises(TrainingError) as err:
        train_from_config(bad, tmp_path)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("non-finite d_param_norm=nan at step 1;"), message
    assert "no checkpoint was saved" in message
    assert not list((tmp_path / "checkpoints").iterdir())


def test_a_wall_clock_budget_ends_the_run_like_its_last_step(tmp_path):
    # A budget shorter than the compile: the run stops after its first step, with the final
    # grid and checkpoint of a finished run; the same command then resumes for one more step.
    config = _config(1000, max_minutes=1e-6)
    state = train_from_config(config, tmp_path)
    assert int(state.step) == 1
    assert (tmp_path / "samples" / "step_0000001.png").is_file()
    assert ckpt.finished_steps(tmp_path) == [1]
    assert int(train_from_config(config, tmp_path).step) == 2
    assert ckpt.finished_steps(tmp_path) == [1, 2]


def test_a_negative_budget_is_a_config_error(tmp_path):
    from genimg.errors import ConfigError

    with pytest.raises(ConfigError, match="train.max_minutes must be >= 0"):
        train_from_config(_config(4, max_minutes=-1.0), tmp_path)
    assert not (tmp_path / "checkpoints").exists()

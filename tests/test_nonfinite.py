"""``train.on_nonfinite``: stop, or roll back to the last good checkpoint, skip the batch of the
bad step, scale the learning rates down (each rollback) and give up after
``train.max_rollbacks``.

The family here makes the arithmetic exact: one scalar parameter ``w`` with gradient 1 under
plain SGD, so after k steps at learning rate ``lr`` it is exactly ``-k * lr``. Its loss adds
``0 * log(max(batch))``, which is NaN on an all-black batch: the data holds one (or two)
all-black images, and with batches of one image the step they land on is known.
"""

import json

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from genimg.data import TrainData
from genimg.train import config as config_lib
from genimg.train import family as family_lib
from genimg.train.common import State
from genimg.train.loop import TrainingError, train_from_config

N_IMAGES = 16
LR = 0.25  # a power of two: every w below is exact in float32


@family_lib.register("nonfinite_probe")
def build(config, image_shape, num_classes):
    tx = optax.sgd(config.optim.lr)

    def init_state(rng):
        return State.create(apply_fn=None, params={"w": jnp.zeros(())}, tx=tx)

    def make_train_step(axis_name):
        def train_step(state, batch, rng):
            x = batch["image"]

            def loss_fn(params):
                return params["w"] + 0.0 * jnp.log(jnp.max(x))  # NaN on an all-black batch

            loss, grads = jax.value_and_grad(loss_fn)(state.params)
            state = state.apply_gradients(grads=grads)
            return state, {"loss": loss, "w": state.params["w"], "batch_max": jnp.max(x)}

        return train_step

    return family_lib.Family("nonfinite_probe", "0_1", init_state, make_train_step)


def _step_of_each_image():
    """Which image each of the first N_IMAGES steps reads (batches of one, seed 0)."""
    ids = np.arange(1, N_IMAGES + 1, dtype=np.uint8).reshape(N_IMAGES, 1, 1, 1)
    data = TrainData(ids, global_batch=1, seed=0, scale="0_1")
    return [int(round(float(data.batch(i)["image"].max()) * 255)) - 1 for i in range(N_IMAGES)]


def _data(tmp_path, bad_steps):
    images = np.full((N_IMAGES, 2, 2, 1), 200, np.uint8)
    order = _step_of_each_image()
    for step in bad_steps:  # step k (1-based) reads image order[k - 1]
        images[order[step - 1]] = 0
    path = tmp_path / "images.npz"
    np.savez(path, images=images)
    return path


def _config(data, steps=12, **train):
    optim = ml_collections.ConfigDict({"lr": LR})
    train_block = config_lib.train_block(
        steps=steps, batch_size=1, log_every=1, checkpoint_every=4, sample_every=0,
        progress=False, log_norms=False,
    )  # fmt: skip
    train_block.update(train)
    return config_lib.experiment_config(
        "nonfinite_probe",
        data=config_lib.data_block(f"npz:{data}"),
        optim=optim,
        train=train_block,
    )


def _metrics(workdir):
    return [json.loads(ln) for ln in (workdir / "metrics.jsonl").read_text().splitlines()]


def test_stop_names_the_step_and_keeps_the_good_checkpoints(tmp_path):
    data = _data(tmp_path, bad_steps=[8])
    with pytest.raises(TrainingError) as err:
        train_from_config(_config(data), tmp_path / "run")
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("non-finite loss=nan at step 8; stopped without saving it")
    assert "the last good checkpoint is step 4" in message
    assert "train.on_nonfinite=rollback" in message
    steps = sorted(int(p.name) for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert steps == [4]
    assert [m["step"] for m in _metrics(tmp_path / "run")] == [1, 2, 3, 4, 5, 6, 7]


def test_rollback_skips_the_batch_and_halves_the_learning_rate(tmp_path, caplog):
    data = _data(tmp_path, bad_steps=[8])
    workdir = tmp_path / "run"
    state = train_from_config(_config(data, on_nonfinite="rollback"), workdir)

    # Steps 1-4 at LR, then (back from step 8 to the checkpoint of step 4) 5-12 at LR / 2.
    assert int(state.step) == 12
    assert float(state.params["w"]) == -(4 * LR + 8 * LR / 2)
    lines = _metrics(workdir)
    assert [m["step"] for m in lines] == [1, 2, 3, 4, 4, 5, 6, 7, 8, 9, 10, 11, 12]
    rollback = lines[4]
    assert rollback == {
        "step": 4,
        "rollback": 1,
        "rollback_lr_scale": 0.5,
        "rollback_skipped_step": 8,
    }
    trained = [m for m in lines if "loss" in m]
    assert all(np.isfinite(m["loss"]) and m["batch_max"] > 0 for m in trained)
    assert [m["w"] for m in trained[4:]] == [-(4 * LR + k * LR / 2) for k in range(1, 9)]
    record = json.loads((workdir / "rollbacks.json").read_text())["rollbacks"]
    assert record == [dict(bad_step=8, metric="loss", value="nan", restored_step=4, lr_scale=0.5)]
    assert any(
        "rolled back to step 4, skipping the batch of step 8; learning rates: optim.lr x0.5"
        in r.getMessage()
        for r in caplog.records
    )

    # A later run of the same workdir keeps the lower learning rate: 4 more steps at LR / 2.
    state = train_from_config(_config(data, steps=16, on_nonfinite="rollback"), workdir)
    assert float(state.params["w"]) == -(4 * LR + 12 * LR / 2)


def test_rollbacks_give_up_after_max_rollbacks(tmp_path):
    data = _data(tmp_path, bad_steps=[6, 10])
    config = _config(data, on_nonfinite="rollback", max_rollbacks=1)
    with pytest.raises(TrainingError) as err:
        train_from_config(config, tmp_path / "run")
    message = str(err.value)
    assert "\n" not in message
    # Back from 6 to 4 (rollback 1); with step 6's batch skipped, step 9 reads image 10's.
    assert message.startswith("non-finite loss=nan at step 9 after 1 rollback(s)"), message
    assert "train.max_rollbacks=1" in message and "last good checkpoint is step 8" in message

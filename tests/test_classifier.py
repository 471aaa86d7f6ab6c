"""The classifier family: module shapes, augmentation, the train step, the tiny experiment."""

import json

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import classifier as experiment
from genimg import evaluate
from genimg.errors import UserError
from genimg.families import classifier as cls
from genimg.models.classifier import ConvClassifier


def _config(**train):
    config = experiment.get_config("tiny")
    config.train.update(train)
    return config


def test_module_shapes_and_param_count():
    model = ConvClassifier(num_classes=10, widths=(4, 8), convs_per_stage=1, feature_dim=16)
    variables = model.init(jax.random.key(0), jnp.zeros((2, 8, 8, 1)))
    features, logits = model.apply(variables, jnp.zeros((3, 8, 8, 1)))
    assert features.shape == (3, 16) and logits.shape == (3, 10)
    # convs without bias (batch norm follows): 9*1*4 + 9*4*8; dense 2*2*8 -> 16, 16 -> 10 (+bias);
    # batch-norm scale and bias for 4 + 8 + 16 channels.
    expected = 36 + 288 + 32 * 16 + 16 * 10 + 10 + 2 * (4 + 8 + 16)
    assert sum(x.size for x in jax.tree.leaves(variables["params"])) == expected


def test_augment_flip_and_crop():
    images = jax.random.uniform(jax.random.key(1), (16, 6, 6, 1))
    assert cls.augment(jax.random.key(0), images, "none") is images
    flipped = cls.augment(jax.random.key(0), images, "flip")
    same = jnp.all(flipped == images, axis=(1, 2, 3))
    mirrored = jnp.all(flipped == images[:, :, ::-1], axis=(1, 2, 3))
    assert bool(jnp.all(same | mirrored)) and 0 < int(mirrored.sum()) < 16
    cropped = cls.augment(jax.random.key(0), images, "flip_crop")
    assert cropped.shape == images.shape
    assert not np.allclose(cropped, flipped)  # some crop moved some image
    with pytest.raises(ValueError, match="unknown data.augment"):
        cls.augment(jax.random.key(0), images, "rotate")


def test_weight_decay_skips_biases_and_norms():
    model = cls.build_model(_config(), num_classes=10)
    params = model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 1)))["params"]
    mask = cls._decay_mask(params)
    flat = {"/".join(k.key for k in path): v for path, v in jax.tree.leaves_with_path(mask)}
    assert flat["Dense_1/kernel"] and flat["Conv_0/kernel"]
    assert not flat["Dense_1/bias"] and not flat["BatchNorm_0/scale"]


def test_train_step_learns_a_fixed_batch():
    config = _config()
    config.model.dropout = 0.0
    config.data.augment = "none"  # a fixed batch: nothing random but the init
    config.optim.schedule = "constant"
    config.optim.lr = 1e-2
    family = cls.build(config, (8, 8, 1), 10)
    state = family.init_state(jax.random.key(0))
    step = jax.jit(chex.assert_max_traces(family.make_train_step(None), n=1))
    images = jax.random.uniform(jax.random.key(1), (8, 8, 8, 1))
    batch = {"image": images, "label": jnp.arange(8) % 10}
    losses = []
    for _ in range(20):
        state, metrics = step(state, batch, jax.random.key(2))
        losses.append(float(metrics["loss"]))
    assert all(np.isfinite(losses))
    assert losses[-1] < 0.5 * losses[0]
    assert float(metrics["accuracy"]) >= 0.75  # measured before the last update
    assert int(state.step) == 20


def test_build_needs_labels():
    with pytest.raises(UserError, match="needs labelled data"):
        cls.build(_config(), (8, 8, 1), None)


def test_bad_schedule_is_rejected():
    config = _config()
    config.optim.schedule = "linear"
    with pytest.raises(ValueError, match="unknown optim.schedule"):
        cls.build(config, (8, 8, 1), 10)


def test_tiny_experiment_end_to_end(tmp_path):
    accuracy = experiment.main(_config(), str(tmp_path))
    record = json.loads((tmp_path / "eval.json").read_text())
    assert record["accuracy"] == accuracy and record["step"] == 4 and record["split"] == "test"
    assert record["num_images"] == 359  # the digits test split
    assert 0.0 <= accuracy <= 1.0
    # Per class: the class accuracies weighted by the class sizes give the overall one.
    from genimg.data import load

    labels = load("digits", "test").labels
    per_class = [record[f"accuracy/class{k}"] for k in range(10)]
    assert np.dot(per_class, np.bincount(labels, minlength=10)) / len(labels) == pytest.approx(
        accuracy
    )
    # The evaluator's default for a classifier run is its accuracy, from the checkpoint.
    again = evaluate.run(tmp_path)
    assert again["accuracy"] == pytest.approx(accuracy)
    assert evaluate.run(tmp_path, num_images=7)["num_images"] == 7


def test_predict_pads_the_last_batch():
    family = cls.build(_config(), (8, 8, 1), 10)
    state = family.init_state(jax.random.key(0))
    images = np.random.default_rng(0).integers(0, 256, (7, 8, 8, 1), dtype=np.uint8)
    feats, logits = cls.predict(family, state, images, batch_size=3)
    full_feats, full_logits = cls.predict(family, state, images, batch_size=7)
    assert feats.shape == (7, 16) and logits.shape == (7, 10)
    np.testing.assert_allclose(feats, full_feats, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(logits, full_logits, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="uint8"):
        cls.predict(family, state, images.astype(np.float32))


def test_fast_preset_is_a_smaller_shorter_run():
    default, fast = experiment.get_config(), experiment.get_config("fast")
    assert fast.train.steps < default.train.steps / 2
    assert fast.model.convs_per_stage < default.model.convs_per_stage
    assert fast.model.feature_dim < default.model.feature_dim

"""VAE / AE train steps: they learn a fixed batch, trace once, and honour their knobs."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import autoencoder, cvae, denoising_ae, vae
from genimg.data import load, scale_images
from genimg.errors import UserError
from genimg.families import vae as vae_train
from genimg.train.family import build_family

_DIGITS = load("digits", "train", max_examples=16)


def _batch():
    return {
        "image": scale_images(_DIGITS.images, "0_1"),
        "label": jnp.asarray(_DIGITS.labels, jnp.int32),
    }


def _fit(config, steps=30):
    family = build_family(config, _DIGITS.images.shape[1:], _DIGITS.num_classes)
    state = family.init_state(jax.random.key(0))
    step = jax.jit(chex.assert_max_traces(family.make_train_step(None), n=1))
    batch, rng = _batch(), jax.random.key(1)
    first = None
    for _ in range(steps):
        state, metrics = step(state, batch, rng)
        first = first or {k: float(v) for k, v in metrics.items()}
    last = {k: float(v) for k, v in metrics.items()}
    assert all(np.isfinite(v) for v in last.values())
    return family, state, first, last


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian_learned"])
def test_vae_step_learns_a_fixed_batch(likelihood):
    chex.clear_trace_counter()
    config = vae.get_config("mlp,tiny")
    config.model.likelihood = likelihood
    config.data.binarize = "static" if likelihood == "bernoulli" else "none"
    family, state, first, last = _fit(config)
    assert last["loss"] < first["loss"] - 1.0 and last["elbo"] > first["elbo"]
    assert int(state.step) == 30 and family.data_scale == "0_1"
    images, labels = family.sample(state, jax.random.key(0), 3)
    assert labels is None
    assert images.shape == (3, 8, 8, 1) and 0 <= float(images.min()) <= float(images.max()) <= 1


def test_cvae_uses_labels_and_ae_and_dae_learn():
    chex.clear_trace_counter()
    family, state, first, last = _fit(cvae.get_config("mlp,tiny"), steps=5)
    x = _batch()["image"][:2]
    a = family.reconstruct(state, x, jnp.array([0, 0]))
    b = family.reconstruct(state, x, jnp.array([5, 5]))
    assert not np.allclose(a, b)
    for module_cfg in (autoencoder, denoising_ae):
        chex.clear_trace_counter()
        config = module_cfg.get_config("mlp,tiny")
        config.model.weight_decay = 1e-4
        _, _, first, last = _fit(config)
        assert last["recon_loss"] < 0.9 * first["recon_loss"] and last["l2"] > 0


def test_cvae_class_term_trains_its_classifier_on_real_images_only():
    chex.clear_trace_counter()
    config = cvae.get_config("mlp,tiny")
    config.model.aux_classifier_weight = 1.0
    family, state, first, last = _fit(config)
    assert "aux_classifier" in state.params
    assert last["aux_real_ce"] < 0.9 * first["aux_real_ce"]
    assert last["aux_fake_ce"] < first["aux_fake_ce"] and 0 <= last["aux_fake_acc"] <= 1
    # The prior-sample term moves the decoder, never the classifier: from one state, weights
    # 1 and 5 give the classifier the same update and the decoder different ones.
    updated = {}
    for weight in (1.0, 5.0):
        config.model.aux_classifier_weight = weight
        step = build_family(config, (8, 8, 1), 10).make_train_step(None)
        updated[weight] = jax.jit(step)(state, _batch(), jax.random.key(2))[0].params

    def equal(part):
        return jax.tree.leaves(jax.tree.map(np.array_equal, updated[1.0][part], updated[5.0][part]))

    assert all(equal("aux_classifier")) and not all(equal("decoder"))
    # Without the term the model has no classifier, and old checkpoints keep their tree.
    config.model.aux_classifier_weight = 0.0
    plain = build_family(config, (8, 8, 1), 10).init_state(jax.random.key(0))
    assert "aux_classifier" not in plain.params


def test_bad_knobs_are_clear_errors():
    config = vae.get_config("mlp,tiny")
    config.data.binarize = "sometimes"
    with pytest.raises(ValueError, match="binarize"):
        build_family(config, (8, 8, 1), 10)
    config = cvae.get_config("mlp,tiny")
    with pytest.raises(UserError, match="needs labelled data"):
        build_family(config, (8, 8, 1), None)
    config = cvae.get_config("mlp,tiny")
    config.model.aux_classifier_weight = -1.0
    with pytest.raises(UserError, match="aux_classifier_weight must be >= 0"):
        build_family(config, (8, 8, 1), 10)
    config = denoising_ae.get_config("mlp,tiny")
    config.corruption.kind = "blur"
    with pytest.raises(ValueError, match="unknown corruption"):
        build_family(config, (8, 8, 1), None)


def test_binarize():
    x = jnp.array([0.0, 0.3, 0.7, 1.0])
    np.testing.assert_array_equal(vae_train.binarize(None, x, "static"), [0, 0, 1, 1])
    u = jnp.full((20000,), 0.3)
    assert float(vae_train.binarize(jax.random.key(0), u, "dynamic").mean()) == pytest.approx(
        0.3, abs=0.01
    )
    # The test-set binarisation is fixed per image (the first N images do not depend on how
    # many follow) and leaves binary images unchanged.
    u = jnp.full((50, 4, 4, 1), 0.3)
    b = vae_train.eval_binarize(u, "dynamic")
    np.testing.assert_array_equal(b[:7], vae_train.eval_binarize(u[:7], "dynamic"))
    assert float(b.mean()) == pytest.approx(0.3, abs=0.05) and not (b[0] == b[1]).all()
    np.testing.assert_array_equal(vae_train.eval_binarize(b, "dynamic"), b)

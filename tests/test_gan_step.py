"""The pure GAN train step: learning, one compile, variants run and stay finite."""

import chex
import jax
import numpy as np
import pytest

from experiments import dcgan, mlp_gan
from genimg.data import load, scale_images
from genimg.train.family import build_family

DIGITS = load("digits", max_examples=64)


def _family(experiment=dcgan, **overrides):
    config = experiment.get_config("tiny")
    for key, value in overrides.items():
        section, name = key.split(".")
        config[section][name] = value
    return config, build_family(config, DIGITS.images.shape[1:], DIGITS.num_classes)


def test_d_loss_decreases_on_a_fixed_batch_with_one_compile():
    # G frozen (lr 0): D alone must learn to separate this real batch from G's samples.
    config, family = _family(**{"optim.g_lr": 0.0, "optim.d_lr": 2e-3, "model.d_dropout": 0.0})
    batch = {"image": scale_images(DIGITS.images[:16], family.data_scale)}
    step = jax.jit(chex.assert_max_traces(family.make_train_step(None), n=1))
    state = family.init_state(jax.random.key(0))
    g_before = state.g_params
    rng = jax.random.key(1)
    d_losses = []
    for _ in range(25):
        state, metrics = step(state, batch, rng)
        d_losses.append(float(metrics["d_loss"]))
    assert int(state.step) == 25
    assert np.mean(d_losses[-5:]) < 0.7 * np.mean(d_losses[:5]), d_losses
    chex.assert_trees_all_equal(state.g_params, g_before)  # lr 0 leaves G untouched
    # EMA follows G: with G fixed it stays equal to it.
    chex.assert_trees_all_close(state.ema_params, g_before, atol=1e-6)


@pytest.mark.parametrize(
    "overrides",
    [
        {"model.loss": "wgan", "model.gp_weight": 10.0, "model.n_critic": 2},
        {"model.loss": "hinge", "model.spectral_norm": True, "model.r1_weight": 1.0},
        {"model.loss": "lsgan", "experiment": mlp_gan},
        {"model.loss": "minimax", "optim.d_lr": 4e-4},  # TTUR
    ],
    ids=["wgan-gp-ncritic2", "hinge-sn-r1", "lsgan-mlp", "minimax-ttur"],
)
def test_variants_train_and_report_their_parts(overrides):
    config, family = _family(**overrides)
    n = config.train.batch_size * family.batch_multiplier
    batch = {"image": scale_images(DIGITS.images[:n], family.data_scale)}
    state = family.init_state(jax.random.key(0))
    step = jax.jit(family.make_train_step(None))
    for _ in range(2):
        state, metrics = step(state, batch, jax.random.key(1))
    metrics = jax.device_get(metrics)
    assert all(np.isfinite(v) for v in metrics.values()), metrics
    if overrides.get("model.gp_weight"):
        assert metrics["gp"] > 0
    if overrides.get("model.r1_weight"):
        assert metrics["r1"] > 0
    for name in ("d_loss", "g_loss", "g_grad_norm", "d_grad_norm", "g_param_norm"):
        assert name in metrics
    # The EMA (decay 0.999) lags the trained generator: equal shapes, different values.
    chex.assert_trees_all_equal_shapes(state.g_params, state.ema_params)
    assert not np.allclose(
        jax.tree.leaves(state.g_params)[-1], jax.tree.leaves(state.ema_params)[-1]
    )


def test_ema_off_and_norms_off_leave_the_training_math_unchanged():
    # ema_decay=0 skips the EMA update and log_norms=False drops the norm metrics; neither may
    # change what the step computes for the networks.
    lean_cfg = {"experiment": mlp_gan, "model.ema_decay": 0.0, "train.log_norms": False}
    runs = {}
    full_cfg = {"experiment": mlp_gan, "model.ema_decay": 0.999}
    for name, overrides in {"full": full_cfg, "lean": lean_cfg}.items():
        config, family = _family(**overrides)
        batch = {"image": scale_images(DIGITS.images[: config.train.batch_size], "0_1")}
        state = family.init_state(jax.random.key(0))
        ema_before = jax.tree.map(np.asarray, state.ema_params)
        step = jax.jit(family.make_train_step(None))
        for _ in range(3):
            state, metrics = step(state, batch, jax.random.key(1))
        runs[name] = (state, jax.device_get(metrics), ema_before)
    (full, full_m, _), (lean, lean_m, lean_ema0) = runs["full"], runs["lean"]
    assert "g_grad_norm" in full_m and not any("norm" in k for k in lean_m)
    assert lean_m.keys() <= full_m.keys()
    for k in lean_m:
        np.testing.assert_allclose(lean_m[k], full_m[k], rtol=1e-5, err_msg=k)
    chex.assert_trees_all_close(lean.g_params, full.g_params, rtol=1e-5, atol=1e-7)
    chex.assert_trees_all_equal(jax.device_get(lean.ema_params), lean_ema0)  # untouched


def test_conv_backend_key_reaches_the_models():
    _, family = _family(**{"model.conv_backend": "cudnn"})
    with pytest.raises(ValueError, match="conv_backend"):
        family.init_state(jax.random.key(0))

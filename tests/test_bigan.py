"""BiGAN: the encoder-generator loss by hand, D(x, z) sees both inputs, the step."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import bigan as bigan_experiment
from genimg import losses
from genimg.data import TrainData, load
from genimg.models.bigan import ConvEncoder, JointDiscriminator
from genimg.train.family import build_family

R = np.array([0.5, -1.0, 2.0])  # D(x, E(x))
F = np.array([-0.3, 1.5, 0.0])  # D(G(z), z)


def _softplus(x):
    return np.log1p(np.exp(x))


@pytest.mark.parametrize(
    "kind, want",
    [
        ("nonsaturating", np.mean(_softplus(R)) + np.mean(_softplus(-F))),
        # minimax: minus the discriminator's loss.
        ("minimax", -(np.mean(_softplus(-R)) + np.mean(_softplus(F)))),
        ("hinge", np.mean(R) - np.mean(F)),
        ("wgan", np.mean(R) - np.mean(F)),
        ("lsgan", 0.5 * np.mean(R**2) + 0.5 * np.mean((F - 1) ** 2)),
    ],
)
def test_encoder_generator_loss_by_hand(kind, want):
    total, parts = losses.bigan_eg_loss(kind, jnp.asarray(R), jnp.asarray(F))
    assert float(total) == pytest.approx(want, rel=1e-6)
    assert float(parts["e_adv"] + parts["g_adv"]) == pytest.approx(want, rel=1e-6)
    with pytest.raises(ValueError, match="unknown GAN loss"):
        losses.bigan_eg_loss("nope", jnp.asarray(R), jnp.asarray(F))


@pytest.mark.parametrize("spectral_norm", [False, True])
def test_the_joint_discriminator_sees_both_inputs(spectral_norm):
    d = JointDiscriminator(width=4, hidden=8, spectral_norm=spectral_norm)
    x = jax.random.normal(jax.random.key(0), (3, 8, 8, 1))
    z = jax.random.normal(jax.random.key(1), (3, 5))
    variables = d.init(jax.random.key(2), x, z, train=False)

    def score(x, z):
        return jnp.sum(d.apply(variables, x, z, train=False))

    gx, gz = jax.grad(score, argnums=(0, 1))(x, z)
    assert float(jnp.abs(gx).sum()) > 0 and float(jnp.abs(gz).sum()) > 0
    # Each example's logit depends on its own (x, z) only.
    assert (
        float(jnp.abs(jax.grad(lambda z: d.apply(variables, x, z, train=False)[0])(z)[1:]).sum())
        == 0
    )
    feats = d.apply(variables, x, z, train=False, features_only=True)
    assert feats.shape == (3, 8)
    assert ConvEncoder(5, width=4).init_with_output(jax.random.key(0), x)[0].shape == (3, 5)


def test_bigan_step_trains_and_encodes():
    config = bigan_experiment.get_config("tiny")
    data = load("digits", "train", max_examples=64)
    family = build_family(config, data.images.shape[1:], data.num_classes)
    train = TrainData(data.images, global_batch=16, scale=family.data_scale)
    state = family.init_state(jax.random.key(0))
    chex.clear_trace_counter()
    step = jax.jit(chex.assert_max_traces(family.make_train_step(None), 1))
    for i in range(3):
        state, metrics = step(state, train.batch(i), jax.random.key(1))
    for key in ("d_loss", "eg_loss", "e_adv", "g_adv", "d_real", "d_fake", "ge_grad_norm"):
        assert np.isfinite(float(metrics[key])), key
    x = jnp.asarray(data.images[:4], jnp.float32) / 255.0
    assert family.encode(state, x).shape == (4, config.model.z_dim)
    recon = family.reconstruct(state, x)
    assert recon.shape == x.shape and 0 <= float(recon.min()) <= float(recon.max()) <= 1
    assert family.d_features(state, x).shape == (4, config.model.d_hidden)
    # The EMA moved toward the trained weights and both E and G changed.
    moved = jax.tree.map(
        lambda a, b: float(jnp.abs(a - b).max()), state.ge_params, state.ema_params
    )
    assert all(v > 0 for v in jax.tree.leaves(moved))

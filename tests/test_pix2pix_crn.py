"""pix2pix and CRN networks and steps: shapes for each supported size, pinned parameter
counts, the train steps and the CRN's perceptual loss on a classifier run."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import crn as crn_experiment
from experiments import pix2pix as pix2pix_experiment
from genimg.data import TrainData, load
from genimg.families import crn as crn_family
from genimg.models import crn, pix2pix
from genimg.train.family import build_family


def _count(variables):
    return sum(x.size for x in jax.tree.leaves(variables["params"]))


# Image size -> U-Net levels, U-Net / PatchGAN / CRN parameters (experiment widths, 4-class
# label maps in, 1 channel out), patch-logit grid, CRN module sides.
SIZES = {
    8: (1, 12_385, 36_513, 2, 68_577, [4, 8]),
    28: (2, 138_593, 36_513, 12, 295_137, [7, 14, 28]),
    32: (3, 642_913, 36_513, 14, 595_425, [4, 8, 16, 32]),
    64: (4, 1_429_857, 36_513, 30, 895_713, [4, 8, 16, 32, 64]),
}


@pytest.mark.parametrize("size", sorted(SIZES))
def test_shapes_and_parameter_counts(size):
    levels, g_params, d_params, patches, c_params, sides = SIZES[size]
    x = jnp.zeros((2, size, size, 4))
    g = pix2pix.UNetGenerator(1, width=32, max_width=128)
    variables = jax.eval_shape(lambda: g.init(jax.random.key(0), x[:1], train=False))
    assert pix2pix.unet_levels(size) == levels and _count(variables) == g_params
    (out, inter) = jax.eval_shape(
        lambda: g.apply(
            g.init(jax.random.key(0), x[:1], train=False),
            x,
            train=False,
            mutable=["intermediates"],
        )
    )
    assert out.shape == (2, size, size, 1)
    skips = inter["intermediates"]
    widths = [min(32 * 2**i, 128) for i in range(levels)]
    for i, w in enumerate(widths):  # every skip has the side and width of its level
        side = size // 2 ** (i + 1)
        assert skips[f"down{i}"][0].shape == (2, side, side, w)
        if i > 0:  # the decoder output that is concatenated with skip i - 1
            assert skips[f"up{i}"][0].shape == (2, side * 2, side * 2, widths[i - 1])

    d = pix2pix.PatchDiscriminator(width=32)
    y = jnp.zeros((2, size, size, 1))
    d_vars = jax.eval_shape(lambda: d.init(jax.random.key(0), x[:1], y[:1], train=False))
    assert _count(d_vars) == d_params
    logits = jax.eval_shape(lambda: d.apply(d.init(jax.random.key(0), x[:1], y[:1]), x, y))
    assert logits.shape == (2, patches, patches)

    c = crn.CascadedRefinementNetwork(1, width=32, max_width=128)
    c_vars = jax.eval_shape(lambda: c.init(jax.random.key(0), x[:1]))
    assert _count(c_vars) == c_params and crn.module_sizes(size) == sides
    out, inter = jax.eval_shape(
        lambda: c.apply(c.init(jax.random.key(0), x[:1]), x, mutable=["intermediates"])
    )
    assert out.shape == (2, size, size, 1)
    for i, side in enumerate(sides):
        width = min(32 * 2 ** (len(sides) - 1 - i), 128)
        assert inter["intermediates"][f"module{i}"][0].shape == (2, side, side, width)


def test_the_papers_patchgan_and_receptive_fields():
    # The 70x70 PatchGAN of the pix2pix code (n_layers=3, ndf=64, on 3 + 3 channels) has
    # 2,768,705 parameters there; ours the same.
    d = pix2pix.PatchDiscriminator(width=64, layers=3)
    z = jnp.zeros((1, 256, 256, 3))
    assert _count(jax.eval_shape(lambda: d.init(jax.random.key(0), z, z))) == 2_768_705
    assert [pix2pix.patch_receptive_field(n) for n in range(4)] == [7, 16, 34, 70]
    with pytest.raises(ValueError, match="too small or odd"):
        pix2pix.unet_levels(7)


def test_area_downsample_averages_blocks():
    x = jnp.arange(16.0).reshape(1, 4, 4, 1)
    np.testing.assert_allclose(crn.area_downsample(x, 2)[0, :, :, 0], [[2.5, 4.5], [10.5, 12.5]])


def _tiny_batch(config, batch=8):
    data = load(config.data.source, "train", max_examples=64)
    family = build_family(config, data.images.shape[1:], data.num_classes)
    train = TrainData(
        data.images,
        global_batch=batch,
        scale=family.data_scale,
        inputs=data.inputs,
        input_classes=data.input_classes,
    )
    return family, train.batch(0)


@pytest.mark.parametrize("preset", ["tiny", "l1,tiny", "edges,tiny"])
def test_pix2pix_step_fits_a_fixed_batch(preset):
    config = pix2pix_experiment.get_config(preset)
    config.model.dropout = 0.0
    config.optim.update(g_lr=2e-3, d_lr=2e-3, decay_from=1.0)  # tiny's 4 steps: no decay
    family, batch = _tiny_batch(config)
    state = family.init_state(jax.random.key(0))
    if config.model.gan_weight == 0:
        assert state.d_params == {}  # the L1 U-Net has no discriminator
    chex.clear_trace_counter()  # the counter is per code object, shared by the presets
    step = jax.jit(chex.assert_max_traces(family.make_train_step(None), 1))
    first = None
    for _ in range(30):
        state, metrics = step(state, batch, jax.random.key(1))
        first = first or float(metrics["l1"])
    assert float(metrics["l1"]) < 0.85 * first and np.isfinite(float(metrics["g_loss"]))
    assert ("d_loss" in metrics) == (config.model.gan_weight > 0)
    out = family.translate(state, batch["input"])
    assert out.shape == batch["image"].shape and 0 <= float(out.min()) <= float(out.max()) <= 1
    noisy = family.translate(state, batch["input"], jax.random.key(2))
    assert noisy.shape == out.shape


def test_crn_perceptual_loss_uses_the_classifier(classifier_run):
    config = crn_experiment.get_config("tiny")
    config.model.feature_net = f"domain:{classifier_run}"
    family, batch = _tiny_batch(config)
    phi = crn_family.feature_layers(config.model.feature_net, (8, 8, 1))
    feats = phi(jnp.zeros((2, 8, 8, 1)))
    # The classifier's tiny preset: stages of 4 and 8 channels, then 16 features.
    assert [f.shape for f in feats] == [(2, 8, 8, 4), (2, 4, 4, 8), (2, 16)]
    state = family.init_state(jax.random.key(0))
    step = jax.jit(family.make_train_step(None))
    losses, feature_losses = [], []
    for _ in range(25):
        state, metrics = step(state, batch, jax.random.key(0))
        losses.append(float(metrics["loss"]))
        feature_losses.append(float(metrics["feature_loss"]))
    # The total and the classifier-feature term both go down on the fixed batch (by ~8 % in
    # 25 steps of the tiny network: the decrease, not its size, is what this checks).
    assert feature_losses[-1] > 0 and feature_losses[-1] < 0.97 * feature_losses[0]
    assert losses[-1] < 0.97 * losses[0]
    with pytest.raises(FileNotFoundError, match="is not a classifier run"):
        crn_family.feature_layers("domain:/nonexistent/run", (8, 8, 1))
    with pytest.raises(Exception, match=r"trained on \[8, 8, 1\] images"):
        crn_family.feature_layers(config.model.feature_net, (28, 28, 1))

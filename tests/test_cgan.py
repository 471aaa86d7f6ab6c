"""The class-conditional GAN: conditional batch norm and the projection logit against hand
computations, label shapes, the labels flowing through the unforked step, tiny runs of each
variant, and 1 vs 4 fake devices."""

import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import signal

from experiments import cgan
from genimg.data import load, scale_images
from genimg.models import gan
from genimg.models.layers import ConditionalBatchNorm
from genimg.train.family import build_family
from genimg.train.loop import train_from_config
from tests.fake_devices import run_on_fake_devices

DIGITS = load("digits", max_examples=64)


def test_conditional_batch_norm_matches_a_hand_computation():
    x = np.array(
        [[[1.0, -2.0, 0.5]], [[3.0, 0.0, 1.5]], [[-1.0, 4.0, 2.5]], [[0.0, 1.0, -0.5]]]
    )  # [B=4, 1, C=3]: the statistics are over batch and the middle axis
    labels = np.array([0, 2, 1, 2])
    scale = np.array([[1.0, 2.0, 0.5], [-1.0, 0.0, 3.0], [0.25, 1.0, 1.0]])  # [K=3, C]
    bias = np.array([[0.0, 1.0, -1.0], [2.0, 0.5, 0.0], [-0.5, 0.0, 0.25]])
    module = ConditionalBatchNorm(num_classes=3, epsilon=1e-5, momentum=0.9)
    variables = module.init(jax.random.key(0), jnp.zeros((1, 1, 3)), jnp.zeros((1,), jnp.int32))
    assert variables["params"]["scale"].shape == (3, 3)
    np.testing.assert_array_equal(variables["params"]["scale"], np.ones((3, 3)))  # identity
    np.testing.assert_array_equal(variables["params"]["bias"], np.zeros((3, 3)))
    variables = {
        "params": {
            "scale": jnp.asarray(scale, jnp.float32),
            "bias": jnp.asarray(bias, jnp.float32),
        },
        "batch_stats": variables["batch_stats"],
    }
    out, updated = module.apply(
        variables, jnp.asarray(x, jnp.float32), jnp.asarray(labels), mutable=["batch_stats"]
    )
    mean, var = x.mean(axis=(0, 1)), x.var(axis=(0, 1))  # biased variance, as batch norm
    want = (x - mean) / np.sqrt(var + 1e-5) * scale[labels][:, None] + bias[labels][:, None]
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)
    stats = updated["batch_stats"]["BatchNorm_0"]
    np.testing.assert_allclose(stats["mean"], 0.1 * mean, rtol=1e-5)  # momentum 0.9 from 0
    # Inference: the running statistics, still the per-class affine part.
    run_mean, run_var = np.array([0.5, -1.0, 2.0]), np.array([4.0, 0.25, 1.0])
    eval_module = ConditionalBatchNorm(num_classes=3, use_running_average=True)
    stats = {"BatchNorm_0": {"mean": jnp.asarray(run_mean), "var": jnp.asarray(run_var)}}
    out = eval_module.apply(
        {"params": variables["params"], "batch_stats": stats}, jnp.asarray(x), labels
    )
    want = (x - run_mean) / np.sqrt(run_var + 1e-5) * scale[labels][:, None]
    np.testing.assert_allclose(out, want + bias[labels][:, None], rtol=1e-5, atol=1e-5)


def _leaky(v):
    return np.where(v > 0, v, 0.2 * v)


def test_projection_logit_of_the_mlp_discriminator_by_hand():
    d = gan.MLPDiscriminator(hidden=(5, 3), num_classes=4)
    x = np.random.default_rng(0).normal(size=(6, 2, 2, 1))
    labels = np.array([0, 1, 2, 3, 3, 1])
    params = d.init(jax.random.key(1), jnp.zeros((1, 2, 2, 1)), jnp.zeros((1,), jnp.int32))
    p = jax.tree.map(lambda v: np.asarray(v, np.float64), params["params"])
    assert p["Embed_0"]["embedding"].shape == (4, 3)  # one row per class, phi's width
    phi = x.reshape(6, -1)
    for name in ("Dense_0", "Dense_1"):
        phi = np.maximum(phi @ p[name]["kernel"] + p[name]["bias"], 0.0)
    psi = phi @ p["Dense_2"]["kernel"][:, 0] + p["Dense_2"]["bias"][0]
    want = psi + np.sum(p["Embed_0"]["embedding"][labels] * phi, axis=-1)
    got = d.apply(params, jnp.asarray(x, jnp.float32), jnp.asarray(labels))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_projection_logit_of_the_dcgan_discriminator_by_hand():
    # 8x8 input: one stride-2 5x5 conv (padding 2) -> [4, 4, 2], flatten = phi, Dense = psi.
    d = gan.DCGANDiscriminator(width=2, num_classes=3)
    x = np.random.default_rng(1).normal(size=(2, 8, 8, 1))
    labels = np.array([2, 0])
    variables = d.init(jax.random.key(2), jnp.zeros((1, 8, 8, 1)), jnp.zeros((1,), jnp.int32))
    p = jax.tree.map(lambda v: np.asarray(v, np.float64), variables["params"])
    kernel, conv_bias = p["Conv_0"]["kernel"], p["Conv_0"]["bias"]  # [5, 5, 1, 2]
    padded = np.pad(x[..., 0], ((0, 0), (2, 2), (2, 2)))
    feats = np.stack(
        [
            np.stack(
                [
                    signal.correlate2d(img, kernel[:, :, 0, o], mode="valid")[::2, ::2]
                    for o in range(2)
                ],
                axis=-1,
            )
            for img in padded
        ]
    )  # [2, 4, 4, 2]
    phi = _leaky(feats + conv_bias).reshape(2, -1)
    psi = phi @ p["Dense_0"]["kernel"][:, 0] + p["Dense_0"]["bias"][0]
    embed = p["Embed_0"]["embedding"]
    assert embed.shape == (3, 32)
    want = psi + np.sum(embed[labels] * phi, axis=-1)
    got = d.apply(variables, jnp.asarray(x, jnp.float32), jnp.asarray(labels), train=False)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_conditioning_parameters_and_shapes():
    z = jnp.zeros((2, 7))
    y = jnp.array([0, 4])
    x = jnp.zeros((2, 8, 8, 1))
    # cbn: every batch norm of G holds [K, C] scale and bias; the dense input is z alone.
    g = gan.DCGANGenerator((8, 8, 1), width=4, num_classes=5, conditioning="cbn")
    params = g.init(jax.random.key(0), z, y, train=False)["params"]
    cbn = {k: v for k, v in params.items() if k.startswith("ConditionalBatchNorm")}
    assert {k: v["scale"].shape for k, v in cbn.items()} == {
        "ConditionalBatchNorm_0": (5, 4 * 4 * 8),  # after the dense projection
        "ConditionalBatchNorm_1": (5, 4),
    }
    assert params["Dense_0"]["kernel"].shape == (7, 128)
    assert g.apply({"params": params, **_stats(g, z, y)}, z, y, train=False).shape == (2, 8, 8, 1)
    # concat: the one-hot label joins z (G) and the image channels (D).
    g = gan.DCGANGenerator((8, 8, 1), width=4, num_classes=5, conditioning="concat")
    assert g.init(jax.random.key(0), z, y, train=False)["params"]["Dense_0"]["kernel"].shape == (
        12,
        128,
    )
    d = gan.DCGANDiscriminator(width=4, num_classes=5, conditioning="concat")
    d_params = d.init(jax.random.key(0), x, y, train=False)["params"]
    assert d_params["Conv_0"]["kernel"].shape == (5, 5, 1 + 5, 4) and "Embed_0" not in d_params
    # Projection under spectral norm: the class embedding is normalised with the layers.
    d = gan.DCGANDiscriminator(width=4, num_classes=5, spectral_norm=True)
    stats = d.init(jax.random.key(0), x, y, train=False)["batch_stats"]
    paths = [jax.tree_util.keystr(k) for k, _ in jax.tree_util.tree_flatten_with_path(stats)[0]]
    assert any("Embed_0/embedding/u" in path for path in paths), paths
    # Labels are required by a conditional module and refused by an unconditional one.
    with pytest.raises(ValueError, match="needs labels"):
        d.init(jax.random.key(0), x, train=False)
    with pytest.raises(ValueError, match="unconditional"):
        gan.DCGANDiscriminator(width=4).init(jax.random.key(0), x, y, train=False)
    with pytest.raises(ValueError, match="use 'concat'"):
        gan.MLPGenerator(num_classes=5, conditioning="cbn").init(jax.random.key(0), z, y)


def _stats(module, z, y):
    return {"batch_stats": module.init(jax.random.key(0), z, y, train=False)["batch_stats"]}


def _family(preset="tiny", **overrides):
    config = cgan.get_config(preset)
    for key, value in overrides.items():
        section, name = key.split(".")
        config[section][name] = value
    return config, build_family(config, DIGITS.images.shape[1:], DIGITS.num_classes)


def test_real_labels_flow_through_the_batch_into_d():
    _, family = _family()
    assert family.conditional and family.num_classes == 10 and family.name == "cgan"
    state = family.init_state(jax.random.key(0))
    step = jax.jit(family.make_train_step(None))
    images = scale_images(DIGITS.images[:8], family.data_scale)
    labels = jnp.asarray(DIGITS.labels[:8])
    _, m1 = step(state, {"image": images, "label": labels}, jax.random.key(1))
    state = family.init_state(jax.random.key(0))
    _, m2 = step(state, {"image": images, "label": (labels + 3) % 10}, jax.random.key(1))
    # Same images and noise, other labels: D's verdict on the real batch changes, the fake
    # half (labels drawn in the step) does not.
    assert abs(float(m1["d_loss_real"]) - float(m2["d_loss_real"])) > 1e-6
    np.testing.assert_allclose(m1["d_loss_fake"], m2["d_loss_fake"], rtol=1e-6)


def test_a_tiny_run_then_sample_the_asked_classes(tmp_path):
    config = cgan.get_config("tiny")
    state = train_from_config(config, tmp_path)
    assert int(state.step) == 4
    assert (tmp_path / "samples" / "step_0000004.png").is_file()
    _, family = _family()
    labels = jnp.array([3, 3, 7, 7])
    images, drawn = family.sample(state, jax.random.key(0), 4, labels)
    np.testing.assert_array_equal(drawn, labels)
    assert images.shape == (4, 8, 8, 1) and bool(jnp.all(jnp.isfinite(images)))
    # The class reaches the generator: one z, two classes, two images.
    z = jnp.zeros((2, config.model.z_dim))
    pair = family.decode(state, z, jnp.array([3, 7]))
    assert float(jnp.abs(pair[0] - pair[1]).max()) > 0
    _, balanced = family.sample(state, jax.random.key(0), 12)
    np.testing.assert_array_equal(balanced, np.arange(12) % 10)


@pytest.mark.parametrize(
    "preset, overrides",
    [
        ("concat,tiny", {"model.r1_weight": 1.0}),
        ("mlp,tiny", {"model.loss": "wgan", "model.gp_weight": 10.0, "model.n_critic": 2}),
    ],
    ids=["concat-r1", "mlp-wgan-gp-ncritic2"],
)
def test_other_variants_train_with_the_gan_options(preset, overrides):
    config, family = _family(preset, **overrides)
    n = config.train.batch_size * family.batch_multiplier
    batch = {
        "image": scale_images(DIGITS.images[:n], family.data_scale),
        "label": jnp.asarray(DIGITS.labels[:n]),
    }
    state = family.init_state(jax.random.key(0))
    step = jax.jit(family.make_train_step(None))
    for _ in range(2):
        state, metrics = step(state, batch, jax.random.key(1))
    metrics = jax.device_get(metrics)
    assert all(np.isfinite(v) for v in metrics.values()), metrics
    assert metrics.get("r1", 0) > 0 or metrics.get("gp", 0) > 0
    assert int(state.step) == 2


SCRIPT = textwrap.dedent(
    """
    import json, sys
    import jax, numpy as np
    from experiments import cgan
    from genimg.train.loop import train_from_config

    assert jax.local_device_count() == 4, jax.devices()
    results = {}
    for n in (1, 4):
        config = cgan.get_config("tiny")
        config.train.update(steps=3, log_every=1, num_devices=n)
        state = train_from_config(config, f"{sys.argv[1]}/dev{n}")
        lines = open(f"{sys.argv[1]}/dev{n}/metrics.jsonl").read().splitlines()
        results[n] = {
            "metrics": [json.loads(ln) for ln in lines],
            "g": [np.asarray(x).ravel().tolist() for x in jax.tree.leaves(state.g_params)],
            "d": [np.asarray(x).ravel().tolist() for x in jax.tree.leaves(state.d_params)],
        }
    print(json.dumps(results))
    """
)


def test_four_devices_match_one(tmp_path):
    res = run_on_fake_devices(SCRIPT, str(tmp_path))
    one, four = res["1"], res["4"]
    for m1, m4 in zip(one["metrics"], four["metrics"], strict=True):
        for key in ("d_loss", "g_loss", "d_real", "d_fake", "g_grad_norm", "d_grad_norm"):
            assert abs(m1[key] - m4[key]) <= 1e-4 * max(1.0, abs(m1[key])), (key, m1, m4)
    for part in ("g", "d"):
        for a, b in zip(one[part], four[part], strict=True):
            a, b = np.asarray(a), np.asarray(b)
            assert abs(a - b).max() <= 1e-4 * max(1.0, abs(a).max()), part

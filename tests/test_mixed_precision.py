"""model.dtype=bfloat16: parameters, optimizer state and losses stay float32, the networks
compute in bfloat16, and 50 train steps track the float32 run.

Tolerance (stated in the README): over steps 41-50 the mean of each loss is within 5 % (or
0.05 absolute, for losses near 0) of the float32 run's. Both runs start from the same float32
parameters and see the same batches and noise. (The parameters themselves drift apart: Adam
takes full-size steps on the sign of tiny gradients, which rounding flips, so a parameter
distance is not a useful tolerance.)"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import autoencoder, classifier, dcgan, vae
from genimg.data import load, scale_images
from genimg.models import precision
from genimg.models.gan import DCGANGenerator
from genimg.train.family import build_family

STEPS = 50
DIGITS = load("digits", "train")


def _run(module, preset: str, dtype: str, image_size: int = 0):
    config = module.get_config(preset)
    config.model.dtype = dtype
    config.train.batch_size = 16
    images = DIGITS.images
    if image_size:
        shape = (len(images), image_size, image_size, 1)
        resized = jax.image.resize(images.astype(np.float32), shape, "bilinear")
        images = np.asarray(resized).round().clip(0, 255).astype(np.uint8)
    family = build_family(config, images.shape[1:], 10)
    n = config.train.batch_size * family.batch_multiplier
    state = jax.jit(family.init_state)(jax.random.key(0))
    step = jax.jit(family.make_train_step(None))
    losses = []
    for i in range(STEPS):
        idx = np.arange(i * n, (i + 1) * n) % len(images)
        batch = {
            "image": scale_images(images[idx], family.data_scale),
            "label": jnp.asarray(DIGITS.labels[idx]),
        }
        state, metrics = step(state, batch, jax.random.key(i))
        losses.append({k: float(v) for k, v in metrics.items() if "loss" in k or k == "elbo"})
    return state, losses


def _params(state):
    return [x for x in jax.tree.leaves(state) if jnp.issubdtype(x.dtype, jnp.floating)]


@pytest.mark.parametrize(
    "module, preset, image_size",
    [(vae, "tiny", 0), (autoencoder, "tiny", 0), (classifier, "tiny", 0), (dcgan, "tiny", 28)],
    ids=["vae", "autoencoder", "classifier", "dcgan"],
)
def test_bfloat16_tracks_float32_for_50_steps(module, preset, image_size):
    state32, losses32 = _run(module, preset, "float32", image_size)
    state16, losses16 = _run(module, preset, "bfloat16", image_size)
    # float32 storage everywhere: parameters, optimizer moments, batch statistics.
    assert {x.dtype for x in _params(state16)} == {jnp.dtype(jnp.float32)}
    for key in losses32[0]:
        a = np.mean([m[key] for m in losses32[-10:]])
        b = np.mean([m[key] for m in losses16[-10:]])
        assert abs(a - b) <= max(0.05 * abs(a), 0.05), (key, a, b)
    # ... and the runs did differ: the bfloat16 one really computed in bfloat16.
    p32 = np.concatenate([np.ravel(x) for x in _params(state32)])
    p16 = np.concatenate([np.ravel(x) for x in _params(state16)])
    assert not np.array_equal(p16, p32)


def test_the_wrapped_module_computes_in_bfloat16_and_returns_float32():
    g = DCGANGenerator(image_shape=(28, 28, 1), width=8)
    wrapped = precision.wrap(g, "bfloat16")
    z = jnp.ones((2, 16))
    variables = wrapped.init(jax.random.key(0), z, train=False)
    assert {x.dtype for x in jax.tree.leaves(variables)} == {jnp.dtype(jnp.float32)}
    jaxpr = str(jax.make_jaxpr(lambda v: wrapped.apply(v, z, train=False))(variables))
    assert "bf16" in jaxpr
    out = wrapped.apply(variables, z, train=False)
    assert out.dtype == jnp.float32
    np.testing.assert_allclose(out, g.apply(variables, z, train=False), atol=2e-2)
    assert precision.wrap(g, "float32") is g  # the default path is the module itself
    with pytest.raises(ValueError, match="unknown model.dtype 'float16'"):
        precision.wrap(g, "float16")

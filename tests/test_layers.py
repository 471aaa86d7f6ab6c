"""Tests for genimg.models.layers: ConvTranspose against flax, numpy (float64) and torch's
ConvTranspose2d (its float64 outputs stored in tests/data/reference_conv_transpose.npz by
tools/make_reference_goldens.py, so no torch is needed here)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from genimg.models import layers
from tools import make_reference_goldens as goldens

# (k, s, p, op): the shapes the models use, then ones whose output is not s * input.
MODEL_CONFIGS = [(5, 2, 2, 1), (5, 1, 2, 0), (3, 2, 1, 1), (4, 2, 1, 0)]
ODD_CONFIGS = [(5, 2, 2, 0), (3, 2, 0, 0), (3, 2, 3, 0), (4, 3, 1, 2)]


def _flax_reference(features, k, s, p, op):
    pads = (layers.conv_transpose_padding(k, p, op),) * 2
    return nn.ConvTranspose(features, (k, k), strides=(s, s), padding=pads, transpose_kernel=False)


def _numpy_conv_transpose(x, w_torch, bias, s, p, op):
    """torch ConvTranspose2d by its definition, float64: out[i*s - p + a] += x[i] * w[a].

    x: [B, H, W, Cin] (NHWC); w_torch: [Cin, Cout, k, k] (torch layout).
    """
    b, h, w, _ = x.shape
    _, cout, k, _ = w_torch.shape
    ho = layers.conv_transpose_out(h, k, s, p, op)
    wo = layers.conv_transpose_out(w, k, s, p, op)
    full = np.zeros((b, (h - 1) * s + k + op, (w - 1) * s + k + op, cout))
    for i in range(h):
        for j in range(w):
            # [B, Cin] x [Cin, Cout, k, k] -> [B, k, k, Cout]
            patch = np.einsum("bc,cdyx->byxd", x[:, i, j], w_torch)
            full[:, i * s : i * s + k, j * s : j * s + k] += patch
    return full[:, p : p + ho, p : p + wo] + bias


def _init(module, x, seed=0):
    variables = module.init(jax.random.key(seed), x)
    # A non-zero bias so that a misplaced bias would show.
    return jax.tree.map(lambda v: v + 0.1 * jnp.arange(v.size).reshape(v.shape) / v.size, variables)


@pytest.mark.parametrize(
    "config, cin, impl",
    [(c, cin, "subpixel") for c in MODEL_CONFIGS + ODD_CONFIGS for cin in (1, 3)]
    + [(c, 3, impl) for c in MODEL_CONFIGS[:2] for impl in ("transpose", "auto")],
)
def test_matches_flax_forward_and_grads(config, cin, impl):
    k, s, p, op = config
    size = (5, 6)  # odd height, even width
    x = jax.random.normal(jax.random.key(1), (2, *size, cin))
    ours = layers.ConvTranspose(4, k, s, p, op, impl=impl)
    ref = _flax_reference(4, k, s, p, op)
    variables = _init(ref, x)
    # Same parameter names and shapes: checkpoints are interchangeable.
    assert jax.eval_shape(ours.init, jax.random.key(0), x) == jax.eval_shape(
        ref.init, jax.random.key(0), x
    )
    out_shape = (2, *(layers.conv_transpose_out(n, k, s, p, op) for n in size), 4)
    cot = jax.random.normal(jax.random.key(2), out_shape)

    @functools.partial(jax.jit, static_argnums=0)
    def value_and_grads(module, v, x):  # output and d<output, cot>/d(params, x)
        loss = lambda v, x: jnp.sum(module.apply(v, x) * cot)
        return module.apply(v, x), jax.grad(loss, argnums=(0, 1))(v, x)

    (y, g), (y_ref, g_ref) = value_and_grads(ours, variables, x), value_and_grads(ref, variables, x)
    assert y.shape == out_shape
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-6)
    for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(g_ref), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("impl", ["subpixel", "transpose"])
@pytest.mark.parametrize("config", MODEL_CONFIGS + ODD_CONFIGS)
def test_matches_numpy_definition_with_torch_weights(config, impl):
    k, s, p, op = config
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 5, 6, 3))
    w_torch = rng.normal(size=(3, 4, k, k))  # torch layout [Cin, Cout, k, k]
    bias = rng.normal(size=(4,))
    variables = {"params": {"kernel": layers.kernel_from_torch(w_torch), "bias": bias}}
    y = layers.ConvTranspose(4, k, s, p, op, impl=impl).apply(
        jax.tree.map(jnp.float32, variables), jnp.float32(x)
    )
    np.testing.assert_allclose(
        y, _numpy_conv_transpose(x, w_torch, bias, s, p, op), rtol=1e-5, atol=1e-5
    )


@pytest.fixture(scope="module")
def torch_golden():
    return goldens.load(goldens.CONV_TRANSPOSE_FILE)


@pytest.mark.parametrize("config", MODEL_CONFIGS + ODD_CONFIGS)
def test_matches_torch(config, torch_golden):
    k, s, p, op = config
    key = goldens.conv_transpose_key(config)
    assert key in torch_golden, f"no golden for {key}: rerun python -m tools.make_reference_goldens"
    x, w_torch, bias = goldens.conv_transpose_inputs(config)
    variables = {
        "params": {
            "kernel": jnp.float32(layers.kernel_from_torch(w_torch)),
            "bias": jnp.float32(bias),
        }
    }
    y = layers.ConvTranspose(4, k, s, p, op, impl="subpixel").apply(variables, jnp.float32(x))
    np.testing.assert_allclose(y, torch_golden[key], rtol=1e-5, atol=1e-5)


def test_subpixel_kernel_is_a_reindexing_of_the_kernel():
    # k=5, s=2, p=2, op=1 (lo=2): a 3x3 conv to 4*Cout; phase r uses taps a = 2*d + 2 - r.
    kernel = jnp.arange(25.0).reshape(5, 5, 1, 1)
    w = layers.subpixel_kernel(kernel, stride=2, lo=2)
    assert w.shape == (3, 3, 1, 4)
    taps = {0: [0, 2, 4], 1: [-1, 1, 3]}  # -1: no tap (zero)
    for ry in range(2):
        for rx in range(2):
            expected = np.array(
                [[a * 5 + b if a >= 0 and b >= 0 else 0 for b in taps[rx]] for a in taps[ry]]
            )
            np.testing.assert_array_equal(w[:, :, 0, ry * 2 + rx], expected)


def test_no_bias_and_param_count():
    x = jnp.zeros((1, 7, 7, 8))
    variables = layers.ConvTranspose(16, 5, 2, 2, 1, use_bias=False).init(jax.random.key(0), x)
    assert list(variables["params"]) == ["kernel"]
    assert variables["params"]["kernel"].shape == (5, 5, 8, 16)


def test_jit_and_dtype():
    x = jnp.ones((2, 4, 4, 3))
    module = layers.ConvTranspose(2, 3, 2, 1, 1, dtype=jnp.bfloat16)
    variables = module.init(jax.random.key(0), x)
    y = jax.jit(module.apply)(variables, x)
    assert y.dtype == jnp.bfloat16 and y.shape == (2, 8, 8, 2)
    assert variables["params"]["kernel"].dtype == jnp.float32


def test_rejects_bad_arguments():
    x = jnp.ones((1, 4, 4, 1))
    with pytest.raises(ValueError, match="output_padding"):
        layers.ConvTranspose(2, 3, 2, 1, output_padding=2).init(jax.random.key(0), x)
    with pytest.raises(ValueError, match="impl"):
        layers.ConvTranspose(2, impl="fft").init(jax.random.key(0), x)


def test_helpers():
    assert layers.conv_transpose_padding(5, 2, 1) == (2, 3)
    assert layers.conv_transpose_out(7, 5, 2, 2, 1) == 14
    assert layers.conv_out(28, 5, 2, 2) == 14
    x = jnp.arange(2 * 2 * 4.0).reshape(1, 2, 1, 8)  # 2 phases x 2 phases x C=2
    y = layers.depth_to_space(x, 2)
    assert y.shape == (1, 4, 2, 2)
    np.testing.assert_array_equal(y[0, :2, :, 0], [[0, 2], [4, 6]])  # row 0 of input

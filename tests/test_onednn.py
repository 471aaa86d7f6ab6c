"""The oneDNN conv backend (genimg/ops/onednn.py) against lax.conv_general_dilated.

Tests that need the backend skip with the reason when it is not built or installed, and fail
instead when GENIMG_REQUIRE_ONEDNN=1 (CI sets it where the backend must work).
"""

import functools
import json
import os

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from genimg.errors import ConfigError
from genimg.models import gan
from genimg.models.autoencoder import make_trunks
from genimg.models.layers import ConvTranspose, kernel_from_torch
from genimg.ops import onednn
from tests.fake_devices import run_on_fake_devices
from tests.test_layers import MODEL_CONFIGS, ODD_CONFIGS
from tests.test_layers import _numpy_conv_transpose as numpy_conv_transpose

NHWC = ("NHWC", "HWIO", "NHWC")


@pytest.fixture
def backend():
    reason = onednn.unavailable_reason()
    if reason is not None:
        if os.environ.get("GENIMG_REQUIRE_ONEDNN", "") == "1":
            pytest.fail(f"GENIMG_REQUIRE_ONEDNN=1 but {reason}")
        pytest.skip(reason)


def _ref(x, w, strides, padding):
    return lax.conv_general_dilated(
        x, w, strides, padding, dimension_numbers=NHWC, precision=lax.Precision.HIGHEST
    )


def _close(actual, expected, rtol=1e-4, err_msg=""):
    """Max error within rtol of the largest magnitude (sums of many products: scale-relative)."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape
    scale = float(np.max(np.abs(expected))) + 1e-6
    np.testing.assert_allclose(actual, expected, rtol=0, atol=rtol * scale, err_msg=err_msg)


# (x shape, w shape, strides, padding): the models' convs at small batch, then odd ones.
CASES = {
    "dcgan_d1": ((2, 28, 28, 1), (5, 5, 1, 64), (2, 2), ((2, 2), (2, 2))),
    "dcgan_d2": ((2, 14, 14, 64), (5, 5, 64, 128), (2, 2), ((2, 2), (2, 2))),
    "dcgan_g_s1": ((2, 7, 7, 256), (5, 5, 256, 128), (1, 1), ((2, 2), (2, 2))),
    "dcgan_g_subpixel": ((2, 7, 7, 128), (3, 3, 128, 256), (1, 1), ((1, 1), (1, 1))),
    "dcgan_g_subpixel_out": ((2, 14, 14, 64), (3, 3, 64, 4), (1, 1), ((1, 1), (1, 1))),
    "vae_enc1": ((2, 28, 28, 1), (3, 3, 1, 32), (2, 2), ((1, 1), (1, 1))),
    "vae_enc2": ((2, 14, 14, 32), (3, 3, 32, 64), (2, 2), ((1, 1), (1, 1))),
    "vae_dec_subpixel": ((2, 7, 7, 64), (2, 2, 64, 128), (1, 1), ((0, 1), (0, 1))),
    "vae_dec_subpixel_out": ((2, 14, 14, 32), (2, 2, 32, 4), (1, 1), ((0, 1), (0, 1))),
    "asymmetric": ((3, 9, 7, 3), (3, 2, 3, 5), (2, 1), ((0, 1), (2, 0))),
    "batch1_cin1_nonsquare": ((1, 10, 6, 1), (4, 3, 1, 2), (3, 2), ((1, 2), (0, 1))),
    "valid_unread_rows": ((2, 28, 28, 3), (3, 3, 3, 8), (2, 2), ((0, 0), (0, 0))),
    "one_output_pixel": ((1, 3, 3, 2), (3, 3, 2, 3), (1, 1), ((0, 0), (0, 0))),
}


def test_forward_and_both_gradients_match_lax(backend):
    def outputs(conv, x, w, g, strides, padding):
        y, vjp = jax.vjp(lambda x, w: conv(x, w, strides, padding), x, w)
        return (y, *vjp(g))

    rng = np.random.default_rng(0)  # numpy draws: threefry would dominate the compile time
    for case, (x_shape, w_shape, strides, padding) in CASES.items():
        x = rng.standard_normal(x_shape, np.float32)
        w = rng.standard_normal(w_shape, np.float32)
        y_shape = jax.eval_shape(functools.partial(_ref, strides=strides, padding=padding), x, w)
        g = rng.standard_normal(y_shape.shape, np.float32)
        f = jax.jit(outputs, static_argnums=(0, 4, 5))
        got, want = f(onednn.conv, x, w, g, strides, padding), f(_ref, x, w, g, strides, padding)
        for a, b, name in zip(got, want, ("y", "dx", "dw"), strict=True):
            assert a.dtype == jnp.float32, (case, name)
            _close(a, b, err_msg=f"{case}: {name}")


def test_second_order_gradients_match_lax(backend):
    # What a gradient penalty (WGAN-GP, R1) does: differentiate a function of dL/dx.
    x = jax.random.normal(jax.random.key(1), (2, 9, 9, 3))
    w = jax.random.normal(jax.random.key(2), (3, 3, 3, 4))
    strides, padding = (2, 2), ((1, 1), (1, 1))

    def penalty(conv):
        def f(w):
            dx = jax.grad(lambda x: jnp.sum(jnp.tanh(conv(x, w, strides, padding))))(x)
            return jnp.sum(dx**2)

        return jax.value_and_grad(f)(w)

    (v, dw), (v_ref, dw_ref) = jax.jit(lambda: (penalty(onednn.conv), penalty(_ref)))()
    _close(v, v_ref)
    _close(dw, dw_ref)


def test_drop_in_uses_onednn_only_where_supported(backend):
    x = jax.random.normal(jax.random.key(3), (2, 8, 8, 4))
    w = jax.random.normal(jax.random.key(4), (3, 3, 4, 6))

    def jaxpr(*args, **kw):
        return str(jax.make_jaxpr(lambda: onednn.conv_general_dilated(*args, **kw))())

    # Supported, including string padding and flax's ConvDimensionNumbers form.
    dn = lax.ConvDimensionNumbers((0, 3, 1, 2), (3, 2, 0, 1), (0, 3, 1, 2))
    for padding in ("SAME", "VALID", ((1, 0), (2, 1))):
        for dims in (NHWC, dn):
            assert "genimg_onednn_conv_fwd" in jaxpr(x, w, (2, 1), padding, dimension_numbers=dims)
            got = onednn.conv_general_dilated(x, w, (2, 1), padding, dimension_numbers=dims)
            _close(got, lax.conv_general_dilated(x, w, (2, 1), padding, dimension_numbers=NHWC))

    # Unsupported: each falls back to lax and gives lax's result.
    w2 = jax.random.normal(jax.random.key(5), (3, 3, 2, 6))
    fallbacks = {
        "rhs_dilation": ((x, w, (1, 1), "SAME"), dict(rhs_dilation=(2, 2))),
        "lhs_dilation": ((x, w, (1, 1), ((1, 1), (1, 1))), dict(lhs_dilation=(2, 2))),
        "groups": ((x, w2, (1, 1), "SAME"), dict(feature_group_count=2)),
        "bf16": ((x.astype(jnp.bfloat16), w.astype(jnp.bfloat16), (1, 1), "SAME"), {}),
        "default_nchw": ((x.transpose(0, 3, 1, 2), w.transpose(3, 2, 0, 1), (1, 1), "SAME"), {}),
    }
    for name, (args, kw) in fallbacks.items():
        kw = dict(kw)
        if name not in ("default_nchw",):
            kw["dimension_numbers"] = NHWC
        assert "genimg_onednn" not in jaxpr(*args, **kw), name
        np.testing.assert_array_equal(
            onednn.conv_general_dilated(*args, **kw), lax.conv_general_dilated(*args, **kw)
        )


def test_negative_padding_is_a_crop(backend):
    # XLA's CPU conv reads past the input for padding ((-1, 1), ...); the drop-in crops first,
    # on the oneDNN path and on the lax fallback (NCHW here) alike.
    x = jax.random.normal(jax.random.key(3), (2, 8, 8, 4))
    w = jax.random.normal(jax.random.key(4), (3, 3, 4, 6))
    want = lax.conv_general_dilated(
        x[:, 1:, :7], w, (1, 1), ((0, 1), (2, 0)), dimension_numbers=NHWC
    )
    pads = ((-1, 1), (2, -1))
    got = onednn.conv_general_dilated(x, w, (1, 1), pads, dimension_numbers=NHWC)
    _close(got, want)
    nchw = onednn.conv_general_dilated(
        x.transpose(0, 3, 1, 2), w.transpose(3, 2, 0, 1), (1, 1), pads
    )
    _close(nchw.transpose(0, 2, 3, 1), want)


def test_one_trace_per_shape(backend):
    w = jax.random.normal(jax.random.key(6), (3, 3, 2, 4))

    @jax.jit
    @chex.assert_max_traces(n=1)
    def f(x, w):
        return jax.grad(lambda w: jnp.sum(onednn.conv(x, w, (1, 1), ((1, 1), (1, 1))) ** 2))(w)

    def f_ref(x, w):
        return jax.grad(lambda w: jnp.sum(_ref(x, w, (1, 1), ((1, 1), (1, 1))) ** 2))(w)

    for i in range(3):
        x = jax.random.normal(jax.random.key(i), (2, 6, 6, 2))
        _close(f(x, w), f_ref(x, w))


def test_vmap_runs_per_element(backend):
    w = jax.random.normal(jax.random.key(6), (3, 3, 2, 4))
    xs = jax.random.normal(jax.random.key(7), (3, 2, 6, 6, 2))
    conv = lambda x: onednn.conv(x, w, (2, 2), ((0, 1), (0, 1)))
    _close(jax.vmap(conv)(xs), jnp.stack([_ref(x, w, (2, 2), ((0, 1), (0, 1))) for x in xs]))


def test_dcgan_step_losses_and_gradients_match_xla(backend):
    import optax

    from genimg.families.gan import create_gan_state, make_gan_train_step

    real = jax.random.uniform(jax.random.key(9), (4, 28, 28, 1), minval=-1.0, maxval=1.0)

    def state_and_step(backend_name):
        g = gan.DCGANGenerator((28, 28, 1), width=8, conv_backend=backend_name)
        d = gan.DCGANDiscriminator(width=8, conv_backend=backend_name)
        sgd = optax.sgd(1.0)  # new params = params - grads: the step's gradients, exactly
        init = lambda: create_gan_state(g, d, sgd, sgd, jax.random.key(12), 16, (28, 28, 1))
        state = jax.jit(init)()  # one compile instead of dozens of eager ones
        return state, make_gan_train_step(g, d, z_dim=16, ema_decay=0.0)

    (state, step), (state_x, step_x) = state_and_step("onednn"), state_and_step("xla")
    # Same parameters and statistics whichever backend builds them.
    chex.assert_trees_all_equal(state.g_params, state_x.g_params)
    chex.assert_trees_all_equal(state.d_params, state_x.d_params)
    chex.assert_trees_all_equal(state.g_batch_stats, state_x.g_batch_stats)

    batch, rng = {"image": real}, jax.random.key(13)
    (new, metrics), (new_x, metrics_x) = jax.jit(
        lambda: (step(state, batch, rng), step_x(state_x, batch, rng))
    )()
    assert set(metrics) == set(metrics_x)
    for k in metrics_x:  # d_loss, g_loss, logits, gradient and parameter norms
        np.testing.assert_allclose(metrics[k], metrics_x[k], rtol=1e-4, atol=1e-6, err_msg=k)
    for name in ("g_params", "d_params"):
        grads = jax.tree.map(jnp.subtract, getattr(state, name), getattr(new, name))
        grads_x = jax.tree.map(jnp.subtract, getattr(state_x, name), getattr(new_x, name))
        for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(grads_x), strict=True):
            _close(a, b)


def test_conv_vae_trunks_match_xla(backend):
    x = jax.random.uniform(jax.random.key(14), (2, 28, 28, 1))
    outs = []
    for name in ("xla", "onednn"):
        enc, dec = make_trunks("conv", (28, 28, 1), 8, 1, conv_backend=name)
        params = jax.jit(
            lambda enc=enc, dec=dec: (
                enc.init(jax.random.key(15), x)["params"],
                dec.init(jax.random.key(16), jnp.zeros((1, 8)))["params"],
            )
        )()

        def loss(params, enc=enc, dec=dec):
            return jnp.sum(dec.apply({"params": params[1]}, enc.apply({"params": params[0]}, x)))

        outs.append((params, jax.jit(jax.value_and_grad(loss))(params)))
    chex.assert_trees_all_equal(outs[0][0], outs[1][0])
    for a, b in zip(jax.tree.leaves(outs[1][1]), jax.tree.leaves(outs[0][1]), strict=True):
        _close(a, b)


_PMAP_SCRIPT = """
import json, jax, jax.numpy as jnp, numpy as np
from jax import lax
from genimg.ops import onednn
x = jax.random.normal(jax.random.key(0), (jax.device_count(), 2, 8, 8, 3))
w = jax.random.normal(jax.random.key(1), (3, 3, 3, 4))
pad = ((1, 1), (1, 1))
def loss(w, x, conv):
    return jax.lax.pmean(jnp.sum(conv(x, w, (2, 2), pad) ** 2), "d")
dims = ("NHWC", "HWIO", "NHWC")
ref = lambda x, w, s, p: lax.conv_general_dilated(x, w, s, p, dimension_numbers=dims)
f = lambda conv: jax.pmap(jax.grad(lambda w, x: loss(w, x, conv)), "d", in_axes=(None, 0))(w, x)
got, want = f(onednn.conv), f(ref)
err = float(jnp.max(jnp.abs(got - want)) / jnp.max(jnp.abs(want)))
print(json.dumps({"devices": jax.device_count(), "rel_err": err}))
"""


def test_pmap_on_fake_devices(backend):
    out = run_on_fake_devices(_PMAP_SCRIPT, devices=4, timeout=120)
    assert out["devices"] == 4
    assert out["rel_err"] < 1e-5, json.dumps(out)


@pytest.mark.parametrize("config", MODEL_CONFIGS + ODD_CONFIGS)
def test_native_conv_transpose_is_onednn_backward_data(backend, config):
    # ConvTranspose(impl="native"): oneDNN's backward-data where it fits (s > 1, p >= op, p < k,
    # >= 4 output channels), else the sub-pixel form; the same function either way, against
    # torch's definition in float64 and lax's transposed conv up to second-order gradients.
    k, s, p, op = config
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 5, 6, 3))
    w_torch, bias = rng.normal(size=(3, 6, k, k)), rng.normal(size=(6,))  # torch [Cin, Cout, k, k]
    variables = {"params": {"kernel": kernel_from_torch(w_torch), "bias": bias}}
    variables, x32 = jax.tree.map(jnp.float32, (variables, x))
    native = ConvTranspose(6, k, s, p, op, impl="native", conv_backend="onednn")
    ref = ConvTranspose(6, k, s, p, op, impl="transpose")
    fits = s > 1 and p >= op and p < k
    jaxpr = str(jax.make_jaxpr(native.apply)(variables, x32))
    assert ("genimg_onednn_conv_bwd_data" in jaxpr) == fits, jaxpr
    _close(native.apply(variables, x32), numpy_conv_transpose(x, w_torch, bias, s, p, op))

    cot = jax.random.normal(jax.random.key(1), native.apply(variables, x32).shape)

    def grads(module):
        loss = lambda v, x: jnp.sum(module.apply(v, x) * cot)
        dx_norm = lambda v: jnp.sum(jax.grad(loss, argnums=1)(v, x32) ** 2)  # a penalty's shape
        return jax.grad(loss, argnums=(0, 1))(variables, x32), jax.grad(dx_norm)(variables)

    for a, b in zip(jax.tree.leaves(grads(native)), jax.tree.leaves(grads(ref)), strict=True):
        _close(a, b)


def test_auto_conv_transpose_is_native_under_onednn_only_where_it_fits(backend):
    x = jnp.ones((2, 7, 7, 8))

    def jaxpr(module):
        return str(jax.make_jaxpr(lambda: module.init_with_output(jax.random.key(0), x))())

    # The DCGAN's and conv VAE's hidden upsampling layers; their 1-channel output layers and
    # every layer under the XLA backend stay sub-pixel.
    assert "conv_bwd_data" in jaxpr(ConvTranspose(64, 5, 2, 2, 1, conv_backend="onednn"))
    assert "conv_bwd_data" in jaxpr(ConvTranspose(32, 3, 2, 1, 1, conv_backend="onednn"))
    assert "conv_bwd_data" not in jaxpr(ConvTranspose(1, 5, 2, 2, 1, conv_backend="onednn"))
    assert "genimg_onednn" not in jaxpr(ConvTranspose(64, 5, 2, 2, 1, conv_backend="xla"))
    assert "genimg_onednn" not in jaxpr(ConvTranspose(64, 5, 2, 2, 1, impl="native"))


def test_conv_input_grad_checks_its_shapes(backend):
    dy, w = jnp.ones((1, 4, 4, 6)), jnp.ones((3, 3, 2, 6))
    got = onednn.conv_input_grad(dy, w, (1, 8, 8, 2), (2, 2), ((1, 0), (1, 0)))
    want = jax.vjp(lambda x: _ref(x, w, (2, 2), ((1, 0), (1, 0))), jnp.zeros((1, 8, 8, 2)))[1](dy)
    _close(got, want[0])
    with pytest.raises(ValueError, match=r"do not fit x \(1, 9, 9, 2\)"):
        onednn.conv_input_grad(dy, w, (1, 9, 9, 2), (2, 2), ((1, 1), (1, 1)))


def test_bad_shapes_give_an_error_not_a_crash(backend):
    x, w = jnp.ones((1, 8, 8, 2)), jnp.ones((3, 3, 2, 4))
    strides, padding = (1, 1), ((1, 1), (1, 1))
    with pytest.raises(Exception, match="output size does not match"):
        jax.block_until_ready(onednn._call("fwd", (1, 5, 8, 4), x, w, strides, padding))
    with pytest.raises(Exception, match="channel or batch sizes do not match"):
        jax.block_until_ready(onednn._call("bwd_weights", (3, 3, 2, 4), x, x, strides, padding))


def test_unknown_and_unavailable_backends_fail_with_one_line(monkeypatch):
    with pytest.raises(ValueError, match=r"unknown conv_backend 'cudnn'.*'xla', 'onednn'"):
        gan.DCGANDiscriminator(conv_backend="cudnn").init(
            jax.random.key(0), jnp.zeros((1, 28, 28, 1))
        )
    with pytest.raises(ValueError, match="unknown conv_backend"):
        make_trunks("conv", (28, 28, 1), 8, 1, conv_backend="cudnn")

    monkeypatch.setattr(onednn, "_state", {"error": "libdnnl.so.3 not found"})
    assert not onednn.is_available()
    reason = onednn.unavailable_reason()
    assert "\n" not in reason and "model.conv_backend=xla" in reason, reason
    x, w = jnp.zeros((1, 4, 4, 1)), jnp.zeros((3, 3, 1, 2))
    with pytest.raises(ConfigError, match="oneDNN conv backend unavailable: libdnnl"):
        onednn.conv(x, w)
    with pytest.raises(ConfigError, match="oneDNN conv backend unavailable"):
        ConvTranspose(2, conv_backend="onednn").init(jax.random.key(0), x)
    # The drop-in quietly computes with lax when the backend is missing.
    y = onednn.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=NHWC)
    assert "genimg_onednn" not in str(
        jax.make_jaxpr(
            lambda: onednn.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=NHWC)
        )()
    )
    assert y.shape == (1, 4, 4, 2)


@pytest.mark.parametrize(
    "system, machine, fix",
    [
        ("linux", "x86_64", "pip install -e '.[onednn]'"),
        ("darwin", "arm64", "needs Linux x86-64 (oneDNN has no wheels for darwin arm64)"),
        ("win32", "AMD64", "needs Linux x86-64"),
        ("linux", "aarch64", "needs Linux x86-64"),
    ],
)
def test_unavailable_backend_names_the_fix_for_the_platform(monkeypatch, system, machine, fix):
    monkeypatch.setattr(onednn, "_state", {"error": "the extension was not built"})
    monkeypatch.setattr(onednn.sys, "platform", system)
    monkeypatch.setattr(onednn.platform, "machine", lambda: machine)
    reason = onednn.unavailable_reason()
    assert fix in reason and "model.conv_backend=xla" in reason and "\n" not in reason


def test_experiment_asking_for_an_unavailable_backend_fails_before_writing(monkeypatch, tmp_path):
    """`--config.model.conv_backend=onednn` where the backend is missing: one ConfigError line
    (the CLI prints it as `error: ...`), nothing written."""
    from experiments import dcgan
    from genimg.train.loop import train_from_config

    monkeypatch.setattr(onednn, "_state", {"error": "the extension was not built"})
    config = dcgan.get_config("tiny")
    config.data.source = "digits"
    config.model.conv_backend = "onednn"
    workdir = tmp_path / "run"
    with pytest.raises(ConfigError) as excinfo:
        train_from_config(config, workdir)
    message = str(excinfo.value)
    assert "\n" not in message and "oneDNN conv backend unavailable" in message, message
    assert "model.conv_backend=xla" in message
    assert not workdir.exists()

"""`model.conv_backend="auto"`, the configs' default: oneDNN on CPU where it is available, XLA
elsewhere, chosen once and logged in one line, recorded in run_info.json; the same training
step as XLA's convolutions; the base install brings it on Linux x86-64 only."""

import json
import logging
import pathlib
import tomllib

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax
from packaging.markers import Marker
from packaging.requirements import Requirement

from genimg.errors import ConfigError
from genimg.ops import onednn
from genimg.train import workdir as workdir_lib
from genimg.train.family import build_family

REPO = pathlib.Path(__file__).resolve().parent.parent


def _uses_onednn(fn, *args) -> bool:
    return "genimg_onednn" in str(jax.make_jaxpr(fn)(*args))


def _step_outputs(experiment, preset, backend, image_shape, scale):
    import importlib

    config = importlib.import_module(f"experiments.{experiment}").get_config(preset)
    assert config.model.conv_backend == "auto"  # the default
    config.model.conv_backend = backend
    family = build_family(config, image_shape, None)
    state = jax.jit(family.init_state)(jax.random.key(0))
    step = family.make_train_step(None)
    lo = -1.0 if scale == "-1_1" else 0.0
    image = jax.random.uniform(jax.random.key(1), (4, *image_shape), minval=lo, maxval=1.0)
    batch = {"image": image, "label": jnp.zeros((4,), jnp.int32)}
    rng = jax.random.key(2)
    onednn_used = _uses_onednn(step, state, batch, rng)
    new, metrics = jax.jit(step)(state, batch, rng)
    return state, new, metrics, onednn_used, family.data_scale


def _assert_close(a, b, what):
    a, b = np.asarray(a), np.asarray(b)
    scale = float(np.max(np.abs(b))) + 1e-6
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-4 * scale, err_msg=what)


@pytest.mark.parametrize(
    "experiment, preset, image_shape",
    [("dcgan", "tiny", (8, 8, 1)), ("vae", "tiny", (8, 8, 1))],
)
def test_auto_equals_xla_on_a_full_train_step(experiment, preset, image_shape):
    """One whole step of the experiment's train step (EMA and norm metrics included): the
    metrics and the new state under "auto" equal XLA's to 1e-4 (relative to each tensor's
    largest magnitude)."""
    scale = "-1_1" if experiment == "dcgan" else "0_1"
    s_auto, new_auto, m_auto, used, _ = _step_outputs(
        experiment, preset, "auto", image_shape, scale
    )
    s_xla, new_xla, m_xla, used_xla, _ = _step_outputs(
        experiment, preset, "xla", image_shape, scale
    )
    assert not used_xla
    # "auto" is oneDNN exactly where the backend loads on a CPU jax.
    assert used == (onednn.is_available() and jax.default_backend() == "cpu")
    # Same initial state whoever runs the convs (the optimizers are static fields, other
    # function objects in each build: compare the arrays).
    chex.assert_trees_all_equal(jax.tree.leaves(s_auto), jax.tree.leaves(s_xla))
    assert set(m_auto) == set(m_xla)
    for k in m_xla:
        np.testing.assert_allclose(m_auto[k], m_xla[k], rtol=1e-4, atol=1e-6, err_msg=k)
    paths = jax.tree_util.tree_flatten_with_path(new_xla)[0]
    for (path, b), a in zip(paths, jax.tree.leaves(new_auto), strict=True):
        if jnp.issubdtype(jnp.asarray(b).dtype, jnp.floating):
            _assert_close(a, b, jax.tree_util.keystr(path))


@pytest.fixture
def fresh_choice(monkeypatch):
    """A process that has not resolved "auto" yet."""
    monkeypatch.setattr(onednn, "_auto_choice", {})


def test_unavailable_backend_under_auto_falls_back_with_one_log_line(
    monkeypatch, caplog, fresh_choice
):
    monkeypatch.setattr(onednn, "_state", {"error": "libdnnl.so.3 not found"})
    with caplog.at_level(logging.INFO, logger="genimg"):
        assert onednn.resolve_conv_backend("auto") == "xla"
        assert onednn.conv_fn("auto") is lax.conv_general_dilated
        assert onednn.resolve_conv_backend("auto") == "xla"
    lines = [r.getMessage() for r in caplog.records if "conv_backend" in r.getMessage()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("conv_backend=auto: xla convolutions (oneDNN conv backend "
                               "unavailable: libdnnl.so.3 not found;"), lines  # fmt: skip
    assert "\n" not in lines[0]
    # Asking for oneDNN explicitly is still the one-line error.
    with pytest.raises(ConfigError, match="oneDNN conv backend unavailable"):
        onednn.resolve_conv_backend("onednn")
    # A model under "auto" builds and runs with XLA's convolutions.
    from genimg.models import gan

    d = gan.DCGANDiscriminator(width=4, conv_backend="auto")
    x = jnp.zeros((1, 8, 8, 1))
    params = d.init(jax.random.key(0), x)
    assert not _uses_onednn(lambda p: d.apply(p, x), params)


def test_auto_is_xla_on_an_accelerator(monkeypatch, caplog, fresh_choice):
    monkeypatch.setattr(onednn.jax, "default_backend", lambda: "gpu")
    with caplog.at_level(logging.INFO, logger="genimg"):
        assert onednn.resolve_conv_backend("auto") == "xla"
    assert [r.getMessage() for r in caplog.records] == [
        "conv_backend=auto: xla convolutions (jax runs on gpu)"
    ]


def test_auto_picks_onednn_on_cpu_where_available(caplog, fresh_choice):
    if not onednn.is_available():
        pytest.skip(onednn.unavailable_reason())
    with caplog.at_level(logging.INFO, logger="genimg"):
        assert onednn.resolve_conv_backend("auto") == "onednn"
        assert onednn.conv_fn("auto") is onednn.conv_general_dilated
    assert len(caplog.records) == 1
    assert caplog.records[0].getMessage().startswith("conv_backend=auto: onednn convolutions")


def test_run_records_the_resolved_backend(gan_run):
    config = json.loads((gan_run / "config.json").read_text())
    info = json.loads((gan_run / "run_info.json").read_text())
    assert config["model"]["conv_backend"] == "auto"
    want = "onednn" if onednn.is_available() and jax.default_backend() == "cpu" else "xla"
    assert info["conv_backend"] == want
    # A run started before "auto" (config "xla") resumes under the new default.
    assert workdir_lib.resumable("model.conv_backend")


def _onednn_requirements(table) -> list[Requirement]:
    return [r for r in map(Requirement, table) if r.name.startswith("onednn")]


@pytest.mark.parametrize(
    "sys_platform, machine, wanted",
    [
        ("linux", "x86_64", True),
        ("linux", "aarch64", False),
        ("darwin", "arm64", False),
        ("win32", "AMD64", False),
    ],
)
def test_base_install_brings_onednn_on_linux_x86_64_only(sys_platform, machine, wanted):
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    env = {"sys_platform": sys_platform, "platform_machine": machine}
    runtime = _onednn_requirements(pyproject["project"]["dependencies"])
    build = _onednn_requirements(pyproject["build-system"]["requires"])
    assert [r.name for r in runtime] == ["onednn-cpu-gomp"]
    assert [r.name for r in build] == ["onednn-devel-cpu-gomp"]
    for req in runtime + build:
        assert isinstance(req.marker, Marker), req
        assert req.marker.evaluate(env) is wanted, (req, env)


def test_the_training_loop_does_not_import_torch():
    """tensorboardX imports torch whenever it is installed (~470 MB resident); the loop hides
    it from that import, and torch stays importable afterwards."""
    import subprocess
    import sys

    script = (
        "import sys, importlib.util\n"
        "import experiments.dcgan, genimg.train.loop\n"
        "print('torch' in sys.modules)\n"
        "print(importlib.util.find_spec('torch') is None or bool(__import__('torch').ones(1)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["False", "True"], out.stdout + out.stderr

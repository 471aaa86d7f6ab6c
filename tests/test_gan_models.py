"""GAN module shapes and pinned parameter counts."""

import importlib.util
import pathlib

import jax
import jax.numpy as jnp
import pytest

from genimg.models import gan
from tests import reference as ref

TORCH_PEER = pathlib.Path(__file__).resolve().parent.parent / "benchmarks" / "torch_peer.py"
# Parameter counts of the PyTorch networks in benchmarks/torch_peer.py, which our speed is
# measured against (weights and biases; batch-norm running statistics are buffers, not
# parameters). Pinned here so that the check runs without torch; with torch installed,
# `test_pinned_counts_are_the_torch_peers` recomputes them from torch_peer.py itself.
PEER_PARAMS = {
    "dcgan": {"g": 2_305_473, "d": 212_865},
    "mlpgan": {"g": 1_486_352, "d": 533_505},
}


def _count(variables):
    return sum(x.size for x in jax.tree.leaves(variables["params"]))


def test_mlp_gan_is_the_classic_architecture():
    g, d = gan.MLPGenerator(), gan.MLPDiscriminator()
    g_vars = g.init(jax.random.key(0), jnp.zeros((2, 100)))
    d_vars = d.init(jax.random.key(1), jnp.zeros((2, 28, 28, 1)))
    # G 100-256-512-1024-784, D 784-512-256-1 (weights + biases).
    assert _count(g_vars) == (100 * 256 + 256) + (256 * 512 + 512) + (512 * 1024 + 1024) + (
        1024 * 784 + 784
    )
    assert _count(g_vars) == PEER_PARAMS["mlpgan"]["g"]
    assert _count(d_vars) == (784 * 512 + 512) + (512 * 256 + 256) + (256 + 1)
    assert _count(d_vars) == PEER_PARAMS["mlpgan"]["d"]
    widths = [v["kernel"].shape for v in g_vars["params"].values()]
    assert widths == [(100, 256), (256, 512), (512, 1024), (1024, 784)]
    x = g.apply(g_vars, jax.random.normal(jax.random.key(2), (3, 100)))
    assert x.shape == (3, 28, 28, 1)
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0  # sigmoid output
    assert d.apply(d_vars, x).shape == (3,)


def test_dcgan_28_matches_the_reference_network_size():
    """Same parameter counts as the PyTorch peer (benchmarks/torch_peer.py, "dcgan")."""
    g, d = gan.DCGANGenerator((28, 28, 1)), gan.DCGANDiscriminator()
    g_vars = jax.eval_shape(lambda: g.init(jax.random.key(0), jnp.zeros((1, 100)), train=False))
    d_vars = jax.eval_shape(
        lambda: d.init(jax.random.key(1), jnp.zeros((1, 28, 28, 1)), train=False)
    )
    g_expected = 100 * 12544 + 2 * 12544 + 25 * 256 * 128 + 2 * 128 + 25 * 128 * 64 + 2 * 64
    g_expected += 25 * 64 * 1 + 1
    assert _count(g_vars) == g_expected == PEER_PARAMS["dcgan"]["g"]
    d_expected = (25 * 64 + 64) + (25 * 64 * 128 + 128) + (6272 + 1)
    assert _count(d_vars) == d_expected == PEER_PARAMS["dcgan"]["d"]


def test_pinned_counts_are_the_torch_peers():
    """PEER_PARAMS are the counts of benchmarks/torch_peer.py's networks."""
    ref.require("torch")  # without torch the pinned counts stand
    spec = importlib.util.spec_from_file_location("torch_peer", TORCH_PEER)
    peer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(peer)
    counts = peer.param_counts()
    assert {model: counts[model] for model in PEER_PARAMS} == PEER_PARAMS


@pytest.mark.parametrize("size,channels", [(28, 1), (32, 3), (64, 1), (8, 1)])
def test_dcgan_shapes(size, channels):
    g = gan.DCGANGenerator((size, size, channels), width=8)
    d = gan.DCGANDiscriminator(width=8, dropout=0.3, spectral_norm=True)

    @jax.jit
    def forward(z):
        g_vars = g.init(jax.random.key(1), z, train=False)
        x, _ = g.apply(g_vars, z, train=True, mutable=["batch_stats"])
        d_vars = d.init({"params": jax.random.key(2), "dropout": jax.random.key(3)}, x, train=False)
        logits, _ = d.apply(
            d_vars, x, train=True, rngs={"dropout": jax.random.key(4)}, mutable=["batch_stats"]
        )
        return x, logits

    x, logits = forward(jax.random.normal(jax.random.key(0), (2, 100)))
    assert x.shape == (2, size, size, channels)
    assert float(jnp.abs(x).max()) <= 1.0  # tanh
    assert logits.shape == (2,)
    assert bool(jnp.all(jnp.isfinite(logits)))


def test_dcgan_rejects_unsupported_sizes():
    with pytest.raises(ValueError, match="image size 30"):
        gan.dcgan_num_stages(30)
    assert gan.dcgan_num_stages(28) == (2, 7)
    assert gan.dcgan_num_stages(32) == (3, 4)
    assert gan.dcgan_num_stages(64) == (4, 4)

"""The Flax FID Inception against pytorch-fid's network, and the weight loading's failure modes.

The reference is pytorch-fid's own `fid_inception_v3()` / `InceptionV3` with seeded random
weights (its download replaced), whose outputs are stored in tests/data/reference_inception.npz
by tools/make_reference_goldens.py: these tests need no torch. The same seeded weights are drawn
here in pytorch-fid's state-dict layout and go through genimg's conversion
(`convert_state_dict`); the batch-norm running statistics are the stored, calibrated ones (one
training-mode pass over random images, so that they are not trivial). Where torch is installed,
the `.pth` path of the real weights (SHA-256 check, `torch.load`, conversion, the `.npz` cache)
is checked too, and tests/test_reference_goldens.py checks the golden file is current.
"""

import math
from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from genimg.metrics import inception_weights as iw
from genimg.models.inception import FIDInceptionV3
from tests import reference as ref
from tools import make_reference_goldens as goldens

# pytorch-fid's network: 21,785,568 conv/BN parameters + the 2048 -> 1008 fc layer.
NUM_PARAMS = 23_850_960
NUM_FC_PARAMS = 2048 * 1008 + 1008


def _num_params(tree) -> int:
    return sum(math.prod(x.shape) for x in jax.tree.leaves(tree))


@pytest.fixture(scope="module")
def golden():
    """The stored reference outputs, the seeded state dict and our variables converted from it."""
    stored = goldens.load(goldens.INCEPTION_FILE)
    bn = {k[3:]: v.astype(np.float32) for k, v in stored.items() if k.startswith("bn/")}
    state_dict = goldens.inception_state_dict(bn)
    flat = iw.convert_state_dict(state_dict)
    variables = jax.tree.map(jnp.asarray, traverse_util.unflatten_dict(flat, sep="/"))
    return dict(
        stored,
        state_dict=state_dict,
        images=goldens.inception_images(goldens.IMAGES_SEED),
        variables=variables,
    )


def _rel_err(actual, expected):
    return float(np.max(np.abs(actual - expected)) / np.max(np.abs(expected)))


def test_matches_pytorch_fid_float32(golden):
    apply = jax.jit(FIDInceptionV3().apply)
    pool, logits = apply(golden["variables"], jnp.asarray(golden["images"]))
    assert pool.shape == (2, 2048) and logits.shape == (2, 1008)
    assert pool.dtype == jnp.float32
    # Both sides carry float32 rounding: each is ~2e-5 (max |diff| / max |ref|) from float64 on
    # these weights, and ~3e-5 from the other. A structural error (padding, pool type, layout)
    # gives errors of order 0.1-1 (count_include_pad=True: 0.36).
    assert _rel_err(np.asarray(pool), golden["pool"]) < 1e-4
    assert _rel_err(np.asarray(logits), golden["logits"]) < 1e-4
    np.testing.assert_allclose(pool, golden["pool"], rtol=1e-3, atol=3e-4)
    np.testing.assert_allclose(logits, golden["logits"], rtol=1e-3, atol=3e-4)
    # Features that distinguish the images: the comparison is not between two constants.
    assert np.abs(golden["pool"][0] - golden["pool"][1]).max() > 1e-2


def test_matches_pytorch_fid_float64(golden):
    """In float64 the full forward equals pytorch-fid's to rounding: the arithmetic is the same."""
    with jax.enable_x64(True):
        variables = jax.tree.map(lambda v: jnp.asarray(v, jnp.float64), golden["variables"])
        images = jnp.asarray(golden["images"][:1], jnp.float64)
        _, logits = jax.jit(FIDInceptionV3().apply)(variables, images)
        assert logits.dtype == jnp.float64
        assert _rel_err(np.asarray(logits), golden["logits64"]) < 1e-10


def test_converted_bn_stats_and_param_count(golden):
    variables = golden["variables"]
    bn = variables["batch_stats"]["Mixed_6b"]["branch1x1"]["bn"]
    # Non-trivial running statistics, mapped from torch's running_mean/var.
    assert float(jnp.abs(bn["mean"]).max()) > 0.1 and float(jnp.abs(bn["var"] - 1).max()) > 0.1
    np.testing.assert_array_equal(
        bn["var"], golden["state_dict"]["Mixed_6b.branch1x1.bn.running_var"]
    )
    assert int(golden["num_params"]) == NUM_PARAMS  # torch's count of pytorch-fid's net
    assert _num_params(variables["params"]) == NUM_PARAMS
    assert _num_params(variables["params"]["fc"]) == NUM_FC_PARAMS
    assert variables["params"]["Conv2d_1a_3x3"]["conv"]["kernel"].shape == (3, 3, 3, 32)


@pytest.fixture(scope="module")
def pth(golden, tmp_path_factory):
    """The seeded weights as a `.pth` written by torch (the real weights' file format)."""
    torch = ref.require("torch")
    path = tmp_path_factory.mktemp("inception") / iw.WEIGHTS_FILENAME
    torch.save({k: torch.from_numpy(v) for k, v in golden["state_dict"].items()}, path)
    return path


def test_pth_conversion_and_cache(golden, pth, tmp_path, monkeypatch):
    """The real weights' path: .pth -> SHA-256 check -> torch.load -> convert -> .npz cache."""
    monkeypatch.setattr(iw, "WEIGHTS_SHA256", iw.sha256_file(pth))
    monkeypatch.setenv(iw.ENV_CACHE_DIR, str(tmp_path / "cache"))
    variables = iw.load_inception_params(pth)
    cached = tmp_path / "cache" / "pt_inception-2015-12-05-6726825d.npz"
    assert cached.is_file()
    for loaded in (variables, iw.load_inception_params(cached)):
        same = jax.tree.map(np.array_equal, loaded, golden["variables"])
        assert all(jax.tree.leaves(same))


def test_shapes_without_torch():
    model = FIDInceptionV3()
    shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((2, 299, 299, 3)))
    assert _num_params(shapes["params"]) == NUM_PARAMS
    pool, logits = jax.eval_shape(model.apply, shapes, jnp.zeros((2, 299, 299, 3)))
    assert pool.shape == (2, 2048) and logits.shape == (2, 1008)


@pytest.mark.parametrize(
    "images, match",
    [
        (jnp.zeros((2, 256, 256, 3)), r"\[N, 299, 299, 3\]"),
        (jnp.zeros((2, 299, 299, 1)), r"\[N, 299, 299, 3\]"),
        (jnp.zeros((2, 299, 299, 3), jnp.uint8), "float images"),
    ],
)
def test_bad_input_is_rejected(images, match):
    with pytest.raises(ValueError, match=match):
        jax.eval_shape(FIDInceptionV3().init, jax.random.key(0), images)


def _one_line(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


def test_missing_weights_error_is_one_line(tmp_path, monkeypatch):
    monkeypatch.delenv(iw.ENV_WEIGHTS, raising=False)
    monkeypatch.setenv(iw.ENV_CACHE_DIR, str(tmp_path))
    with mock.patch("urllib.request.urlopen", side_effect=AssertionError("no downloads")):
        with pytest.raises(FileNotFoundError) as excinfo:
            iw.load_inception_params()
    message = _one_line(excinfo)
    assert iw.ENV_WEIGHTS in message and iw.WEIGHTS_URL in message and str(tmp_path) in message

    monkeypatch.setenv(iw.ENV_WEIGHTS, str(tmp_path / "nowhere.pth"))
    with pytest.raises(FileNotFoundError) as excinfo:
        iw.load_inception_params()
    assert "nowhere.pth" in _one_line(excinfo)


def test_sha_mismatch_is_rejected(tmp_path, monkeypatch):
    monkeypatch.setenv(iw.ENV_CACHE_DIR, str(tmp_path / "cache"))
    fake = tmp_path / iw.WEIGHTS_FILENAME
    fake.write_bytes(b"not the inception weights")
    with pytest.raises(ValueError) as excinfo:
        iw.load_inception_params(fake)
    message = _one_line(excinfo)
    assert "SHA-256 mismatch" in message and iw.WEIGHTS_SHA256 in message
    assert not (tmp_path / "cache").exists()  # nothing converted or cached
    with pytest.raises(ValueError, match="SHA-256 mismatch"):
        iw.convert_pth_to_npz(fake, tmp_path / "out.npz")


def test_download_verifies_and_cleans_up(tmp_path, monkeypatch):
    import io

    monkeypatch.delenv(iw.ENV_WEIGHTS, raising=False)
    monkeypatch.setenv(iw.ENV_CACHE_DIR, str(tmp_path))
    fake = mock.MagicMock()
    fake.__enter__.return_value = io.BytesIO(b"an html error page, not weights")
    with mock.patch("urllib.request.urlopen", return_value=fake) as urlopen:
        with pytest.raises(ValueError, match="SHA-256 mismatch"):
            iw.load_inception_params(download=True)
    assert urlopen.call_args.args[0] == iw.WEIGHTS_URL
    assert list(tmp_path.iterdir()) == []  # no partial or unverified file left behind


def test_published_sha256_matches_file_name():
    # torch.hub names files '<name>-<first 8 hex of sha256>.pth'.
    assert iw.WEIGHTS_FILENAME.rsplit("-", 1)[1] == iw.WEIGHTS_SHA256[:8] + ".pth"
    assert len(iw.WEIGHTS_SHA256) == 64


def test_npz_checks_and_lookup_order(tmp_path, monkeypatch):
    flat = {k: np.zeros(shape, np.float32) for k, shape in iw.expected_shapes().items()}
    flat["params/fc/bias"] = np.arange(1008, dtype=np.float32)
    default = tmp_path / "pt_inception-2015-12-05-6726825d.npz"  # the cache's file name
    np.savez(default, **flat)
    with pytest.raises(ValueError, match="not converted from the verified"):
        iw.load_inception_params(default)
    variables = iw.load_inception_params(default, verify=False)
    assert _num_params(variables["params"]) == NUM_PARAMS
    np.testing.assert_array_equal(variables["params"]["fc"]["bias"], np.arange(1008))

    # No path: $GENIMG_INCEPTION_WEIGHTS first, then the cache directory.
    monkeypatch.setenv(iw.ENV_CACHE_DIR, str(tmp_path))
    monkeypatch.delenv(iw.ENV_WEIGHTS, raising=False)
    assert iw.resolve_weights_path() == default
    other = tmp_path / "elsewhere.npz"
    other.write_bytes(default.read_bytes())
    monkeypatch.setenv(iw.ENV_WEIGHTS, str(other))
    assert iw.resolve_weights_path() == other
    assert iw.resolve_weights_path(default) == default

    flat["params/fc/kernel"] = np.zeros((2048, 1000), np.float32)
    with pytest.raises(ValueError, match=r"fc/kernel has shape \(2048, 1000\)"):
        iw._check_tree(flat, source="test")


def test_converter_rejects_wrong_state_dict():
    flat_shapes = iw.expected_shapes()
    state_dict = {"Conv2d_1a_3x3.conv.weight": np.zeros((32, 3, 3, 3), np.float32)}
    with pytest.raises(ValueError, match="missing"):
        iw.convert_state_dict(state_dict)
    with pytest.raises(ValueError, match="Unexpected tensor"):
        iw.convert_state_dict({"AuxLogits.fc.stddev": np.zeros(())})
    assert flat_shapes["params/fc/kernel"] == (2048, 1008)


def test_convert_cli(golden, pth, tmp_path, capsys):
    from tools import convert_inception_weights as cli

    npz = tmp_path / "converted.npz"
    with pytest.raises(ValueError, match="SHA-256 mismatch"):
        cli.main(["--pth", str(pth), "--npz", str(npz)])
    assert cli.main(["--pth", str(pth), "--npz", str(npz), "--no-verify"]) == 0
    assert f"{NUM_PARAMS:,} parameters" in capsys.readouterr().out
    converted = iw.load_inception_params(npz, verify=False)
    same = jax.tree.map(np.array_equal, converted, golden["variables"])
    assert all(jax.tree.leaves(same))

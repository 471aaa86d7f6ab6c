"""The Flax FID Inception against pytorch-fid's network, and the weight loading's failure modes.

The reference network is pytorch-fid's own `fid_inception_v3()` / `InceptionV3`, with its weight
download replaced by a seeded random state dict (no network access). BatchNorm running
statistics are made non-trivial by one pass in training mode over random images. The state dict
goes through the same path as the real weights: a `.pth` file, SHA-256 check, `torch.load`,
conversion, the `.npz` cache and `load_inception_params`.
"""

import math
from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genimg.metrics import inception_weights as iw
from genimg.models.inception import FIDInceptionV3

# pytorch-fid's network: 21,785,568 conv/BN parameters + the 2048 -> 1008 fc layer.
NUM_PARAMS = 23_850_960
NUM_FC_PARAMS = 2048 * 1008 + 1008


def _num_params(tree) -> int:
    return sum(math.prod(x.shape) for x in jax.tree.leaves(tree))


def _randomize(state_dict, torch, generator):
    """Seeded random weights, in place: He-scaled convs, BN affine around 1 / 0."""
    for name, v in state_dict.items():
        if name.endswith("num_batches_tracked"):
            continue
        if v.ndim == 4:
            v.copy_(torch.randn(v.shape, generator=generator) * (2.0 / v[0].numel()) ** 0.5)
        elif v.ndim == 2:
            v.copy_(torch.randn(v.shape, generator=generator) / v.shape[1] ** 0.5)
        elif name.endswith("bn.weight"):
            v.copy_(torch.rand(v.shape, generator=generator) + 0.5)
        elif name.endswith("bias"):
            v.copy_(torch.randn(v.shape, generator=generator) * 0.2)


def _smooth_images(torch, generator, n):
    # Low-frequency content, like natural images (white noise is needlessly ill-conditioned).
    coarse = torch.rand(n, 3, 19, 19, generator=generator)
    return torch.nn.functional.interpolate(coarse, size=(299, 299), mode="bilinear")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """pytorch-fid's net with random weights, its outputs on 2 images, and our loaded variables."""
    torch = pytest.importorskip("torch")
    pfi = pytest.importorskip("pytorch_fid.inception")
    torch.set_num_threads(2)
    gen = torch.Generator().manual_seed(0)

    # The same torchvision Inception3 fid_inception_v3() builds; the FID blocks add no tensors.
    state_dict = pfi._inception_v3(num_classes=1008, aux_logits=False, weights=None).state_dict()
    _randomize(state_dict, torch, gen)
    with mock.patch.object(pfi, "load_state_dict_from_url", lambda *a, **k: state_dict):
        net = pfi.fid_inception_v3()
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # running stats := statistics of the calibration batch
    net.train()
    with torch.no_grad():
        net(2 * _smooth_images(torch, gen, 2) - 1)
    net.eval()
    state_dict = net.state_dict()

    with mock.patch.object(pfi, "load_state_dict_from_url", lambda *a, **k: state_dict):
        fid_net = pfi.InceptionV3([pfi.InceptionV3.DEFAULT_BLOCK_INDEX]).eval()
    images = _smooth_images(torch, gen, 2)  # [2, 3, 299, 299] in [0, 1]
    with torch.no_grad():
        pool = fid_net(images)[0][:, :, 0, 0]
        logits = net.fc(pool)  # the full forward is checked in float64 below

    # The real weights' path: .pth -> SHA-256 check -> torch.load -> convert -> .npz cache.
    tmp = tmp_path_factory.mktemp("inception")
    pth = tmp / iw.WEIGHTS_FILENAME
    torch.save(state_dict, pth)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(iw, "WEIGHTS_SHA256", iw.sha256_file(pth))
        mp.setenv(iw.ENV_CACHE_DIR, str(tmp / "cache"))
        variables = iw.load_inception_params(pth)
        cached = tmp / "cache" / "pt_inception-2015-12-05-6726825d.npz"
        assert cached.is_file()
        cached_variables = iw.load_inception_params(cached)
    return dict(
        torch=torch,
        net=net,
        state_dict=state_dict,
        images=images.numpy().transpose(0, 2, 3, 1),
        pth=pth,
        pool=pool.numpy(),
        logits=logits.numpy(),
        variables=variables,
        cached_variables=cached_variables,
    )


def _rel_err(actual, expected):
    return float(np.max(np.abs(actual - expected)) / np.max(np.abs(expected)))


def test_matches_pytorch_fid_float32(reference):
    apply = jax.jit(FIDInceptionV3().apply)
    pool, logits = apply(reference["variables"], jnp.asarray(reference["images"]))
    assert pool.shape == (2, 2048) and logits.shape == (2, 1008)
    assert pool.dtype == jnp.float32
    # Both sides carry float32 rounding: each is ~2e-5 (max |diff| / max |ref|) from float64 on
    # these weights, and ~3e-5 from the other. A structural error (padding, pool type, layout)
    # gives errors of order 0.1-1 (count_include_pad=True: 0.36).
    assert _rel_err(np.asarray(pool), reference["pool"]) < 1e-4
    assert _rel_err(np.asarray(logits), reference["logits"]) < 1e-4
    np.testing.assert_allclose(pool, reference["pool"], rtol=1e-3, atol=3e-4)
    np.testing.assert_allclose(logits, reference["logits"], rtol=1e-3, atol=3e-4)
    # Features that distinguish the images: the comparison is not between two constants.
    assert np.abs(reference["pool"][0] - reference["pool"][1]).max() > 1e-2


def test_matches_pytorch_fid_float64(reference):
    """In float64 the full forward equals pytorch-fid's to rounding: the arithmetic is the same."""
    torch = reference["torch"]
    net64 = reference["net"].double()
    try:
        x = torch.from_numpy(reference["images"][:1].transpose(0, 3, 1, 2)).double()
        with torch.no_grad():
            expected = net64(2 * x - 1).numpy()
    finally:
        reference["net"].float()
    with jax.enable_x64(True):
        variables = jax.tree.map(lambda v: jnp.asarray(v, jnp.float64), reference["variables"])
        images = jnp.asarray(reference["images"][:1], jnp.float64)
        _, logits = jax.jit(FIDInceptionV3().apply)(variables, images)
        assert logits.dtype == jnp.float64
        assert _rel_err(np.asarray(logits), expected) < 1e-10


def test_cache_roundtrip_and_bn_stats(reference):
    same = jax.tree.map(np.array_equal, reference["variables"], reference["cached_variables"])
    assert all(jax.tree.leaves(same))
    bn = reference["variables"]["batch_stats"]["Mixed_6b"]["branch1x1"]["bn"]
    # Non-trivial running statistics, mapped from torch's running_mean/var.
    assert float(jnp.abs(bn["mean"]).max()) > 0.1 and float(jnp.abs(bn["var"] - 1).max()) > 0.1
    np.testing.assert_array_equal(
        bn["var"], reference["state_dict"]["Mixed_6b.branch1x1.bn.running_var"].numpy()
    )


def test_param_count_matches_torch(reference):
    torch_count = sum(p.numel() for p in reference["net"].parameters())
    assert torch_count == NUM_PARAMS
    variables = reference["variables"]
    assert _num_params(variables["params"]) == NUM_PARAMS
    assert _num_params(variables["params"]["fc"]) == NUM_FC_PARAMS
    assert variables["params"]["Conv2d_1a_3x3"]["conv"]["kernel"].shape == (3, 3, 3, 32)


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


def test_convert_cli(reference, tmp_path, capsys):
    from tools import convert_inception_weights as cli

    npz = tmp_path / "converted.npz"
    with pytest.raises(ValueError, match="SHA-256 mismatch"):
        cli.main(["--pth", str(reference["pth"]), "--npz", str(npz)])
    assert cli.main(["--pth", str(reference["pth"]), "--npz", str(npz), "--no-verify"]) == 0
    assert f"{NUM_PARAMS:,} parameters" in capsys.readouterr().out
    converted = iw.load_inception_params(npz, verify=False)
    same = jax.tree.map(np.array_equal, converted, reference["variables"])
    assert all(jax.tree.leaves(same))

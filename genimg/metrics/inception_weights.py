"""Weights of the FID Inception-v3: locate, verify, convert (PyTorch -> Flax) and cache.

The weights are pytorch-fid's `pt_inception-2015-12-05-6726825d.pth`, the TensorFlow FID graph's
weights ported to PyTorch. They are never fetched implicitly. Put the file somewhere and either
pass its path or set `$GENIMG_INCEPTION_WEIGHTS`; or place it in the cache directory
(`$GENIMG_CACHE_DIR`, default `~/.cache/genimg`); or call `load_inception_params(download=True)`.

The `.pth` is checked against its published SHA-256, converted once to a NumPy `.npz` (our cache
format: flat `params/...` and `batch_stats/...` arrays plus the source file's SHA-256) and
loaded from that cache afterwards. Only the conversion imports torch, lazily.

    variables = load_inception_params()  # {"params": ..., "batch_stats": ...}
    pool, logits = FIDInceptionV3().apply(variables, images)  # images: [N, 299, 299, 3] in [0, 1]
"""

import functools
import hashlib
import os
import tempfile
import urllib.request
from collections.abc import Mapping
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from genimg.models.inception import INPUT_SIZE, FIDInceptionV3

WEIGHTS_FILENAME = "pt_inception-2015-12-05-6726825d.pth"
WEIGHTS_URL = (
    "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/" + WEIGHTS_FILENAME
)
# SHA-256 of the released file (95,628,359 bytes). Its first 8 hex digits are the '6726825d' in the
# name, which is what torch.hub's check_hash verifies; we check the full digest.
WEIGHTS_SHA256 = "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2"
ENV_WEIGHTS = "GENIMG_INCEPTION_WEIGHTS"
ENV_CACHE_DIR = "GENIMG_CACHE_DIR"
_SHA_KEY = "meta/source_sha256"


def cache_dir() -> Path:
    """Directory for downloaded and converted weights: `$GENIMG_CACHE_DIR` or ~/.cache/genimg."""
    return Path(os.environ.get(ENV_CACHE_DIR) or Path.home() / ".cache" / "genimg").expanduser()


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_sha256(path: str | os.PathLike, expected: str | None = None) -> str:
    """Returns the file's SHA-256; raises ValueError unless it equals `expected`.

    `expected` defaults to `WEIGHTS_SHA256`, the published digest of pytorch-fid's file.
    """
    expected = WEIGHTS_SHA256 if expected is None else expected
    actual = sha256_file(path)
    if actual != expected:
        raise ValueError(
            f"SHA-256 mismatch for {path}: got {actual}, expected {expected} "
            f"(the file is not pytorch-fid's {WEIGHTS_FILENAME}, or it is truncated/corrupt)."
        )
    return actual


def expected_shapes() -> dict[str, tuple[int, ...]]:
    """Flat `collection/module/.../leaf` -> shape of every variable of `FIDInceptionV3`."""
    return dict(_expected_shapes())


@functools.cache
def _expected_shapes() -> tuple[tuple[str, tuple[int, ...]], ...]:
    dummy = jax.ShapeDtypeStruct((1, INPUT_SIZE, INPUT_SIZE, 3), jnp.float32)
    shapes = jax.eval_shape(FIDInceptionV3().init, jax.random.key(0), dummy)
    flat = traverse_util.flatten_dict(shapes, sep="/")
    return tuple((k, tuple(v.shape)) for k, v in flat.items())


def convert_state_dict(state_dict: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Maps a pytorch-fid Inception state dict (NumPy arrays) to flat Flax variables.

    Flax module names equal torchvision's attribute names, so only the leaf names and layouts
    change: conv OIHW -> HWIO, linear [out, in] -> [in, out], BatchNorm weight/bias -> scale/bias
    (params) and running_mean/var -> mean/var (batch_stats). The result is checked against the
    module's variable tree: every variable present, no extra tensors, every shape right.
    """
    flat = {}
    for name, value in state_dict.items():
        module, _, leaf = name.rpartition(".")
        path = module.replace(".", "/")
        if leaf == "num_batches_tracked":
            continue  # BatchNorm's step counter: unused at inference
        value = np.asarray(value, np.float32)
        if leaf == "weight" and value.ndim == 4:
            flat[f"params/{path}/kernel"] = value.transpose(2, 3, 1, 0)
        elif leaf == "weight" and value.ndim == 2:
            flat[f"params/{path}/kernel"] = value.T
        elif leaf == "weight" and value.ndim == 1:
            flat[f"params/{path}/scale"] = value
        elif leaf == "bias":
            flat[f"params/{path}/bias"] = value
        elif leaf == "running_mean":
            flat[f"batch_stats/{path}/mean"] = value
        elif leaf == "running_var":
            flat[f"batch_stats/{path}/var"] = value
        else:
            raise ValueError(f"Unexpected tensor {name!r} in the Inception state dict.")
    _check_tree(flat, source="state dict")
    return {k: np.ascontiguousarray(v) for k, v in flat.items()}


def _check_tree(flat: Mapping[str, np.ndarray], source: str) -> None:
    want = expected_shapes()
    missing = sorted(set(want) - set(flat))
    extra = sorted(set(flat) - set(want))
    if missing or extra:
        raise ValueError(
            f"Inception {source} does not match FIDInceptionV3: {len(missing)} missing "
            f"(e.g. {missing[:2]}), {len(extra)} unexpected (e.g. {extra[:2]})."
        )
    for k, shape in want.items():
        if tuple(flat[k].shape) != shape:
            raise ValueError(
                f"Inception {source}: {k} has shape {tuple(flat[k].shape)}, expected {shape}."
            )


def convert_pth_to_npz(
    pth: str | os.PathLike, npz: str | os.PathLike, *, verify: bool = True
) -> Path:
    """Converts pytorch-fid's `.pth` to our `.npz` cache format (needs torch; imported here).

    With `verify` (the default) the `.pth` must have the published SHA-256; `verify=False` is for
    converting other weights (e.g. random test weights) with the same code path. The source
    file's digest is stored in the `.npz`, which is written atomically.
    """
    digest = verify_sha256(pth) if verify else sha256_file(pth)
    try:
        import torch
    except ImportError as e:
        raise ImportError(
            f"Converting {pth} needs PyTorch (pip install torch); or convert elsewhere with "
            "tools/convert_inception_weights.py and pass the .npz."
        ) from e
    state_dict = torch.load(pth, map_location="cpu", weights_only=True)
    flat = convert_state_dict({k: v.detach().cpu().numpy() for k, v in state_dict.items()})
    flat[_SHA_KEY] = np.array(digest)
    npz = Path(npz)
    npz.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=npz.parent, suffix=".npz", delete=False) as f:
        np.savez(f, **flat)
    os.replace(f.name, npz)
    return npz


def load_npz(npz: str | os.PathLike, *, verify: bool = True) -> dict:
    """Loads our `.npz` cache format into Flax variables `{"params", "batch_stats"}`.

    With `verify`, the `.npz` must record that it was converted from the genuine weights file.
    """
    with np.load(npz, allow_pickle=False) as data:
        flat = {k: data[k] for k in data.files}
    source = str(flat.pop(_SHA_KEY, ""))
    if verify and source != WEIGHTS_SHA256:
        raise ValueError(
            f"{npz} was not converted from the verified {WEIGHTS_FILENAME} (source SHA-256 "
            f"{source or 'missing'}); reconvert it, or pass verify=False for other weights."
        )
    _check_tree(flat, source=str(npz))
    variables = traverse_util.unflatten_dict(flat, sep="/")
    return jax.tree.map(jnp.asarray, variables)


def download_weights(dest: str | os.PathLike) -> Path:
    """Downloads pytorch-fid's weights to `dest` and verifies them (the only network access)."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=dest.parent, suffix=".part", delete=False) as f:
        with urllib.request.urlopen(WEIGHTS_URL, timeout=60) as response:
            for chunk in iter(lambda: response.read(1 << 20), b""):
                f.write(chunk)
    try:
        verify_sha256(f.name)
    except ValueError:
        os.remove(f.name)
        raise
    os.replace(f.name, dest)
    return dest


def _missing_message() -> str:
    return (
        f"FID Inception weights not found: download {WEIGHTS_URL} and set ${ENV_WEIGHTS} to its "
        f"path (or put it in {cache_dir()}; python -m tools.convert_inception_weights "
        "--download does both when online); offline, use --extractor=domain:runs/classifier "
        "after python -m experiments.classifier --workdir=runs/classifier "
        "--config=experiments/classifier.py:fast (about 2 minutes on a CPU)"
    )


def resolve_weights_path(path: str | os.PathLike | None = None, *, download: bool = False) -> Path:
    """The weights file to use: `path`, else `$GENIMG_INCEPTION_WEIGHTS`, else the cache dir."""
    if path is None:
        path = os.environ.get(ENV_WEIGHTS) or None
    if path is not None:
        path = Path(path).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"FID Inception weights file {path} does not exist.")
        return path
    for candidate in (
        cache_dir() / Path(WEIGHTS_FILENAME).with_suffix(".npz"),
        cache_dir() / WEIGHTS_FILENAME,
    ):
        if candidate.is_file():
            return candidate
    if download:
        return download_weights(cache_dir() / WEIGHTS_FILENAME)
    raise FileNotFoundError(_missing_message())


def load_inception_params(
    path: str | os.PathLike | None = None, *, download: bool = False, verify: bool = True
) -> dict:
    """Flax variables `{"params", "batch_stats"}` for `genimg.models.inception.FIDInceptionV3`.

    Args:
      path: a `.pth` (pytorch-fid's file; verified by SHA-256, converted once and cached as
        `$GENIMG_CACHE_DIR/<name>.npz`) or an `.npz` in our cache format. Default:
        `$GENIMG_INCEPTION_WEIGHTS`, then the cache directory.
      download: fetch the `.pth` from pytorch-fid's GitHub release when no file is found.
      verify: require an `.npz` to record the genuine `.pth`'s SHA-256; False accepts `.npz`
        files converted from other weights (tests). A `.pth` is always checked.
    """
    path = resolve_weights_path(path, download=download)
    if path.suffix == ".npz":
        return load_npz(path, verify=verify)
    if path.suffix != ".pth":
        raise ValueError(f"Unsupported Inception weights file {path}: expected .pth or .npz.")
    verify_sha256(path)
    cached = cache_dir() / path.with_suffix(".npz").name
    if not cached.is_file():
        convert_pth_to_npz(path, cached)
    return load_npz(cached, verify=verify)

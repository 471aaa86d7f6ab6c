"""On-disk cache of reference (real-data) feature statistics, named by a content key.

Reference statistics for FID on 50k images cost minutes of extractor time, and are only valid
for the exact data, extractor weights, preprocessing and code that made them. The cache file is
therefore named by sha256 of a canonical JSON of everything that determines it; change any part
and the key changes, so stale statistics are never picked up. Raw features (float32) can be
stored next to the moments, because KID and precision/recall need features, not moments.

Files are `<cache_dir>/refstats_<sha256>.npz` holding
  mu [D] float64, sigma [D, D] float64, n int64, key_json str, format_version int,
  and features [N, D] float32 when written with store_features=True.
They are written atomically (temporary file in the same directory, then `os.replace`), so
concurrent writers and interrupted runs leave either the old file or the new one, never half.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from genimg.metrics.feature_stats import FeatureStats

_log = logging.getLogger(__name__)

# Every key must say what the statistics were computed from; extra entries (e.g. resolution)
# are allowed and become part of the key.
REQUIRED_KEY_PARTS = (
    "dataset",  # data source, e.g. "tfds:cifar10" or a folder path
    "split",  # e.g. "train"
    "num_images",  # number of images the statistics are over
    "extractor",  # feature extractor id, e.g. "inception_v3_fid/pool3"
    "weights_hash",  # checksum of the extractor weights, e.g. `array_tree_checksum(params)`
    "preprocessing",  # resize / crop / normalisation mode, e.g. "clean_bicubic_299"
    "code_version",  # bump when the extraction code changes what it computes
)
FORMAT_VERSION = 1


def canonical_json(key_parts: Mapping[str, Any]) -> str:
    """Canonical JSON (sorted keys, no whitespace, ASCII) of the key parts."""
    if not isinstance(key_parts, Mapping):
        raise TypeError(f"key_parts must be a dict, got {type(key_parts).__name__}")
    missing = [k for k in REQUIRED_KEY_PARTS if k not in key_parts]
    if missing:
        raise ValueError(f"key_parts is missing {missing}; required: {list(REQUIRED_KEY_PARTS)}")
    try:
        return json.dumps(
            dict(key_parts),
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=True,
            allow_nan=False,
        )
    except (TypeError, ValueError) as e:
        raise ValueError(f"key_parts must be JSON-serialisable plain values: {e}") from e


def reference_key(key_parts: Mapping[str, Any]) -> str:
    """sha256 hex digest of `canonical_json(key_parts)`: the cache file's name."""
    return hashlib.sha256(canonical_json(key_parts).encode("ascii")).hexdigest()


def array_tree_checksum(tree: Any) -> str:
    """sha256 hex of a nested dict/list of arrays (e.g. Flax params): paths, dtypes, shapes and
    bytes of every leaf, in sorted-key order. Use it as `weights_hash` in the key."""
    h = hashlib.sha256()

    def visit(node, path):
        if isinstance(node, Mapping):
            for k in sorted(node, key=str):
                visit(node[k], f"{path}/{k}")
        elif isinstance(node, list | tuple):
            for i, v in enumerate(node):
                visit(v, f"{path}[{i}]")
        else:
            a = np.ascontiguousarray(np.asarray(node))
            h.update(f"{path}|{a.dtype.str}|{a.shape}|".encode())
            h.update(a.tobytes())

    visit(tree, "")
    return h.hexdigest()


def _cache_path(cache_dir: str | os.PathLike, key: str) -> str:
    return os.path.join(os.fspath(cache_dir), f"refstats_{key}.npz")


def _load(path: str, key_json: str, want_features: bool) -> dict | None:
    """Reads a cache file; None if it lacks features that are wanted. Raises if it is corrupt."""
    with np.load(path, allow_pickle=False) as z:
        if str(z["key_json"]) != key_json:
            raise ValueError("stored key does not match the file name's key")
        if int(z["format_version"]) != FORMAT_VERSION:
            raise ValueError(f"format_version {int(z['format_version'])} != {FORMAT_VERSION}")
        if want_features and "features" not in z.files:
            return None
        mu, sigma, n = z["mu"], z["sigma"], int(z["n"])
        d = mu.shape[0] if mu.ndim == 1 else -1
        if d < 1 or sigma.shape != (d, d) or n < 2:
            raise ValueError(f"bad shapes mu {mu.shape}, sigma {sigma.shape}, n={n}")
        if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
            raise ValueError("non-finite moments")
        out = {"mu": mu.astype(np.float64), "sigma": sigma.astype(np.float64), "n": n}
        if want_features:
            feats = z["features"]
            if feats.shape != (n, d):
                raise ValueError(f"features shape {feats.shape} != ({n}, {d})")
            out["features"] = feats
    return out


def _save_atomic(path: str, arrays: dict[str, np.ndarray]) -> None:
    """Writes an .npz to a temporary file next to `path`, fsyncs it, then renames over `path`."""
    directory = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=os.path.basename(path) + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; the cache is meant to be shared
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _stats_from_compute(result, store_features: bool, num_images) -> dict:
    """Turns compute_fn's FeatureStats or [N, D] array into mu / sigma / n (/ features)."""
    if isinstance(result, FeatureStats):
        stats = result
        if store_features and not stats.keep_features:
            raise ValueError(
                "store_features=True but compute_fn returned FeatureStats(keep_features=False)"
            )
    else:
        stats = FeatureStats(keep_features=store_features).update(result)
    if isinstance(num_images, int) and num_images != stats.n:
        raise ValueError(
            f"key_parts says num_images={num_images} but compute_fn produced {stats.n} features"
        )
    out = {"mu": stats.mean, "sigma": stats.cov, "n": stats.n}
    if store_features:
        out["features"] = stats.features
    return out


def cached_reference_stats(
    key_parts: Mapping[str, Any],
    compute_fn: Callable[[], FeatureStats | np.ndarray],
    cache_dir: str | os.PathLike,
    store_features: bool = False,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Returns reference (mu, sigma, extra), computing and caching them on a miss.

    Args:
      key_parts: what the statistics depend on; must contain `REQUIRED_KEY_PARTS` and only
        JSON-serialisable values. Its sha256 (`reference_key`) names the cache file.
      compute_fn: no-argument callable returning the real features, either as a
        `FeatureStats` (streaming; with keep_features=True if store_features) or an [N, D] array.
        Called only on a cache miss.
      cache_dir: directory of the cache (created if needed).
      store_features: also cache / return the raw features as float32 (for KID, precision /
        recall). A cached file without features counts as a miss and is rewritten with them.

    Returns:
      mu [D] float64, sigma [D, D] float64 (ddof=1), and extra = {"n": int, "key": str,
      "path": str, "from_cache": bool} plus "features" [N, D] float32 when store_features.

    A cache file that cannot be read or fails validation is recomputed and replaced, with a
    logged warning. A failure to write the cache is logged and the computed statistics returned.
    """
    key_json = canonical_json(key_parts)
    key = hashlib.sha256(key_json.encode("ascii")).hexdigest()
    path = _cache_path(cache_dir, key)
    loaded = None
    if os.path.exists(path):
        try:
            loaded = _load(path, key_json, store_features)
            if loaded is None:
                _log.info("refstats: %s has no features; recomputing to store them", path)
        except Exception as e:  # noqa: BLE001 -- any unreadable cache is recomputed, never fatal
            _log.warning("refstats: cache file %s is corrupt (%s); recomputing", path, e)
    from_cache = loaded is not None
    if not from_cache:
        loaded = _stats_from_compute(compute_fn(), store_features, key_parts["num_images"])
        arrays = {
            "mu": loaded["mu"],
            "sigma": loaded["sigma"],
            "n": np.int64(loaded["n"]),
            "key_json": np.array(key_json),
            "format_version": np.int64(FORMAT_VERSION),
        }
        if store_features:
            arrays["features"] = np.asarray(loaded["features"], np.float32)
        try:
            os.makedirs(cache_dir, exist_ok=True)
            _save_atomic(path, arrays)
        except OSError as e:
            _log.warning("refstats: could not write cache %s (%s); continuing uncached", path, e)
    extra = {"n": loaded["n"], "key": key, "path": path, "from_cache": from_cache}
    if store_features:
        extra["features"] = np.asarray(loaded["features"], np.float32)
    return loaded["mu"], loaded["sigma"], extra

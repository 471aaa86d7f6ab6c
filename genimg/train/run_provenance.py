"""Who made an image: a run's identity (run id, config hash) and the hash of the weights that
drew it, turned into the `genimg.watermark.Provenance` every image file of genimg carries.

- ``config_hash``: 12 hex digits of SHA-256 over the run's config (as in ``config.json``)
  without where its family lives and without the keys a resume may change
  (`genimg.train.workdir.RESUMABLE_KEYS`), so a resumed run keeps it.
- ``run_id``: ``<family>-<config hash>``, written into ``run_info.json`` when the run is
  created and kept from then on. A run written before run ids existed gets the same
  derivation, so the id of a run never depends on when it was asked for. Two runs of one
  config share an id (training is deterministic: they are the same run); their weights, and
  so their model hashes, tell them apart when they differ.
- ``model_hash``: 12 hex digits of SHA-256 over the float parameters the state samples with
  (every leaf except the step counter and optimizer states).

`provenance_for_run(run, state)` is what anything that writes a run's images calls: the loop's
sample grids, ``genimg.sample --png``, evaluation figures.
"""

from __future__ import annotations

import hashlib
import json
import logging
import pathlib
from collections.abc import Mapping

import jax
import numpy as np

from genimg import watermark as wm
from genimg.train import workdir as workdir_lib

FAMILY_LOCATION_KEY = "family_location"
log = logging.getLogger("genimg")


def config_hash(record: Mapping) -> str:
    """12 hex digits naming a config record (resumable keys and ``family_location`` left out)."""
    flat = {
        key: value
        for key, value in workdir_lib.flatten(record).items()
        if not key.startswith(FAMILY_LOCATION_KEY) and not workdir_lib.resumable(key)
    }
    text = json.dumps(flat, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def derive_run_id(record: Mapping) -> str:
    """``<family>-<config hash>``: the id of a run of ``record``."""
    return f"{record.get('family', 'run')}-{config_hash(record)}"


def watermark_enabled(config) -> bool:
    """``config.provenance.watermark`` (True when the config predates the flag)."""
    block = config.get("provenance") if hasattr(config, "get") else None
    return True if block is None else bool(block.get("watermark", True))


def identity(record: Mapping, old_info: Mapping | None, watermark: bool) -> dict:
    """The ``run_info.json`` entries of a run's provenance: ``run_id`` and ``config_hash``
    (kept from ``old_info`` when the run already has them), and ``provenance`` (family, whether
    the mark is on, and the id of the key it is made with)."""
    old_info = old_info or {}
    return {
        "run_id": old_info.get("run_id") or derive_run_id(record),
        "config_hash": old_info.get("config_hash") or config_hash(record),
        "provenance": {
            "family": record.get("family"),
            "watermark": bool(watermark),
            "key_id": wm.key_id(wm.signing_key()) if watermark else None,
        },
    }


def _keyname(entry) -> str:
    return str(getattr(entry, "name", getattr(entry, "key", getattr(entry, "idx", entry))))


def _is_weight(path) -> bool:
    names = [_keyname(p) for p in path]
    return bool(names) and names[0] != "step" and not any("opt_state" in n for n in names)


def weight_leaves(state) -> list[np.ndarray]:
    """The float arrays of ``state`` that are weights (not the step, not optimizer states),
    in tree order."""
    leaves = jax.tree_util.tree_leaves_with_path(jax.device_get(state))
    out = []
    for path, leaf in leaves:
        array = np.asarray(leaf)
        if _is_weight(path) and np.issubdtype(array.dtype, np.floating):
            out.append(array)
    return out


def model_hash(state) -> str:
    """12 hex digits of SHA-256 over the weights of ``state`` (shapes, dtypes and bytes)."""
    digest = hashlib.sha256()
    for array in weight_leaves(state):
        digest.update(f"{array.shape}{array.dtype}".encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()[:12]


def count_params(state) -> int:
    """Number of trainable parameters: the leaves under a field named ``params`` or
    ``*_params`` other than ``ema_params`` (a copy)."""
    total = 0
    for path, leaf in jax.tree_util.tree_leaves_with_path(state):
        top = _keyname(path[0]) if path else ""
        if top.endswith("params") and top != "ema_params":
            total += int(np.prod(np.shape(leaf)))
    return total


def read_run(workdir) -> tuple[dict, dict]:
    """``(config record, run_info)`` of the run in ``workdir`` (empty dicts for missing
    files), with the provenance entries filled in for a run written before they existed."""
    workdir = pathlib.Path(workdir)
    record, info = {}, {}
    for name, into in ((workdir_lib.CONFIG_FILE, record), (workdir_lib.RUN_INFO_FILE, info)):
        path = workdir / name
        if path.is_file():
            into.update(json.loads(path.read_text()))
    if "run_id" not in info or "provenance" not in info:
        filled = identity(record, info, watermark_enabled(record))
        info = {**filled, **info}
    return record, info


def provenance_for_run(run, state) -> wm.Provenance:
    """The `Provenance` of images drawn from ``state`` of a run: ``run`` is its workdir or its
    ``run_info`` (as written by the loop). A Stable Signature run (``run_info`` has
    ``stable_signature``) names the model hash its generator was fine-tuned to carry."""
    info = read_run(run)[1] if isinstance(run, (str, pathlib.Path)) else dict(run)
    prov = info.get("provenance") or {}
    signature = info.get("stable_signature") or {}
    return wm.Provenance(
        run_id=info.get("run_id", "unknown"),
        family=prov.get("family") or "unknown",
        config_hash=info.get("config_hash", "unknown"),
        model_hash=signature.get("model_hash") or model_hash(state),
        key=wm.signing_key(),
        watermark=prov.get("watermark", True),
    )


def warn_if_unmarked(provenance: wm.Provenance, where) -> None:
    """One warning line when the run's images go out without the invisible mark."""
    if not provenance.watermark:
        log.warning(
            "provenance.watermark=False: the images written to %s carry no invisible "
            "watermark, only PNG text (recorded in run_info.json and MODEL_CARD.md)",
            where,
        )

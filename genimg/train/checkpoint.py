"""Orbax checkpoints of a run's state, and rebuilding a finished run from its workdir."""

from __future__ import annotations

import json
import pathlib

import jax
import ml_collections
import orbax.checkpoint as ocp

from genimg.errors import UserError
from genimg.train.family import Family, load_builder

CONFIG_FILE = "config.json"
RUN_INFO_FILE = "run_info.json"
# The key of config.json under which the loop records where the run's family is defined.
FAMILY_LOCATION_KEY = "family_location"


def checkpoint_manager(workdir, max_to_keep: int = 3) -> ocp.CheckpointManager:
    """The run's ``CheckpointManager`` over ``workdir/checkpoints`` (keeps the newest N)."""
    directory = pathlib.Path(workdir).absolute() / "checkpoints"
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True)
    return ocp.CheckpointManager(directory, options=options)


def save(manager: ocp.CheckpointManager, step: int, state) -> None:
    """Save an (unreplicated) state; Orbax writes to a temporary folder, then renames."""
    manager.save(step, args=ocp.args.StandardSave(state))


def restore(manager: ocp.CheckpointManager, abstract_state, step: int | None = None):
    """Restore ``step`` (default: latest) into the structure of ``abstract_state``."""
    step = manager.latest_step() if step is None else step
    return manager.restore(step, args=ocp.args.StandardRestore(abstract_state))


def load_run_config(workdir) -> tuple[ml_collections.ConfigDict, dict, dict]:
    """``(config, run_info, family_location)`` written by the training loop into ``workdir``;
    the config is locked, as in training."""
    workdir = pathlib.Path(workdir)
    paths = [workdir / CONFIG_FILE, workdir / RUN_INFO_FILE]
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} not found: --workdir must be a training run's folder "
                "(made by python -m experiments.<name> --workdir=...)"
            )
    record = json.loads(paths[0].read_text())
    location = record.pop(FAMILY_LOCATION_KEY, None)
    if location is None:
        raise UserError(
            f"{paths[0]} does not say where the run's family is defined; it was written by an "
            "older genimg: retrain the run with this version"
        )
    config = ml_collections.ConfigDict(record)
    config.lock()
    return config, json.loads(paths[1].read_text()), location


def restore_run(workdir, step: int | None = None):
    """Rebuild a run from its workdir: ``(config, family, state, run_info)`` at ``step``
    (default: the latest checkpoint)."""
    config, info, location = load_run_config(workdir)
    build = load_builder(location)
    family: Family = build(config, tuple(info["image_shape"]), info.get("num_classes"))
    manager = checkpoint_manager(workdir)
    try:
        if manager.latest_step() is None:
            raise FileNotFoundError(
                f"no checkpoint in {pathlib.Path(workdir) / 'checkpoints'}: train the run first"
            )
        abstract = jax.eval_shape(family.init_state, jax.random.key(0))
        state = restore(manager, abstract, step)
    finally:
        manager.close()
    return config, family, state, info

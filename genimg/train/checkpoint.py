"""Orbax checkpoints of a run's state, and rebuilding a finished run from its workdir.

Orbax writes each step into a temporary folder and renames it when every file is on disk, so
a process killed mid-save leaves no half checkpoint under its final name (the temporary
folder is removed by the next run). What can still go bad -- a file truncated or deleted
afterwards, garbage metadata -- is found when restoring: `restore_latest` tries the newest
step first, checks that its arrays have the shapes the model expects, restores it and checks
that it is finite; a step that fails is reported by number, moved aside into
``workdir/corrupt_checkpoints/`` (never deleted) and the previous step is tried. A checkpoint
of another model (different shapes) is not corruption: it is a one-line error.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import pathlib
import shutil
import sys
import traceback

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from genimg.errors import UserError
from genimg.train.family import Family, load_builder
from genimg.train.workdir import CONFIG_FILE, RUN_INFO_FILE

__all__ = ["CONFIG_FILE", "RUN_INFO_FILE"]  # re-exported: the files of a run's folder

# The key of config.json under which the loop records where the run's family is defined.
FAMILY_LOCATION_KEY = "family_location"
CHECKPOINT_DIR = "checkpoints"
QUARANTINE_DIR = "corrupt_checkpoints"  # unreadable steps are moved here, never deleted

log = logging.getLogger("genimg")


class CheckpointError(UserError):
    """No usable checkpoint, or one that belongs to another model; the message is one line."""


def finished_steps(workdir) -> list[int]:
    """The steps of ``workdir``'s finished checkpoints: step folders under their final name
    (Orbax renames a checkpoint into place once it is written), as they are on disk."""
    directory = pathlib.Path(workdir) / CHECKPOINT_DIR
    if not directory.is_dir():
        return []
    return sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit() and p.is_dir())


def checkpoint_manager(
    workdir, max_to_keep: int = 3, read_only: bool = False
) -> ocp.CheckpointManager:
    """The run's ``CheckpointManager`` over ``workdir/checkpoints`` (keeps the newest N).

    A writer removes the temporary folders of saves that a killed process left unfinished;
    ``read_only`` (for ``genimg.sample`` / ``genimg.evaluate``, which may run while training
    goes on) never touches the folder."""
    directory = pathlib.Path(workdir).absolute() / CHECKPOINT_DIR
    options = ocp.CheckpointManagerOptions(
        max_to_keep=None if read_only else max_to_keep,
        save_interval_steps=0 if read_only else 1,
        create=not read_only,
        cleanup_tmp_directories=not read_only,
        read_only=read_only,
    )
    with quiet_orbax():  # it reads every step's metadata, and logs each it cannot parse
        return ocp.CheckpointManager(
            directory, options=options, item_handlers=ocp.StandardCheckpointHandler()
        )


def save(manager: ocp.CheckpointManager, step: int, state) -> None:
    """Save an (unreplicated) state; Orbax writes to a temporary folder, then renames."""
    manager.save(step, args=ocp.args.StandardSave(state))


def restore(manager: ocp.CheckpointManager, abstract_state, step: int | None = None):
    """Restore ``step`` (default: latest) into the structure of ``abstract_state``."""
    step = manager.latest_step() if step is None else step
    with quiet_orbax():
        return manager.restore(step, args=ocp.args.StandardRestore(abstract_state))


def _in_orbax(filename: str) -> bool:
    return "/orbax/" in filename.replace("\\", "/")


class _DropOrbaxRecords(logging.Filter):
    """Drops the log records of Orbax (absl logger) and of its asyncio tasks (asyncio
    logger: "Task exception was never retrieved" for a write that failed)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _in_orbax(record.pathname):
            return False
        if record.exc_info and record.exc_info[2] is not None:
            frames = traceback.extract_tb(record.exc_info[2])
            if any(_in_orbax(frame.filename) for frame in frames):
                return False
        try:
            return not _in_orbax(record.getMessage())
        except Exception:  # noqa: BLE001 (a record whose arguments do not format)
            return True


def _orbax_leftover(unraisable) -> bool:
    """An error nobody can receive any more, from a read or write Orbax gave up on: a
    TensorStore callback into a closed event loop, or an abandoned Orbax coroutine."""
    err, obj = unraisable.exc_value, unraisable.object
    if isinstance(err, RuntimeError) and str(err) == "Event loop is closed":
        return True
    code = getattr(obj, "cr_code", None)
    return code is not None and _in_orbax(code.co_filename)


def _drop_orbax_leftovers(previous):
    def hook(unraisable) -> None:
        if not _orbax_leftover(unraisable):
            previous(unraisable)

    hook.drops_orbax_leftovers = True
    return hook


def _install_unraisable_filter() -> None:
    if not getattr(sys.unraisablehook, "drops_orbax_leftovers", False):
        sys.unraisablehook = _drop_orbax_leftovers(sys.unraisablehook)


_LOG_FILTER = _DropOrbaxRecords()


@contextlib.contextmanager
def quiet_orbax():
    """Orbax reports each problem of a checkpoint it reads or writes at ERROR, with a
    traceback per thread (also after the fact, from its background threads), and a failed read
    or write leaves asyncio tasks and TensorStore callbacks that print more tracebacks when
    they are collected. The problem itself reaches genimg as an exception, which it reports
    once, in one line. So once genimg has touched a checkpoint, Orbax's log records and those
    leftovers are dropped for the rest of the process (nothing else is); inside this context,
    what a failed read left behind is collected before it ends."""
    for name in ("absl", "asyncio"):
        logger = logging.getLogger(name)
        if _LOG_FILTER not in logger.filters:
            logger.addFilter(_LOG_FILTER)
    _install_unraisable_filter()
    previous = sys.unraisablehook
    try:
        yield
    finally:
        gc.collect()  # finalize a failed read's leftovers while the filter is surely in place
        sys.unraisablehook = previous


# --- validation and fallback ----------------------------------------------------------------


def _key_name(entry) -> str:
    for attr in ("name", "key", "idx"):
        if hasattr(entry, attr):
            return str(getattr(entry, attr))
    return str(entry)


def _shapes(tree) -> dict[str, tuple]:
    """``{"g_params/Dense_0/kernel": (shape, dtype)}`` of a state or of checkpoint metadata."""
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {
        "/".join(_key_name(k) for k in path): (tuple(leaf.shape), np.dtype(leaf.dtype).name)
        for path, leaf in leaves
    }


def structure_mismatch(saved_metadata, abstract_state) -> str | None:
    """What differs between the arrays of a checkpoint and those the model expects (None if
    nothing): the first few differing names with both shapes."""
    saved, expected = _shapes(saved_metadata), _shapes(abstract_state)
    problems = []
    for name in sorted(saved.keys() | expected.keys()):
        have, want = saved.get(name), expected.get(name)
        if have == want:
            continue
        show = lambda s: "absent" if s is None else f"{list(s[0])} {s[1]}"  # noqa: E731
        problems.append(f"{name} is {show(have)} in the checkpoint, {show(want)} now")
    if not problems:
        return None
    more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
    return "; ".join(problems[:3]) + more


@jax.jit
def _all_finite(tree) -> jax.Array:
    leaves = [
        jnp.all(jnp.isfinite(x))
        for x in jax.tree.leaves(tree)
        if jnp.issubdtype(jnp.result_type(x), jnp.inexact)
    ]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.bool_(True)


def all_finite(tree) -> bool:
    """Whether every floating-point array of ``tree`` is free of NaN and Inf."""
    return bool(_all_finite(tree))


def _reason(err: BaseException) -> str:
    """The first line of the innermost cause of ``err`` (Orbax wraps TensorStore's errors,
    whose own message is the one that names the file and the problem)."""
    seen = set()
    while (err.__cause__ or err.__context__) is not None and id(err) not in seen:
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    lines = [ln.strip() for ln in str(err).strip().splitlines() if ln.strip()]
    text = f"{type(err).__name__}: {lines[0]}" if lines else type(err).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def _try_step(manager, step: int, abstract_state):
    """``(state, None)`` if ``step`` restores into ``abstract_state`` and is finite, else
    ``(None, reason)``; raises `CheckpointError` if it holds another model's arrays."""
    try:
        with quiet_orbax():
            metadata = manager.item_metadata(step)
    except Exception as err:  # noqa: BLE001 (any failure to read it makes the step unusable)
        return None, f"unreadable metadata ({_reason(err)})"
    if metadata is None:
        return None, "its array metadata is missing"
    mismatch = structure_mismatch(metadata, abstract_state)
    if mismatch is not None:
        raise CheckpointError(
            f"checkpoint step {step} in {manager.directory} holds a different model than this "
            f"config builds: {mismatch}; resume with the run's recorded config "
            f"({CONFIG_FILE}) or use a new --workdir"
        )
    try:
        state = restore(manager, abstract_state, step)
    except Exception as err:  # noqa: BLE001 (truncated/deleted files fail in many ways)
        return None, _reason(err)
    if not all_finite(state):
        return None, "it holds NaN or Inf values"
    return state, None


def restore_latest(manager: ocp.CheckpointManager, abstract_state, quarantine=None):
    """``(step, state)`` of the newest checkpoint that restores, or ``(0, None)`` when the run
    has none.

    A step that fails is reported with a warning naming it and the reason; when
    ``quarantine`` (a folder) is given it is moved there, so that the next save cannot
    collide with it and nothing is deleted. If checkpoints exist but none restores -- or
    ``quarantine`` holds earlier bad ones and no good one is left -- this raises a one-line
    `CheckpointError` instead of letting the run start over from scratch."""
    bad: list[tuple[int, str]] = []
    for step in sorted(manager.all_steps(), reverse=True):
        state, reason = _try_step(manager, step, abstract_state)
        if state is not None:
            if bad and quarantine is not None:
                manager.reload()  # it still lists the steps moved aside
            if bad:
                log.warning(
                    "using checkpoint step %d instead of the unreadable step(s) %s",
                    step,
                    ", ".join(str(s) for s, _ in bad),
                )
            return step, state
        bad.append((step, reason))
        where = ""
        if quarantine is not None:
            where = f"; moved to {_move_aside(manager, step, pathlib.Path(quarantine))}"
        log.warning("checkpoint step %d in %s is unreadable: %s%s", step, manager.directory,
                    reason, where)  # fmt: skip
    if bad and quarantine is not None:
        manager.reload()
    if bad:
        step, reason = bad[0]
        moved = f" (moved to {quarantine})" if quarantine is not None else ""
        raise CheckpointError(
            f"no readable checkpoint in {manager.directory}: step(s) "
            f"{', '.join(str(s) for s, _ in bad)} failed to restore{moved}, the newest with "
            f"{reason}; restore a backup, or use a new --workdir to start over"
        )
    if quarantine is not None and any(pathlib.Path(quarantine).glob("*")):
        raise CheckpointError(
            f"{manager.directory} has no checkpoint left and {quarantine} holds unreadable "
            "ones; restore a backup, or use a new --workdir to start over"
        )
    return 0, None


def _move_aside(manager, step: int, quarantine: pathlib.Path) -> pathlib.Path:
    quarantine.mkdir(parents=True, exist_ok=True)
    target, n = quarantine / str(step), 1
    while target.exists():
        n += 1
        target = quarantine / f"{step}.{n}"
    shutil.move(str(pathlib.Path(manager.directory) / str(step)), target)
    return target


# --- rebuilding a run -------------------------------------------------------------------------


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
    try:
        record = json.loads(paths[0].read_text())
        info = json.loads(paths[1].read_text())
    except ValueError as err:
        raise UserError(f"cannot read {paths[0]} / {paths[1]}: {err}") from err
    location = record.pop(FAMILY_LOCATION_KEY, None)
    if location is None:
        raise UserError(
            f"{paths[0]} does not say where the run's family is defined; it was written by an "
            "older genimg: retrain the run with this version"
        )
    config = ml_collections.ConfigDict(record)
    config.lock()
    return config, info, location


def restore_run(workdir, step: int | None = None):
    """Rebuild a run from its workdir: ``(config, family, state, run_info)`` at ``step``
    (default: the newest checkpoint that restores; an unreadable newer one is skipped with a
    warning, and left where it is)."""
    config, info, location = load_run_config(workdir)
    build = load_builder(location)
    family: Family = build(config, tuple(info["image_shape"]), info.get("num_classes"))
    directory = pathlib.Path(workdir) / CHECKPOINT_DIR
    if not directory.is_dir():
        raise FileNotFoundError(f"no checkpoint in {directory}: train the run first")
    manager = checkpoint_manager(workdir, read_only=True)
    try:
        abstract = jax.eval_shape(family.init_state, jax.random.key(0))
        if step is None:
            _, state = restore_latest(manager, abstract)
            if state is None:
                raise FileNotFoundError(f"no checkpoint in {directory}: train the run first")
        else:
            if step not in manager.all_steps():
                have = ", ".join(map(str, manager.all_steps())) or "none"
                raise CheckpointError(f"no checkpoint of step {step} in {directory} (have {have})")
            state, reason = _try_step(manager, step, abstract)
            if state is None:
                raise CheckpointError(f"checkpoint step {step} in {directory}: {reason}")
    finally:
        manager.close()
    return config, family, state, info

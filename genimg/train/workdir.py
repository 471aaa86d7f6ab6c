"""A run's folder: one writer at a time, checked before training, rewritten atomically.

- `RunLock`: an exclusive ``fcntl.flock`` on ``workdir/.lock``. The kernel drops the lock when
  its process dies, however it dies (kill -9 included), so there is no stale lock to clean up;
  a second process on the same workdir gets a one-line error that names the PID holding it.
- `prepare`: the workdir exists (created if needed), is a writable directory and has room for
  what the run will keep; every problem is one `WorkdirError` line, raised before training.
- `atomic_write_text`: run files (``config.json``, a trimmed ``metrics.jsonl``) are written to
  a temporary file in the same folder, flushed to disk and renamed over the old one, so a
  reader -- or a run killed half-way -- only ever sees the old or the new file.
- `trim_jsonl`: on resume, drop the log lines of the steps after the restored checkpoint, and
  a torn last line left by a killed writer, with a warning.
- `config_changes`: what differs between the config a run was started with and the one it is
  resumed with; only `RESUMABLE_KEYS` may differ.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import fnmatch
import json
import logging
import math
import os
import pathlib
import re
import shutil
import socket
import tempfile
from collections.abc import Mapping

from genimg.errors import ConfigError, UserError

CONFIG_FILE = "config.json"
RUN_INFO_FILE = "run_info.json"
METRICS_FILE = "metrics.jsonl"
LOCK_FILE = ".lock"
CONFIG_CHANGES_FILE = "config_changes.jsonl"  # one line per resume that changed a safe key

# What may change between the runs of one workdir: how long to train, how often to log,
# sample, save and evaluate, how to react to non-finite values, the device count (the
# state is saved unreplicated) and whether written images carry the watermark. Nothing here
# changes the state's structure, the data or the update rule; any other difference is an
# error.
RESUMABLE_KEYS = (
    "train.steps",
    "train.max_minutes",
    "train.log_every",
    "train.log_norms",
    "train.checkpoint_every",
    "train.keep_checkpoints",
    "train.sample_every",
    "train.num_samples",
    "train.progress",
    "train.num_devices",
    "model.dtype",
    "train.distributed",
    "train.distributed_timeout_s",
    "train.on_nonfinite",
    "train.max_rollbacks",
    "train.rollback_lr_scale",
    "eval.*",
    "provenance.watermark",
    "model.conv_backend",  # who computes the convolutions, not what they compute
)
# run_info.json keys that describe the data the state was trained on.
_DATA_SHAPE_KEYS = ("image_shape", "num_classes")
_ABSENT = "<absent>"

log = logging.getLogger("genimg")


class WorkdirError(UserError):
    """The workdir cannot be used (missing permission, no space, another writer)."""


# --- one writer ---------------------------------------------------------------------------


class RunLock:
    """Exclusive use of a workdir by this process (``with RunLock(workdir): ...``)."""

    def __init__(self, workdir):
        self.path = pathlib.Path(workdir) / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> None:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise WorkdirError(f"cannot create {self.path}: {os_reason(err)}") from err
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise WorkdirError(
                f"{self.path.parent} is in use by another training process ({holder}); wait "
                "for it to finish or stop it, or use another --workdir"
            ) from None
        except OSError as err:  # e.g. a file system without locks: run, but say so
            log.warning("cannot lock %s (%s); make sure no other run uses it", self.path, err)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock; the file stays (no unlink race)
            self._fd = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _read_holder(fd: int) -> str:
    try:
        pid, _, host = os.pread(fd, 256, 0).decode(errors="replace").strip().partition(" ")
    except OSError:
        pid = host = ""
    if not pid:
        return "PID unknown"
    here = host in ("", socket.gethostname())
    return f"PID {pid}" + ("" if here else f" on host {host}")


# --- checks before training ---------------------------------------------------------------


def prepare(workdir, need_bytes: int = 0, what: str = "") -> pathlib.Path:
    """Create ``workdir`` if needed and check that it is a writable directory with at least
    ``need_bytes`` free (``what`` says what they are for). Returns the path."""
    workdir = pathlib.Path(workdir)
    try:
        workdir.mkdir(parents=True, exist_ok=True)
    except FileExistsError as err:
        raise WorkdirError(f"--workdir {workdir} exists and is not a directory") from err
    except OSError as err:
        raise WorkdirError(f"cannot create the workdir {workdir}: {os_reason(err)}") from err
    if not workdir.is_dir():
        raise WorkdirError(f"--workdir {workdir} exists and is not a directory")
    try:  # permissions alone do not tell (root, read-only mounts, quotas): try a write
        with tempfile.TemporaryFile(dir=workdir) as probe:
            probe.write(b"\0" * 4096)
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as err:
        reason = err.strerror or str(err)  # not the probe's random file name
        raise WorkdirError(f"the workdir {workdir} is not writable: {reason}") from err
    check_free_space(workdir, need_bytes, what)
    return workdir


def check_free_space(workdir, need_bytes: int, what: str = "") -> None:
    free = shutil.disk_usage(workdir).free
    if need_bytes > free:
        raise WorkdirError(
            f"not enough free space in {workdir}: {_mb(free)} free, {what or 'the run'} need "
            f"about {_mb(need_bytes)}; free some space or use another --workdir"
        )


def _mb(n: int) -> str:
    return f"{n / 2**20:.1f} MB"


def os_reason(err: OSError) -> str:
    """``No space left on device: /path`` from an `OSError`."""
    reason = err.strerror or str(err)
    return f"{reason}: {err.filename}" if err.filename else reason


_FIXABLE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO)
# TensorStore (Orbax's array writer) reports the errno in its message, not as an OSError.
_TENSORSTORE_ERRNO = re.compile(r"os_error_code='?(\d+)")


def disk_error(err: BaseException) -> str | None:
    """What the file system refused, when ``err`` (or a cause) is a failure a user can fix --
    a full disk or quota, a read-only or failing file system, a permission -- else None."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno in _FIXABLE_ERRNOS:
            return os_reason(err)
        code = _TENSORSTORE_ERRNO.search(str(err))
        if code and int(code.group(1)) in _FIXABLE_ERRNOS:
            return os.strerror(int(code.group(1)))
        err = err.__cause__ or err.__context__
    return None


# --- atomic rewrites ----------------------------------------------------------------------


def _file_mode() -> int:
    """What ``open(path, "w")`` would give a new file (0o666 less the umask)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


_FILE_MODE = _file_mode()  # read once, at import: setting the umask is process-wide


def atomic_write_text(path, text: str) -> None:
    """Replace ``path`` by ``text`` at once: temporary file, fsync, rename, fsync the folder."""
    path = pathlib.Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, _FILE_MODE)  # mkstemp makes it private (0600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def write_json(path, record) -> None:
    atomic_write_text(path, json.dumps(record, indent=2) + "\n")


def _fsync_dir(directory: pathlib.Path) -> None:
    with contextlib.suppress(OSError):  # not every file system can open a directory
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def remove_temporary_files(workdir) -> None:
    """Leftovers of writes a killed process did not finish (their targets are intact)."""
    workdir = pathlib.Path(workdir)
    for pattern in (".*.tmp", "samples/*.tmp"):
        for leftover in workdir.glob(pattern):
            with contextlib.suppress(OSError):
                leftover.unlink()


# --- logs ---------------------------------------------------------------------------------


def trim_jsonl(path, last_step: int) -> None:
    """Keep the lines of ``path`` with ``step <= last_step``; drop unreadable ones (a torn
    last line) with a warning. Rewritten atomically, and only when something changes."""
    path = pathlib.Path(path)
    if not path.exists():
        return
    text = path.read_bytes().decode("utf-8", errors="replace")
    lines = text.splitlines()
    keep, unreadable = [], []
    for number, line in enumerate(lines, 1):
        try:
            step = json.loads(line)["step"]
            if not isinstance(step, int):
                raise TypeError(step)
        except (ValueError, KeyError, TypeError):
            unreadable.append(number)
            continue
        if step <= last_step:
            keep.append(line)
    if unreadable:
        log.warning(
            "dropped %d unreadable line(s) of %s (line %s), the end of an interrupted write",
            len(unreadable),
            path,
            ", ".join(map(str, unreadable[:5])),
        )
    new_text = "".join(line + "\n" for line in keep)
    if new_text != text:
        atomic_write_text(path, new_text)


# --- config compatibility -----------------------------------------------------------------


def flatten(record: Mapping, prefix: str = "") -> dict:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (lists are values)."""
    out = {}
    for key, value in record.items():
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def resumable(key: str) -> bool:
    return any(fnmatch.fnmatchcase(key, pattern) for pattern in RESUMABLE_KEYS)


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def config_changes(old: Mapping, new: Mapping) -> dict[str, tuple]:
    """``{dotted key: (old, new)}`` for every key whose value differs (or exists once)."""
    old, new = flatten(old), flatten(new)
    return {
        key: (old.get(key, _ABSENT), new.get(key, _ABSENT))
        for key in sorted(old.keys() | new.keys())
        if not _same(old.get(key, _ABSENT), new.get(key, _ABSENT))
    }


def check_resume(workdir, record: Mapping, run_info: Mapping) -> dict[str, tuple]:
    """Compare the config and data shape of a resumed run with those recorded in
    ``workdir``; return the (allowed) changes, or raise a one-line `ConfigError` that names
    the keys that may not change. Reads only; call it before anything is rewritten."""
    workdir = pathlib.Path(workdir)
    recorded = _read_json(workdir / CONFIG_FILE)
    if recorded is None:
        return {}
    recorded = {k: v for k, v in recorded.items() if k != "family_location"}
    record = {k: v for k, v in record.items() if k != "family_location"}
    changes = config_changes(recorded, record)
    old_info = _read_json(workdir / RUN_INFO_FILE) or {}
    for key in _DATA_SHAPE_KEYS:
        if key in old_info and not _same(old_info[key], run_info.get(key, _ABSENT)):
            changes[f"data shape: {key}"] = (old_info[key], run_info.get(key, _ABSENT))
    blocked = {k: v for k, v in changes.items() if not resumable(k)}
    if blocked:
        shown = [f"{k} {_show(a)} -> {_show(b)}" for k, (a, b) in list(blocked.items())[:6]]
        more = f" and {len(blocked) - 6} more" if len(blocked) > 6 else ""
        raise ConfigError(
            f"this config differs from the one the run in {workdir} was started with "
            f"({CONFIG_FILE}): {', '.join(shown)}{more}; these cannot change on resume "
            "(only train.steps, train.max_minutes, the log/sample/checkpoint intervals and "
            "eval settings can): "
            "rerun with the recorded values or use a new --workdir"
        )
    return changes


def record_changes(workdir, step: int, changes: Mapping[str, tuple]) -> None:
    """Append the allowed changes of a resume at ``step`` to ``config_changes.jsonl``."""
    if not changes:
        return
    for key, (old, new) in changes.items():
        log.info("resuming at step %d with %s = %s (was %s)", step, key, _show(new), _show(old))
    line = json.dumps({"step": step, "changes": {k: list(v) for k, v in changes.items()}})
    with open(pathlib.Path(workdir) / CONFIG_CHANGES_FILE, "a") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())


def _show(value) -> str:
    return value if value == _ABSENT else json.dumps(value)


def _read_json(path: pathlib.Path):
    """The JSON in ``path``, None when it is missing; unreadable -> a warning and None."""
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        log.warning("cannot read %s (%s); it is not compared with this run's", path, err)
        return None

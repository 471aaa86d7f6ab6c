"""The one training loop every experiment uses.

``train(config, workdir, family, data)`` runs ``config.train.steps`` steps of the family's
pure train step -- ``jax.jit`` on one device, ``jax.pmap`` over several -- and around it:

- auto-resume: the newest checkpoint in ``workdir/checkpoints`` that restores is used (an
  unreadable one is moved aside with a warning, `genimg.train.checkpoint.restore_latest`), so
  rerunning the same command continues where it stopped and reproduces the uninterrupted run
  (the RNG and the data order are functions of the step). A resumed config may change only
  the keys of `genimg.train.workdir.RESUMABLE_KEYS`; the check comes before any file of the
  workdir is rewritten;
- one writer per workdir (an OS lock that dies with its process), and a writable workdir with
  room for two checkpoints, checked before training starts;
- a tqdm progress bar, ``workdir/metrics.jsonl`` and TensorBoard events in ``workdir/tb``
  (written synchronously; a resumed run drops the log lines after its checkpoint and starts a
  new event file that purges the old events after it);
- a PNG sample grid (fixed noise, EMA weights) every ``train.sample_every`` steps in
  ``workdir/samples``, carrying the run's provenance (PNG text and, unless
  ``provenance.watermark=False``, the invisible mark: `genimg.train.run_provenance`);
- ``workdir/MODEL_CARD.md`` (`genimg.train.model_card`), written when the run starts and when
  it ends;
- callbacks the experiment passes (``Callback(every, fn)``), e.g. periodic sample-quality
  evaluation (``genimg.metrics.periodic``): the numbers they return are logged at that step;
- periodic and final checkpoints, saved after everything else of their step is written (so a
  checkpoint implies its step's logs and grids), and only of finite states;
- SIGTERM / SIGINT: the current step is finished and saved, one line says where to resume
  (`genimg.errors.Interrupted`: exit 0 / 130); a second signal ends the process at once;
- non-finite values: ``train.on_nonfinite="stop"`` raises a `TrainingError` naming the
  quantity and the step; ``"rollback"`` restores the last good checkpoint, skips the batch of
  the bad step, multiplies the learning rates (``optim.lr`` and every ``optim.*_lr``) by
  ``train.rollback_lr_scale``, and gives up after ``train.max_rollbacks`` rollbacks. The
  rollbacks are kept in ``workdir/rollbacks.json``, so a resumed run replays them.

The host reads metrics only every ``train.log_every`` steps (and before a checkpoint), so
steps queue up on the device in between.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import itertools
import json
import logging
import math
import os
import pathlib
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
import tqdm

from genimg import data as data_lib
from genimg import images as images_lib
from genimg import platform
from genimg.errors import ConfigError, Interrupted, UserError
from genimg.ops import onednn
from genimg.train import checkpoint as ckpt
from genimg.train import model_card, run_provenance
from genimg.train import workdir as workdir_lib
from genimg.train.common import compile_step, replicate, to_unit_range, unreplicate
from genimg.train.family import Family, build_family, family_location

AXIS = "batch"


def _import_tensorboardx():
    """tensorboardX's modules, imported with torch hidden.

    tensorboardX's package ``__init__`` imports torch whenever it is installed (its
    SummaryWriter accepts torch tensors): about 470 MB of resident memory and seconds of
    start-up for a loop that writes numpy scalars and images only. ``sys.modules["torch"] =
    None`` makes that ``import torch`` raise the ImportError tensorboardX expects without
    torch; the entry is removed again, so a later ``import torch`` works as usual.
    """
    hide = "torch" not in sys.modules
    if hide:
        sys.modules["torch"] = None
    try:
        from tensorboardX import summary
        from tensorboardX.event_file_writer import EventsWriter
        from tensorboardX.proto.event_pb2 import Event, SessionLog
    finally:
        if hide and "torch" in sys.modules and sys.modules["torch"] is None:
            del sys.modules["torch"]
    return summary, EventsWriter, Event, SessionLog


tb_summary, EventsWriter, Event, SessionLog = _import_tensorboardx()

NONFINITE_POLICIES = ("stop", "rollback")
ROLLBACKS_FILE = "rollbacks.json"
log = logging.getLogger("genimg")


class TrainingError(UserError, RuntimeError):
    """A run cannot continue (non-finite values, bad settings); the message is one line."""


@dataclasses.dataclass(frozen=True)
class StepContext:
    """What a callback sees: the step just finished and the run around it."""

    step: int
    state: Any  # the host (unreplicated) state after ``step`` steps
    family: Family
    workdir: pathlib.Path
    config: Any


@dataclasses.dataclass(frozen=True)
class Callback:
    """``fn(ctx) -> dict of scalars or None``, called after every ``every``-th step (and after
    the last step when ``at_end``); the scalars are logged at that step."""

    every: int
    fn: Callable[[StepContext], dict | None]
    at_end: bool = False

    def due(self, step: int, last: bool) -> bool:
        return bool(self.every) and (step % self.every == 0 or (last and self.at_end))


def num_devices(config) -> int:
    """``train.num_devices`` (0 = every local device)."""
    n = config.train.num_devices or jax.local_device_count()
    if n > jax.local_device_count():
        raise TrainingError(
            f"train.num_devices={n} but only {jax.local_device_count()} devices are visible"
        )
    return n


def run_record(config) -> dict:
    """What ``config.json`` holds: the resolved config plus where its family lives."""
    record = json.loads(config.to_json_best_effort())
    record[ckpt.FAMILY_LOCATION_KEY] = family_location(config.family)
    return record


def write_run_files(workdir: pathlib.Path, config, run_info: dict) -> None:
    """The resolved config (plus where its family lives, ``family_location``) and what the
    data gave (shape, classes) next to the outputs, each replaced atomically."""
    workdir.mkdir(parents=True, exist_ok=True)
    workdir_lib.write_json(workdir / ckpt.CONFIG_FILE, run_record(config))
    workdir_lib.write_json(workdir / ckpt.RUN_INFO_FILE, run_info)


class _NonFinite(Exception):
    def __init__(self, step: int, name: str, value: float):
        super().__init__(f"non-finite {name}={value} at step {step}")
        self.step, self.name, self.value = step, name, value


def _first_non_finite(host_metrics: list[tuple[int, dict]]):
    for step, metrics in host_metrics:
        for name, value in metrics.items():
            if not math.isfinite(float(value)):
                return step, name, float(value)
    return None


class _StopSignals:
    """SIGTERM and SIGINT during training. The first one asks the loop to stop after the
    current step and save; it also restores the signals' default action, so a second one
    ends the process at once -- even inside a long XLA call -- which loses nothing saved:
    every file of a run is renamed into place whole, and the next run resumes from the last
    checkpoint. Installed only from the main thread (Python's rule for handlers)."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.received: int | None = None
        self._previous: dict = {}

    def __enter__(self) -> _StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        self.received = signum
        for sig in self.SIGNALS:
            signal.signal(sig, signal.SIG_DFL)
        log.warning(
            "%s received: stopping after this step and saving a checkpoint (send it again "
            "to stop at once, without saving)",
            signal.Signals(signum).name,
        )

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


_writer_ids = itertools.count()


class _TensorBoard:
    """TensorBoard events written synchronously (a killed run loses none it logged). Given
    ``purge_step``, the new event file starts with TensorBoard's purge marker: the events of
    earlier files at or after that step are dropped when it is read."""

    def __init__(self, logdir: pathlib.Path, purge_step: int | None):
        logdir.mkdir(parents=True, exist_ok=True)
        suffix = f".{os.getpid()}.{next(_writer_ids)}"  # unique even within one second
        self._writer = EventsWriter(str(logdir / "events"), suffix)
        if purge_step is not None:
            start = SessionLog(status=SessionLog.START)
            self._write(Event(step=purge_step, session_log=start))
        self._writer.flush()

    def _write(self, event: Event) -> None:
        event.wall_time = time.time()
        self._writer.write_event(event)

    def scalars(self, step: int, metrics: dict) -> None:
        for name, value in metrics.items():
            self._write(Event(step=step, summary=tb_summary.scalar(name, value)))
        self._writer.flush()

    def image(self, step: int, picture: np.ndarray) -> None:
        summary = tb_summary.image("samples", picture, dataformats="HWC")
        self._write(Event(step=step, summary=summary))
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


class _NoWriters:
    """The writers of a process other than 0: it logs nothing."""

    def scalars(self, step: int, metrics: dict) -> None:
        pass

    def image(self, step: int, picture: np.ndarray) -> None:
        pass

    def close(self) -> None:
        pass


class _Writers:
    """metrics.jsonl + TensorBoard, opened once per (re)start."""

    def __init__(self, workdir: pathlib.Path, purge_step: int | None):
        self.jsonl = open(workdir / workdir_lib.METRICS_FILE, "a")  # noqa: SIM115 (close())
        self.tb = _TensorBoard(workdir / "tb", purge_step)

    def scalars(self, step: int, metrics: dict) -> None:
        self.jsonl.write(json.dumps({"step": step, **metrics}) + "\n")
        self.jsonl.flush()
        self.tb.scalars(step, metrics)

    def image(self, step: int, picture: np.ndarray) -> None:
        self.tb.image(step, picture)

    def close(self) -> None:
        if not self.jsonl.closed:
            self.jsonl.close()
            self.tb.close()


def _check_train_config(tc) -> None:
    if tc.on_nonfinite not in NONFINITE_POLICIES:
        raise ConfigError(
            f"train.on_nonfinite='{tc.on_nonfinite}'; expected one of "
            f"{', '.join(NONFINITE_POLICIES)}"
        )
    if tc.max_rollbacks < 0:
        raise ConfigError(f"train.max_rollbacks must be >= 0, got {tc.max_rollbacks}")
    if not 0 < tc.rollback_lr_scale <= 1:
        raise ConfigError(f"train.rollback_lr_scale must be in (0, 1], got {tc.rollback_lr_scale}")
    for key in ("steps", "log_every", "checkpoint_every"):
        if tc[key] < 1:
            raise ConfigError(f"train.{key} must be >= 1, got {tc[key]}")
    if tc.max_minutes < 0:
        raise ConfigError(f"train.max_minutes must be >= 0 (0 = no budget), got {tc.max_minutes}")
    if tc.max_minutes and jax.process_count() > 1:
        raise ConfigError(
            "train.max_minutes needs a single process: processes would stop at different "
            "steps; set train.steps instead"
        )


def scale_learning_rates(config, scale: float):
    """A copy of ``config`` whose learning rates (``optim.lr`` and every float
    ``optim.*_lr``) are multiplied by ``scale``, and the names of the keys it changed."""
    scaled = copy.deepcopy(config)
    changed = []
    if "optim" in scaled:
        for key, value in scaled.optim.items():
            if (key == "lr" or key.endswith("_lr")) and isinstance(value, float):
                scaled.optim[key] = value * scale
                changed.append(f"optim.{key}")
    return scaled, changed


def _tree_bytes(tree) -> int:
    return sum(int(np.prod(x.shape)) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree))


class _Rollbacks:
    """The rollbacks of a run (``rollbacks.json``): which steps' batches are skipped and how
    far the learning rates are scaled down."""

    def __init__(self, workdir: pathlib.Path, start: int, write: bool = True):
        self.path, self.write = workdir / ROLLBACKS_FILE, write
        entries = []
        if self.path.exists():
            try:
                entries = json.loads(self.path.read_text())["rollbacks"]
            except (OSError, ValueError, KeyError, TypeError) as err:
                raise TrainingError(f"cannot read {self.path}: {err}") from err
        # Rollbacks to a step after the resumed one happen again, identically, on the way.
        self.entries = [e for e in entries if e["restored_step"] <= start]
        if len(self.entries) != len(entries):
            self._write()

    @property
    def lr_scale(self) -> float:
        return math.prod(e["lr_scale"] for e in self.entries)

    def batch_index(self, step: int) -> int:
        """The data batch of 0-based ``step`` (the one that makes step ``step + 1``)."""
        return step + sum(e["bad_step"] <= step + 1 for e in self.entries)

    def add(self, bad: _NonFinite, restored_step: int, scale: float) -> None:
        value = bad.value if math.isfinite(bad.value) else str(bad.value)
        self.entries.append(
            dict(bad_step=bad.step, metric=bad.name, value=value, restored_step=restored_step,
                 lr_scale=scale)
        )  # fmt: skip
        self._write()

    def _write(self) -> None:
        if self.write:
            workdir_lib.write_json(self.path, {"rollbacks": self.entries})


class _Trainer:
    """One call of `train`: the run's pieces and the loop's steps as methods."""

    def __init__(self, config, workdir, family, data, run_info, callbacks, rebuild):
        self.config, self.tc = config, config.train
        _check_train_config(self.tc)
        self.workdir = pathlib.Path(workdir)
        self.family, self.data, self.callbacks = family, data, callbacks
        self.n_dev = data.n_devices
        self.run_info = dict(run_info or {}, image_shape=list(data.image_shape),
                             n_devices=self.n_dev * jax.process_count())  # fmt: skip
        if jax.process_count() > 1:
            self.run_info["num_processes"] = jax.process_count()
        self.rebuild = rebuild or (
            lambda cfg: build_family(cfg, data.image_shape, self.run_info.get("num_classes"))
        )
        self.init_rng, self.step_rng, self.sample_rng = jax.random.split(
            jax.random.key(self.tc.seed), 3
        )
        # With several processes (jax.distributed) all of them step, restore and save (Orbax
        # saves collectively); only process 0 writes the logs, grids, run files and callbacks.
        self.primary = platform.is_primary()
        self.pending: list[tuple[int, dict]] = []
        self.last_saved = 0  # the newest checkpoint known to be on disk
        self.saving: int | None = None  # the step of a save in flight

    def _compile(self, family: Family):
        return compile_step(family.make_train_step(AXIS if self.n_dev > 1 else None), self.n_dev,
                            AXIS)  # fmt: skip

    # --- host views of the state ------------------------------------------------------------

    def host_state(self):
        return unreplicate(self.state) if self.n_dev > 1 else self.state

    def _set_state(self, host_state) -> None:
        # The arrays of ``host_state`` in the structure of the current family's state: a
        # rebuilt family (scaled learning rates) brings new optimizers, which a state holds as
        # static fields of its tree.
        host_state = jax.tree.unflatten(self.treedef, jax.tree.leaves(host_state))
        if self.n_dev > 1:
            host_state = replicate(host_state, jax.local_devices()[: self.n_dev])
        self.state = host_state

    # --- the run ----------------------------------------------------------------------------

    def _build(self) -> None:
        family = self.family
        try:  # a model that cannot be built from the config fails here, before any write
            self.initial_state = jax.jit(family.init_state)(self.init_rng)  # one compile
            self.step_fn = self._compile(family)
        except ValueError as err:
            reason = _first_line(err)
            raise ConfigError(f"cannot build the '{family.name}' model: {reason}") from err
        self.treedef = jax.tree.structure(self.initial_state)
        self.sample_fn = self.translate_fn = None
        if not self.tc.sample_every:
            pass
        elif family.sample is not None:
            self.sample_fn = jax.jit(family.sample, static_argnums=2)
        elif family.translate is not None and self.data.input_shape is not None:
            # Image-to-image families: the first examples of the data, translated (no noise).
            self.fixed = self.data.first(min(self.tc.num_samples, self.data.num_examples))
            self.translate_fn = jax.jit(family.translate)

    def run(self):
        tc, workdir = self.tc, self.workdir
        self.t_start, self.out_of_time = time.perf_counter(), False
        # Read-only checks first: a resumed run with another model or data fails at once.
        self.changes = {}
        if ckpt.finished_steps(workdir):
            self.changes = workdir_lib.check_resume(workdir, run_record(self.config), self.run_info)
        self._build()
        # Orbax's files take about 1.2x the arrays' bytes (metadata, small-array copies).
        need = 2 * (_tree_bytes(self.initial_state) * 5 // 4 + 2**16)
        workdir_lib.prepare(workdir, need, "two checkpoints of this model")
        lock = workdir_lib.RunLock(workdir) if self.primary else contextlib.nullcontext()
        with _StopSignals() as signals, lock, ckpt.quiet_orbax():
            self.manager = ckpt.checkpoint_manager(workdir, tc.keep_checkpoints)
            try:
                state = self._loop(self._resume(), signals)
            except BaseException:
                with contextlib.suppress(Exception):  # the error in flight is the one to tell
                    self.manager.close()
                raise
            try:
                self.manager.close()
            except Exception as err:
                raise self._save_error(err) from err
            if self.primary:
                model_card.refresh(workdir, state)
            return state

    def _resume(self) -> int:
        """Restore the newest good checkpoint, then rewrite the run files for this run.
        Returns the step to start from."""
        workdir = self.workdir
        start, restored = ckpt.restore_latest(
            self.manager, self.initial_state, quarantine=self._quarantine()
        )
        if start:
            log.info("resumed from %s at step %d", self.manager.directory, start)
        self.last_saved = start
        self.rollbacks = _Rollbacks(workdir, start, write=self.primary)
        if self.rollbacks.entries:
            self._use_learning_rate_scale(self.rollbacks.lr_scale)
        self._set_state(self.initial_state if restored is None else restored)
        self._add_identity()
        if self.primary:
            write_run_files(workdir, self.config, self.run_info)
            workdir_lib.record_changes(workdir, start, self.changes)
            workdir_lib.trim_jsonl(workdir / workdir_lib.METRICS_FILE, start)
            workdir_lib.remove_temporary_files(workdir)
            model_card.refresh(workdir, self.host_state())
        self.writers = self._open_writers(start)
        return start

    def _quarantine(self) -> pathlib.Path | None:
        """Where an unreadable checkpoint is moved (process 0 only moves files)."""
        return self.workdir / ckpt.QUARANTINE_DIR if self.primary else None

    def _add_identity(self) -> None:
        """Run id and config hash (kept from an existing ``run_info.json``) and whether the
        images carry the watermark, into ``self.run_info``; one warning line when they do
        not."""
        path = self.workdir / ckpt.RUN_INFO_FILE
        try:
            old = json.loads(path.read_text()) if path.is_file() else {}
        except (OSError, ValueError):
            old = {}  # rewritten below; an unreadable one was reported by check_resume
        watermark = run_provenance.watermark_enabled(self.config)
        self.run_info.update(run_provenance.identity(run_record(self.config), old, watermark))
        if not watermark and self.primary:
            log.warning(
                "provenance.watermark=False: the sample grids of %s carry no invisible "
                "watermark, only PNG text (recorded in run_info.json and MODEL_CARD.md)",
                self.workdir,
            )

    def _open_writers(self, start: int) -> _Writers | _NoWriters:
        if not self.primary:
            return _NoWriters()
        old_events = any((self.workdir / "tb").glob("events.out.tfevents.*"))
        return _Writers(self.workdir, start + 1 if old_events else None)

    def _loop(self, start: int, signals: _StopSignals):
        tc = self.tc
        self.bar = tqdm.tqdm(total=tc.steps, initial=start, desc=self.workdir.name,
                             dynamic_ncols=True, disable=not (tc.progress and self.primary),
                             unit="step")  # fmt: skip
        self.t_log, self.steps_since_log = time.perf_counter(), 0
        step = start
        try:
            while step < tc.steps and not self.out_of_time:
                batch = self.data.batch(self.rollbacks.batch_index(step))
                self.state, metrics = self.step_fn(self.state, batch, self.step_rng)
                step += 1
                self.pending.append((step, metrics))
                self.steps_since_log += 1
                self.bar.update(1)
                try:
                    self._after_step(step)
                    if signals.received is not None and step < tc.steps:
                        self._stop(step, signals.received)
                except _NonFinite as bad:
                    step = self._recover(bad)
            self._wait_for_saves()
            self.writers.close()
        except OSError as err:
            reason = workdir_lib.disk_error(err)
            if reason is None:
                raise
            with contextlib.suppress(Exception):  # to name the newest checkpoint on disk
                self._wait_for_saves()
            raise TrainingError(
                f"cannot write to {self.workdir}: {reason}; the last checkpoint is step "
                f"{self.last_saved}: free space (or fix the folder) and rerun the same command "
                "to resume"
            ) from err
        finally:
            self.bar.close()
            with contextlib.suppress(Exception):  # closed above unless an error is in flight
                self.writers.close()
        return self.host_state()

    def _after_step(self, done: int) -> None:
        tc = self.tc
        is_last = done == tc.steps or self._time_up(done)
        save_now = is_last or done % tc.checkpoint_every == 0
        if save_now or done % tc.log_every == 0:
            logged = self._flush()
            self.bar.set_postfix({k: f"{logged[k]:.3g}" for k in _bar_keys(logged)},
                                 refresh=False)  # fmt: skip
        drawing = self.sample_fn is not None or self.translate_fn is not None
        if self.primary and drawing and (done % tc.sample_every == 0 or is_last):
            self.save_samples(done)
        if self.primary:
            self._run_callbacks(done, is_last)
        if save_now:
            self._save(done)

    def _time_up(self, done: int) -> bool:
        """Whether ``train.max_minutes`` has passed (logged once, when it has)."""
        budget = self.tc.max_minutes
        if not budget or time.perf_counter() - self.t_start < 60 * budget:
            return False
        self.out_of_time = True
        log.info("train.max_minutes=%g reached after step %d of %d; rerun the same command to "
                 "train for another %g minutes", budget, done, self.tc.steps, budget)  # fmt: skip
        return True

    def _flush(self, log_it: bool = True) -> dict:
        """Fetch queued metrics, stop on non-finite ones, log the newest (if ``log_it``)."""
        if not self.pending:
            return {}
        # Under pmap every metric is [n_devices] copies of one pmean-ed value: take the first.
        host = [
            (s, {k: float(np.ravel(v)[0]) for k, v in jax.device_get(m).items()})
            for s, m in self.pending
        ]
        self.pending = []
        bad = _first_non_finite(host)
        if bad is not None:
            raise _NonFinite(*bad)
        if not log_it:
            return {}
        step, metrics = host[-1]
        now = time.perf_counter()
        metrics["steps_per_s"] = self.steps_since_log / max(now - self.t_log, 1e-9)
        self.t_log, self.steps_since_log = now, 0
        self.writers.scalars(step, metrics)
        return metrics

    def save_samples(self, step: int) -> None:
        host = self.host_state()
        if self.translate_fn is not None:
            fixed = self.fixed
            outputs = jax.device_get(self.translate_fn(host, fixed["input"]))
            grid = images_lib.translation_grid(
                images_lib.show_inputs(fixed["input"], self.data.input_classes),
                outputs,
                to_unit_range(fixed["image"], self.family.data_scale),
            )
        else:
            images, _ = jax.device_get(self.sample_fn(host, self.sample_rng, self.tc.num_samples))
            grid = images_lib.make_grid(images)
        provenance = run_provenance.provenance_for_run(self.run_info, host)
        picture = images_lib.save_png(
            self.workdir / "samples" / f"step_{step:07d}.png", grid, provenance
        )
        self.writers.image(step, picture)

    def _run_callbacks(self, step: int, last: bool) -> None:
        due = [cb for cb in self.callbacks if cb.due(step, last)]
        if not due:
            return
        ctx = StepContext(step, self.host_state(), self.family, self.workdir, self.config)
        for cb in due:
            numbers = cb.fn(ctx)
            if numbers:
                self.writers.scalars(step, numbers)

    def _save(self, done: int) -> None:
        """Launch an (asynchronous) save of step ``done``, once the previous one is on disk:
        a failed save is then reported with its own step, before the next one starts."""
        self._wait_for_saves()
        host = self.host_state()
        if not ckpt.all_finite(host):
            raise _NonFinite(done, "value in the state", float("nan"))
        self.saving = done
        try:
            ckpt.save(self.manager, done, host)
        except Exception as err:
            raise self._save_error(err) from err

    def _wait_for_saves(self) -> None:
        if self.saving is None:
            return
        try:
            self.manager.wait_until_finished()
        except Exception as err:
            raise self._save_error(err) from err
        self.last_saved, self.saving = self.saving, None

    def _save_error(self, err: Exception) -> Exception:
        """A one-line `TrainingError` for a save the file system refused; else ``err``."""
        reason = workdir_lib.disk_error(err)
        if reason is None:
            return err
        # Orbax writes each array in its own asyncio future; when the disk fills, the others
        # fail with the same error, and asyncio logs each unretrieved one ("Future exception
        # was never retrieved", with its traceback) when it is collected, after this one-line
        # error. That failure is reported here, once: keep the rest of the process quiet.
        logging.getLogger("asyncio").setLevel(logging.CRITICAL)
        kept = [s for s in ckpt.finished_steps(self.workdir) if s != self.saving]
        intact = f"those of step(s) {', '.join(map(str, kept))} are intact" if kept else "none"
        return TrainingError(
            f"cannot save the checkpoint of step {self.saving} in {self.manager.directory}: "
            f"{reason}; earlier checkpoints: {intact}; free space (or fix the folder) and "
            "rerun the same command to resume"
        )

    def _stop(self, done: int, signum: int) -> None:
        """After a signal: save the state of step ``done`` (if not saved yet) and raise
        `Interrupted`. The log keeps the lines an uninterrupted run has."""
        if done not in (self.last_saved, self.saving):
            self._flush(log_it=False)  # no checkpoint of a non-finite state
            self._save(done)
        self._wait_for_saves()
        name = signal.Signals(signum).name
        self.bar.close()
        raise Interrupted(
            f"stopped by {name} after step {done} of {self.tc.steps}: checkpoint saved in "
            f"{self.manager.directory}; rerun the same command to resume",
            exit_code=0 if signum == signal.SIGTERM else 128 + signum,
        )

    def _recover(self, bad: _NonFinite) -> int:
        """Handle a non-finite value: raise, or roll back and return the step to go on from."""
        self._wait_for_saves()  # so that the messages below name the newest checkpoint
        tc, n = self.tc, len(self.rollbacks.entries)
        where = (
            f"the last good checkpoint is step {self.last_saved} in {self.manager.directory}"
            if self.last_saved
            else "no checkpoint was saved"
        )
        if tc.on_nonfinite == "stop":
            raise TrainingError(
                f"{bad}; stopped without saving it, {where} (lower the learning rate or check "
                "the data, or set train.on_nonfinite=rollback)"
            )
        if n >= tc.max_rollbacks:
            raise TrainingError(
                f"{bad} after {n} rollback(s) (train.max_rollbacks={tc.max_rollbacks}); "
                f"stopped, {where} (lower the learning rate or check the data)"
            )
        self.pending = []
        restored_step, restored = ckpt.restore_latest(
            self.manager, self.initial_state, quarantine=self._quarantine()
        )
        self.last_saved = restored_step
        self.rollbacks.add(bad, restored_step, tc.rollback_lr_scale)
        changed = self._use_learning_rate_scale(self.rollbacks.lr_scale)
        self._set_state(self.initial_state if restored is None else restored)
        self.writers.close()
        if self.primary:
            workdir_lib.trim_jsonl(self.workdir / workdir_lib.METRICS_FILE, restored_step)
        self.writers = self._open_writers(restored_step)
        total = self.rollbacks.lr_scale
        self.writers.scalars(restored_step, {"rollback": n + 1, "rollback_lr_scale": total,
                                             "rollback_skipped_step": bad.step})  # fmt: skip
        scaled = f"{', '.join(changed)} x{total:g}" if changed else "no optim.*lr key to scale"
        log.warning(
            "%s: rolled back to step %d, skipping the batch of step %d; learning rates: %s "
            "(rollback %d of at most %d)",
            bad, restored_step, bad.step, scaled, n + 1, tc.max_rollbacks,
        )  # fmt: skip
        self.bar.n = restored_step
        self.bar.refresh()
        return restored_step

    def _use_learning_rate_scale(self, scale: float) -> list[str]:
        """Rebuild the family with its learning rates times ``scale`` (the restored state's
        structure is unchanged) and compile its step."""
        scaled, changed = scale_learning_rates(self.config, scale)
        if changed:
            self.family = self.rebuild(scaled)
            self.step_fn = self._compile(self.family)
            abstract = jax.eval_shape(self.family.init_state, self.init_rng)
            self.treedef = jax.tree.structure(abstract)
        return changed


def train(
    config,
    workdir,
    family: Family,
    data: data_lib.TrainData,
    run_info: dict | None = None,
    callbacks: Sequence[Callback] = (),
    rebuild: Callable[[Any], Family] | None = None,
):
    """Train ``family`` on ``data`` for ``config.train.steps`` steps; returns the final state.

    ``rebuild(config) -> Family`` builds the family of a modified config (a rollback scales
    the learning rates); by default the config's registered family for ``data``'s shape."""
    trainer = _Trainer(config, workdir, family, data, run_info, callbacks, rebuild)
    return trainer.run()


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


def _bar_keys(metrics: dict) -> list[str]:
    return [k for k in metrics if k.endswith("loss") or k == "loss"][:4]


def check_inputs(family: Family, input_shape, source: str) -> None:
    """An image-to-image family (``family.input_shape``) needs paired data whose inputs have
    that shape; a one-line `ConfigError` otherwise. Other families ignore inputs."""
    want = family.input_shape
    if want is None:
        return
    if input_shape is None:
        raise ConfigError(
            f"family '{family.name}' translates paired inputs, but data source '{source}' has "
            "none; use a paired: source (e.g. paired:labelmap:fashion_mnist, paired:folder:DIR)"
        )
    if tuple(input_shape) != tuple(want):
        raise ConfigError(
            f"family '{family.name}' was built for inputs {list(want)} but '{source}' gives "
            f"{list(input_shape)}; set the model's input channels to {input_shape[-1]}"
        )


def train_from_config(config, workdir, callbacks: Sequence[Callback] = ()):
    """Load ``config.data``, build ``config.family`` and run the loop: what every experiment's
    ``main`` does. Returns the final (unreplicated) state."""
    dc, tc = config.data, config.train
    try:
        platform.initialize_distributed(tc.distributed, tc.distributed_timeout_s)
    except ValueError as err:
        raise ConfigError(str(err)) from err
    log.info("%s", platform.describe_devices())
    loaded = data_lib.load(dc.source, dc.split, dc.image_size or None)
    log.info("data: %s", loaded.description)

    def build(cfg) -> Family:
        try:
            return build_family(cfg, loaded.images.shape[1:], loaded.num_classes)
        except ValueError as err:  # a config value the family rejects
            raise ConfigError(f"config of family '{cfg.family}': {_first_line(err)}") from err

    family = build(config)
    check_inputs(family, loaded.input_shape, dc.source)
    data = data_lib.TrainData(
        loaded.images,
        loaded.labels,
        global_batch=tc.batch_size * family.batch_multiplier,
        seed=tc.seed,
        n_devices=num_devices(config),
        scale=family.data_scale,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
        inputs=loaded.inputs,
        input_classes=loaded.input_classes,
        host_augment=family.host_augment,
    )
    info = {"data": loaded.description, "num_classes": loaded.num_classes}
    model_cfg = config.get("model")
    if model_cfg is not None and "conv_backend" in model_cfg:
        # What "auto" picked here (logged once), next to the config that says "auto".
        info["conv_backend"] = onednn.resolve_conv_backend(model_cfg.conv_backend)
    return train(config, workdir, family, data, run_info=info, callbacks=callbacks, rebuild=build)

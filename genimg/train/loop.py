"""The one training loop every experiment uses.

``train(config, workdir, family, data)`` runs ``config.train.steps`` steps of the family's
pure train step -- ``jax.jit`` on one device, ``jax.pmap`` over several -- and around it:

- auto-resume: the latest Orbax checkpoint in ``workdir/checkpoints`` is restored, so rerunning
  the same command continues where it stopped and reproduces the uninterrupted run (the RNG
  and the data order are functions of the step);
- a tqdm progress bar, ``workdir/metrics.jsonl`` and TensorBoard events in ``workdir/tb``;
- a PNG sample grid (fixed noise, EMA weights) every ``train.sample_every`` steps in
  ``workdir/samples``;
- callbacks the experiment passes (``Callback(every, fn)``), e.g. periodic sample-quality
  evaluation (``genimg.metrics.periodic``): the numbers they return are logged at that step;
- periodic and final checkpoints; a non-finite metric stops the run with a ``TrainingError``
  naming the quantity and the step, before anything is saved from the bad state.

The host reads metrics only every ``train.log_every`` steps (and before a checkpoint), so
steps queue up on the device in between.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import pathlib
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
import tqdm
from tensorboardX import SummaryWriter

from genimg import data as data_lib
from genimg import images as images_lib
from genimg.errors import ConfigError, UserError
from genimg.train import checkpoint as ckpt
from genimg.train.common import compile_step, replicate, to_unit_range, unreplicate
from genimg.train.family import Family, build_family, family_location

AXIS = "batch"
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


def write_run_files(workdir: pathlib.Path, config, run_info: dict) -> None:
    """The resolved config (plus where its family lives, ``family_location``) and what the
    data gave (shape, classes) next to the outputs."""
    workdir.mkdir(parents=True, exist_ok=True)
    record = json.loads(config.to_json_best_effort())
    record[ckpt.FAMILY_LOCATION_KEY] = family_location(config.family)
    (workdir / ckpt.CONFIG_FILE).write_text(json.dumps(record, indent=2) + "\n")
    (workdir / ckpt.RUN_INFO_FILE).write_text(json.dumps(run_info, indent=2) + "\n")


def _truncate_metrics(path: pathlib.Path, last_step: int) -> None:
    """Drop log lines written after ``last_step`` by a run that was interrupted."""
    if not path.exists():
        return
    keep = [ln for ln in path.read_text().splitlines() if json.loads(ln)["step"] <= last_step]
    path.write_text("".join(ln + "\n" for ln in keep))


def _first_non_finite(host_metrics: list[tuple[int, dict]]):
    for step, metrics in host_metrics:
        for name, value in metrics.items():
            if not math.isfinite(float(value)):
                return step, name, float(value)
    return None


class _Writers:
    """metrics.jsonl + TensorBoard, opened once."""

    def __init__(self, workdir: pathlib.Path):
        self.jsonl = open(workdir / "metrics.jsonl", "a")  # noqa: SIM115 (closed in close())
        self.tb = SummaryWriter(str(workdir / "tb"))

    def scalars(self, step: int, metrics: dict) -> None:
        self.jsonl.write(json.dumps({"step": step, **metrics}) + "\n")
        self.jsonl.flush()
        for name, value in metrics.items():
            self.tb.add_scalar(name, value, step)

    def image(self, step: int, picture: np.ndarray) -> None:
        self.tb.add_image("samples", picture, step, dataformats="HWC")

    def close(self) -> None:
        self.jsonl.close()
        self.tb.close()


def train(
    config,
    workdir,
    family: Family,
    data: data_lib.TrainData,
    run_info: dict | None = None,
    callbacks: Sequence[Callback] = (),
):
    """Train ``family`` on ``data`` for ``config.train.steps`` steps; returns the final state."""
    workdir = pathlib.Path(workdir)
    tc = config.train
    n_dev = data.n_devices
    run_info = dict(run_info or {}, image_shape=list(data.image_shape), n_devices=n_dev)

    init_rng, step_rng, sample_rng = jax.random.split(jax.random.key(tc.seed), 3)
    try:  # a model that cannot be built from the config fails here, before anything is written
        state = jax.jit(family.init_state)(init_rng)  # one compile, not one per init op
        step_fn = compile_step(family.make_train_step(AXIS if n_dev > 1 else None), n_dev, AXIS)
    except ValueError as err:
        raise ConfigError(f"cannot build the '{family.name}' model: {_first_line(err)}") from err
    write_run_files(workdir, config, run_info)
    manager = ckpt.checkpoint_manager(workdir, tc.keep_checkpoints)
    start = manager.latest_step() or 0
    if start:
        state = ckpt.restore(manager, state)
        log.info("resumed from %s at step %d", manager.directory, start)
    _truncate_metrics(workdir / "metrics.jsonl", start)

    if n_dev > 1:
        state = replicate(state, jax.local_devices()[:n_dev])
    host_state = unreplicate if n_dev > 1 else (lambda s: s)
    sample_fn = translate_fn = None
    if family.sample is not None and tc.sample_every:
        sample_fn = jax.jit(family.sample, static_argnums=2)
    elif family.translate is not None and data.input_shape is not None and tc.sample_every:
        # Image-to-image families: the first examples of the data, translated (no noise).
        fixed = data.first(min(tc.num_samples, data.num_examples))
        translate_fn = jax.jit(family.translate)

    writers = _Writers(workdir)
    pending: list[tuple[int, dict]] = []
    last_saved = start
    t_log, steps_since_log = time.perf_counter(), 0
    bar = tqdm.tqdm(
        total=tc.steps,
        initial=start,
        desc=workdir.name,
        dynamic_ncols=True,
        disable=not tc.progress,
        unit="step",
    )

    def flush() -> dict:
        """Fetch queued metrics, stop on non-finite ones, log the newest."""
        nonlocal pending, t_log, steps_since_log
        if not pending:
            return {}
        # Under pmap every metric is [n_devices] copies of one pmean-ed value: take the first.
        host = [
            (s, {k: float(np.ravel(v)[0]) for k, v in jax.device_get(m).items()})
            for s, m in pending
        ]
        pending = []
        bad = _first_non_finite(host)
        if bad is not None:
            s, name, value = bad
            raise TrainingError(
                f"non-finite {name}={value} at step {s}; stopped without saving it, the last "
                f"good checkpoint is step {last_saved} in {manager.directory} "
                "(lower the learning rate or check the data)"
            )
        step, metrics = host[-1]
        now = time.perf_counter()
        metrics["steps_per_s"] = steps_since_log / max(now - t_log, 1e-9)
        t_log, steps_since_log = now, 0
        writers.scalars(step, metrics)
        return metrics

    def save_samples(step: int) -> None:
        if translate_fn is not None:
            outputs = jax.device_get(translate_fn(host_state(state), fixed["input"]))
            picture = images_lib.translation_grid(
                images_lib.show_inputs(fixed["input"], data.input_classes),
                outputs,
                to_unit_range(fixed["image"], family.data_scale),
            )
        else:
            images, _ = jax.device_get(sample_fn(host_state(state), sample_rng, tc.num_samples))
            picture = images_lib.make_grid(images)
        images_lib.save_png(workdir / "samples" / f"step_{step:07d}.png", picture)
        writers.image(step, picture)

    def run_callbacks(step: int, last: bool) -> None:
        due = [cb for cb in callbacks if cb.due(step, last)]
        if not due:
            return
        ctx = StepContext(step, host_state(state), family, workdir, config)
        for cb in due:
            numbers = cb.fn(ctx)
            if numbers:
                writers.scalars(step, numbers)

    try:
        for step in range(start, tc.steps):
            state, metrics = step_fn(state, data.batch(step), step_rng)
            done = step + 1
            pending.append((done, metrics))
            steps_since_log += 1
            bar.update(1)
            is_last = done == tc.steps
            save_now = is_last or done % tc.checkpoint_every == 0
            if save_now or done % tc.log_every == 0:
                logged = flush()
                bar.set_postfix({k: f"{logged[k]:.3g}" for k in _bar_keys(logged)}, refresh=False)
            if save_now:
                ckpt.save(manager, done, host_state(state))
                last_saved = done
            drawing = sample_fn is not None or translate_fn is not None
            if drawing and (done % tc.sample_every == 0 or is_last):
                save_samples(done)
            run_callbacks(done, is_last)
        manager.wait_until_finished()
    finally:
        bar.close()
        writers.close()
        manager.close()
    return host_state(state)


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
    loaded = data_lib.load(dc.source, dc.split, dc.image_size or None)
    log.info("data: %s", loaded.description)
    try:
        family = build_family(config, loaded.images.shape[1:], loaded.num_classes)
    except ValueError as err:  # a config value the family rejects
        raise ConfigError(f"config of family '{config.family}': {_first_line(err)}") from err
    check_inputs(family, loaded.input_shape, dc.source)
    data = data_lib.TrainData(
        loaded.images,
        loaded.labels,
        global_batch=tc.batch_size * family.batch_multiplier,
        seed=tc.seed,
        n_devices=num_devices(config),
        scale=family.data_scale,
        inputs=loaded.inputs,
        input_classes=loaded.input_classes,
    )
    info = {"data": loaded.description, "num_classes": loaded.num_classes}
    return train(config, workdir, family, data, run_info=info, callbacks=callbacks)

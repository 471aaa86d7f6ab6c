"""What a rerun finds in its workdir, and what it does about it: unreadable checkpoints (moved
aside, previous one used, never a silent fresh start), a changed config (refused before any
file is rewritten, unless only safe keys changed), a second writer (refused, naming the PID),
a torn log line and orphaned TensorBoard events (dropped), a workdir that cannot be written or
fills up (one line, earlier checkpoints intact)."""

import errno
import hashlib
import json
import logging
import os
import pathlib
import re
import shutil
import subprocess
import sys

import chex
import jax
import numpy as np
import pytest
from tensorboard.backend.event_processing import event_accumulator

from experiments import dcgan, vae
from genimg.train import checkpoint as ckpt
from genimg.train import workdir as workdir_lib
from genimg.train.family import build_family
from genimg.train.loop import TrainingError, train_from_config
from tests.golden import logged_metrics

REPO = pathlib.Path(__file__).resolve().parent.parent


def _config(steps=4, **train):
    config = dcgan.get_config("tiny")
    config.data.source = "digits"
    config.train.update(steps=steps, **train)
    return config


@pytest.fixture(scope="module")
def straight6(tmp_path_factory):
    """An uninterrupted 6-step run: its final arrays and its log."""
    workdir = tmp_path_factory.mktemp("straight6")
    state = train_from_config(_config(6), workdir)
    return jax.tree.leaves(state), logged_metrics(workdir)


def _abstract(config):
    family = build_family(config, (8, 8, 1), 10)
    return jax.eval_shape(family.init_state, jax.random.key(0))


def _copy(run, tmp_path):
    target = tmp_path / "run"
    shutil.copytree(run, target)
    return target


def _data_files(step_dir):
    return sorted(p for p in (step_dir / "default").rglob("*") if p.is_file() and "/d/" in str(p))


def _corrupt(step_dir: pathlib.Path, how: str) -> None:
    if how == "truncated_file":
        biggest = max(_data_files(step_dir), key=lambda p: p.stat().st_size)
        os.truncate(biggest, biggest.stat().st_size // 3)
    elif how == "deleted_arrays":
        for path in _data_files(step_dir):
            path.unlink()
    elif how == "deleted_metadata":
        (step_dir / "default" / "_METADATA").unlink()
    elif how == "garbage_metadata":
        (step_dir / "default" / "_METADATA").write_bytes(os.urandom(200))
    else:
        raise ValueError(how)


def _snapshot(workdir, skip=()):
    """Every file's bytes (the lock file and the folders ``skip`` aside): what "nothing was
    rewritten" compares."""
    return {
        str(p.relative_to(workdir)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(workdir.rglob("*"))
        if p.is_file()
        and p.name != workdir_lib.LOCK_FILE
        and p.relative_to(workdir).parts[0] not in skip
    }


# --- unreadable checkpoints -------------------------------------------------------------------


@pytest.mark.parametrize(
    "how", ["truncated_file", "deleted_arrays", "deleted_metadata", "garbage_metadata"]
)
def test_an_unreadable_latest_checkpoint_is_moved_aside_and_the_previous_used(
    gan_run, tmp_path, how, caplog
):
    workdir = _copy(gan_run, tmp_path)
    _corrupt(workdir / "checkpoints" / "4", how)
    manager = ckpt.checkpoint_manager(workdir)
    quarantine = workdir / ckpt.QUARANTINE_DIR
    with caplog.at_level(logging.WARNING, logger="genimg"):
        step, state = ckpt.restore_latest(manager, _abstract(_config()), quarantine)
    assert step == 2 and int(state.step) == 2
    assert manager.all_steps() == [2]
    manager.close()
    assert sorted(p.name for p in quarantine.iterdir()) == ["4"]  # moved, not deleted
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings[0].startswith(f"checkpoint step 4 in {workdir / 'checkpoints'} is unreadable")
    assert warnings[0].endswith(f"moved to {quarantine / '4'}") and "\n" not in warnings[0]
    assert "instead of the unreadable step(s) 4" in warnings[1]
    # The arrays are those of step 2 of the original run.
    original = ckpt.checkpoint_manager(gan_run, read_only=True)
    want = ckpt.restore(original, _abstract(_config()), 2)
    original.close()
    chex.assert_trees_all_equal(jax.tree.leaves(state), jax.tree.leaves(want))


def test_a_resume_past_a_truncated_checkpoint_reproduces_the_uninterrupted_run(
    gan_run, tmp_path, straight6
):
    workdir = _copy(gan_run, tmp_path)
    _corrupt(workdir / "checkpoints" / "4", "truncated_file")
    resumed = train_from_config(_config(6), workdir)  # from step 2, not 4
    chex.assert_trees_all_equal(jax.tree.leaves(resumed), straight6[0])
    assert logged_metrics(workdir) == straight6[1]
    assert (workdir / ckpt.QUARANTINE_DIR / "4").is_dir()


def test_no_readable_checkpoint_is_one_error_never_a_fresh_run(gan_run, tmp_path):
    workdir = _copy(gan_run, tmp_path)
    for step in (2, 4):
        _corrupt(workdir / "checkpoints" / str(step), "deleted_metadata")
    moved = ("checkpoints", ckpt.QUARANTINE_DIR)
    before = _snapshot(workdir, skip=moved)
    with pytest.raises(ckpt.CheckpointError) as err:
        train_from_config(_config(6), workdir)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith(f"no readable checkpoint in {workdir / 'checkpoints'}: step(s) 4, 2")
    assert "use a new --workdir to start over" in message
    # Rerunning does not start over either: the bad checkpoints are still the run's.
    with pytest.raises(ckpt.CheckpointError) as err:
        train_from_config(_config(6), workdir)
    assert "holds unreadable ones" in str(err.value)
    assert sorted(p.name for p in (workdir / ckpt.QUARANTINE_DIR).iterdir()) == ["2", "4"]
    assert _snapshot(workdir, skip=moved) == before


def test_a_checkpoint_of_another_model_is_an_error_and_stays_where_it_is(gan_run, tmp_path):
    workdir = _copy(gan_run, tmp_path)
    wider = _config()
    wider.model.g_width = 16
    manager = ckpt.checkpoint_manager(workdir)
    with pytest.raises(ckpt.CheckpointError) as err:
        ckpt.restore_latest(manager, _abstract(wider), workdir / ckpt.QUARANTINE_DIR)
    manager.close()
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("checkpoint step 4 in ") and "holds a different model" in message
    assert "ema_params/BatchNorm_0/bias is [256] float32 in the checkpoint, [512] float32 now" in (
        message
    )
    assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == ["2", "4"]
    assert not (workdir / ckpt.QUARANTINE_DIR).exists()


def test_sample_skips_an_unreadable_checkpoint_with_one_warning(gan_run, tmp_path):
    workdir = _copy(gan_run, tmp_path)
    _corrupt(workdir / "checkpoints" / "4", "truncated_file")
    result = subprocess.run(
        [sys.executable, "-m", "genimg.sample", f"--workdir={workdir}", "--num_samples=4",
         f"--out={tmp_path / 's.npz'}"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    # Beyond the INFO lines (backend and devices, the conv backend), two warnings: what was
    # skipped, and what was used instead.
    lines = [
        ln
        for ln in result.stderr.splitlines()
        if ln.strip() and "sampling" not in ln and not re.match(r"I\d{4} ", ln)
    ]
    assert len(lines) == 2, result.stderr
    assert "checkpoint step 4" in lines[0] and "is unreadable: ValueError: " in lines[0]
    assert "using checkpoint step 2 instead of the unreadable step(s) 4" in lines[1]
    # A reader never moves a run's files (the run may be training right now).
    assert (workdir / "checkpoints" / "4").is_dir()
    assert not (workdir / ckpt.QUARANTINE_DIR).exists()


# --- config changes ---------------------------------------------------------------------------


def test_a_changed_model_or_data_shape_is_refused_before_anything_is_rewritten(gan_run, tmp_path):
    workdir = _copy(gan_run, tmp_path)
    before = _snapshot(workdir)
    wider = _config(6)
    wider.model.g_width = 16
    bigger = _config(6)
    bigger.data.image_size = 16
    other = vae.get_config("mlp,tiny")
    other.data.source = "digits"
    cases = [
        (wider, ["model.g_width 8 -> 16"]),
        (bigger, ["data.image_size 0 -> 16", "data shape: image_shape [8, 8, 1] -> [16, 16, 1]"]),
        (other, ['family "gan" -> "vae"']),
    ]
    for config, named in cases:
        with pytest.raises(workdir_lib.ConfigError) as err:
            train_from_config(config, workdir)
        message = str(err.value)
        assert "\n" not in message
        assert message.startswith(f"this config differs from the one the run in {workdir}")
        for part in named:
            assert part in message, message
        assert "train.steps" not in message.split("):")[0]  # a safe change is not blamed
        assert _snapshot(workdir) == before  # config.json included: the old run still samples


def test_safe_keys_may_change_and_are_recorded(gan_run, tmp_path):
    workdir = _copy(gan_run, tmp_path)
    train_from_config(_config(6, log_every=1, progress=False), workdir)
    changes = [json.loads(ln) for ln in (workdir / "config_changes.jsonl").read_text().splitlines()]
    assert changes == [{"step": 4, "changes": {"train.log_every": [2, 1], "train.steps": [4, 6]}}]
    recorded = json.loads((workdir / "config.json").read_text())
    assert recorded["train"]["steps"] == 6 and recorded["train"]["log_every"] == 1
    # Rewritten through a temporary file, yet with the permissions of a plain write.
    plain = tmp_path / "plain.json"
    plain.write_text("{}")
    assert (workdir / "config.json").stat().st_mode == plain.stat().st_mode
    assert [m["step"] for m in logged_metrics(workdir)] == [2, 4, 5, 6]


# --- one writer -------------------------------------------------------------------------------

HOLDER = """
import sys, time
from genimg.train.workdir import RunLock
RunLock(sys.argv[1]).acquire()
print("locked", flush=True)
time.sleep(600)
"""


def test_a_second_writer_is_refused_naming_the_pid_and_the_lock_dies_with_it(tmp_path):
    workdir = tmp_path / "run"
    workdir.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(workdir)], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(workdir_lib.WorkdirError) as err:
            train_from_config(_config(2), workdir)
        message = str(err.value)
        assert message == (
            f"{workdir} is in use by another training process (PID {holder.pid}); wait for it "
            "to finish or stop it, or use another --workdir"
        )
        assert not (workdir / "config.json").exists()
    finally:
        holder.kill()  # SIGKILL: no chance to clean up
        holder.wait()
    state = train_from_config(_config(2), workdir)  # the kernel dropped the lock
    assert int(state.step) == 2


# --- logs -------------------------------------------------------------------------------------


def _tensorboard(workdir):
    acc = event_accumulator.EventAccumulator(str(workdir / "tb"), size_guidance={"scalars": 0})
    acc.Reload()
    return {
        tag: [(e.step, e.value) for e in acc.Scalars(tag)]
        for tag in acc.Tags()["scalars"]
        if tag != "steps_per_s"
    }


def test_a_torn_log_line_and_orphaned_events_are_dropped(tmp_path, caplog):
    # A run logs step 6, then dies before its checkpoint of step 6 is on disk, half-way
    # through the next log line. The rerun starts from step 4 and logs 5 and 6 again.
    workdir = tmp_path / "run"
    train_from_config(_config(6, checkpoint_every=4, log_every=1), workdir)
    reference = _copy(workdir, tmp_path / "reference")
    shutil.rmtree(workdir / "checkpoints" / "6")
    with open(workdir / "metrics.jsonl", "a") as f:
        f.write('{"step": 7, "d_loss": 0.69')
    with caplog.at_level(logging.WARNING, logger="genimg"):
        train_from_config(_config(6, checkpoint_every=4, log_every=1), workdir)
    assert any("dropped 1 unreadable line(s)" in r.getMessage() for r in caplog.records)
    assert logged_metrics(workdir) == logged_metrics(reference)
    shown = _tensorboard(workdir)
    assert [step for step, _ in shown["d_loss"]] == [1, 2, 3, 4, 5, 6]
    assert shown == _tensorboard(reference)
    assert len(list((workdir / "tb").glob("events.out.tfevents.*"))) == 2


# --- file-system failures -----------------------------------------------------------------------


def test_a_workdir_under_a_regular_file_is_one_error(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(workdir_lib.WorkdirError) as err:
        train_from_config(_config(2), tmp_path / "file" / "run")
    assert str(err.value) == (
        f"cannot create the workdir {tmp_path / 'file' / 'run'}: Not a directory: "
        f"{tmp_path / 'file' / 'run'}"
    )


def test_an_unwritable_workdir_is_one_error(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(tmp_path / "run"))

    monkeypatch.setattr(workdir_lib.tempfile, "TemporaryFile", refuse)
    with pytest.raises(workdir_lib.WorkdirError) as err:
        train_from_config(_config(2), tmp_path / "run")
    assert (
        str(err.value) == f"the workdir {tmp_path / 'run'} is not writable: Read-only file system"
    )


def test_too_little_free_space_is_one_error_before_training(tmp_path, monkeypatch):
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(
        workdir_lib.shutil, "disk_usage", lambda path: usage._replace(free=300 * 1024)
    )
    with pytest.raises(workdir_lib.WorkdirError) as err:
        train_from_config(_config(2), tmp_path / "run")
    message = str(err.value)
    assert message.startswith(f"not enough free space in {tmp_path / 'run'}: 0.3 MB free, two ")
    assert "checkpoints of this model need about 1." in message
    assert not any((tmp_path / "run").iterdir())


def test_a_failing_save_is_one_error_and_earlier_checkpoints_stay(tmp_path, monkeypatch, straight6):
    # Orbax renames a written checkpoint into place: the second one meets a full disk there.
    from orbax.checkpoint._src.path import async_path

    rename, calls = async_path.rename, []

    async def full_disk(src, dst):
        calls.append(dst)
        if len(calls) > 2:  # two renames per checkpoint: the one of step 2 goes through
            raise OSError(errno.ENOSPC, "No space left on device", str(src))
        return await rename(src, dst)

    monkeypatch.setattr(async_path, "rename", full_disk)
    workdir = tmp_path / "run"
    with pytest.raises(TrainingError) as err:
        train_from_config(_config(6), workdir)
    message = str(err.value)
    assert message.startswith(
        f"cannot save the checkpoint of step 4 in {workdir / 'checkpoints'}: No space left on "
        "device"
    )
    assert "earlier checkpoints: those of step(s) 2 are intact" in message
    monkeypatch.undo()  # space freed: the same command resumes from step 2
    resumed = train_from_config(_config(6), workdir)
    chex.assert_trees_all_equal(jax.tree.leaves(resumed), straight6[0])
    assert logged_metrics(workdir) == straight6[1]


FULL_DISK_SCRIPT = """
set -u
mount -t tmpfs -o size=1800k tmpfs "$1" || exit 77
run() { "$PYTHON" -m experiments.dcgan --workdir="$1/run" --config=experiments/dcgan.py:tiny \
  --config.data.source="npz:$2/images.npz" --config.train.steps=12 2>"$2/$3.err"; \
  echo $? > "$2/$3.rc"; }
run "$1" "$2" full
ls "$1/run/checkpoints" > "$2/full.ls"
mount -o remount,ro "$1"
run "$1" "$2" readonly
"""


def test_a_real_full_and_read_only_file_system(tmp_path):
    """On a 1.8 MB tmpfs (in a private mount namespace): the disk fills up at a save; then the
    same workdir, remounted read-only, cannot be written."""
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare(1) to mount a private tmpfs")
    mountpoint, out = tmp_path / "mnt", tmp_path / "out"
    mountpoint.mkdir()
    out.mkdir()
    images = np.random.default_rng(0).integers(0, 256, (32, 8, 8, 1), dtype=np.uint8)
    np.savez(out / "images.npz", images=images)
    namespace = ["unshare", "--mount"] + ([] if os.geteuid() == 0 else ["--map-root-user"])
    result = subprocess.run(
        [*namespace, "sh", "-c", FULL_DISK_SCRIPT, "sh", str(mountpoint), str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=600,
        env=dict(os.environ, PYTHON=sys.executable),  # this interpreter, venv active or not
    )  # fmt: skip
    if result.returncode == 77 or "unshare failed" in result.stderr:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()[:200]}")
    assert result.returncode == 0, result.stderr[-2000:]
    full = (out / "full.err").read_text()
    assert (out / "full.rc").read_text().strip() == "1"
    assert "Traceback" not in full
    error = full.strip().splitlines()[-1]
    # The disk fills up at a checkpoint, or at a sample grid or log line in between.
    saved = re.fullmatch(
        r"error: cannot save the checkpoint of step (\d+) in \S+: No space left on device; "
        r"earlier checkpoints: those of step\(s\) ([\d, ]+) are intact; .*",
        error,
    )
    written = re.fullmatch(
        r"error: cannot write to \S+: No space left on device; the last checkpoint is step "
        r"(\d+): .*",
        error,
    )
    assert saved or written, full[-2000:]
    kept = [int(s) for s in (out / "full.ls").read_text().split() if s.isdigit()]
    if saved:
        assert [int(s) for s in saved.group(2).split(", ")] == kept
        assert int(saved.group(1)) > max(kept)
    else:
        assert int(written.group(1)) == max(kept)
    readonly = (out / "readonly.err").read_text()
    assert (out / "readonly.rc").read_text().strip() == "1"
    assert "Traceback" not in readonly
    assert readonly.strip().splitlines()[-1] == (
        f"error: the workdir {mountpoint / 'run'} is not writable: Read-only file system"
    )

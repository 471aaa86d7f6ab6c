"""A run killed (-9) at a seeded schedule of points -- mid-step, mid-log-line, mid-TensorBoard
event, mid-sample-grid, mid-run-file rewrite, mid-checkpoint write and commit, mid-deletion of
an old checkpoint, mid-restore -- or stopped by SIGTERM, SIGINT and a second signal during a
save, then rerun with the same command, ends bit for bit (CPU) where the uninterrupted run
ends: every kept checkpoint array (parameters, optimizer states, EMA), metrics.jsonl, the
sample grids and the TensorBoard scalars.

Every run is a real process: ``tests/crash_driver.py`` runs the experiment's command line
with one fault armed (the process SIGKILLs itself the N-th time it reaches the point).
``GENIMG_KILL_SEED`` picks another schedule; a failure prints the schedule that led to it.
"""

import os
import random
import re
import signal
import subprocess
import sys
import time

import numpy as np
import orbax.checkpoint as ocp
import pytest
from tensorboard.backend.event_processing import event_accumulator

from tests.crash_driver import POINTS
from tests.golden import logged_metrics

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEED = int(os.environ.get("GENIMG_KILL_SEED", "0"))
STEPS = 24
KEEP = 2  # checkpoints kept: with checkpoint_every=2 old ones are deleted all along
# Each kind of fault once (in a seeded order), then a seeded extra one: 10 kills in all.
KINDS = tuple(point for point in POINTS if point != "none")
EXTRA_KILLS = 1
# Saves are asynchronous and a save waits for the previous one: a process killed at the 6th
# step after its start has committed at least one new checkpoint (checkpoint_every=2).
PROGRESS = 6
N_RANGE = {  # which visit of the point kills (small: every kill comes before the run ends)
    "step": (1, 6),
    "metrics_line": (1, 3),
    "tb_event": (1, 20),
    "png": (1, 2),
    "run_file": (1, 2),
    "ckpt_write": (1, 2),
    "ckpt_commit": (1, 3),
    "ckpt_delete": (1, 1),
    "restore": (1, 1),
}


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("data") / "images.npz"
    np.savez(path, images=rng.integers(0, 256, (64, 8, 8, 1), dtype=np.uint8))
    return path


def _args(data_file, workdir):
    return [
        "experiments.dcgan",
        f"--workdir={workdir}",
        "--config=experiments/dcgan.py:tiny",
        f"--config.data.source=npz:{data_file}",
        f"--config.train.steps={STEPS}",
        "--config.train.log_every=1",
        "--config.train.sample_every=3",
        f"--config.train.keep_checkpoints={KEEP}",
    ]


def _command(point, n, data_file, workdir):
    return [sys.executable, "-m", "tests.crash_driver", point, str(n), *_args(data_file, workdir)]


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    # Cache every compiled function (not only slow ones): each launch then traces, never
    # compiles, which is most of what a launch costs besides imports.
    env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    env.update({k: str(v) for k, v in extra.items()})
    return env


def _run(point, n, data_file, workdir, **env):
    return subprocess.run(
        _command(point, n, data_file, workdir), cwd=REPO, env=_env(**env),
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip


@pytest.fixture(scope="module")
def straight(data_file, tmp_path_factory):
    """The uninterrupted run, through the same driver (no fault), started in the background:
    the tests below wait for it only when they compare."""
    workdir = tmp_path_factory.mktemp("straight") / "run"
    proc = subprocess.Popen(
        _command("none", 0, data_file, workdir), cwd=REPO, env=_env(),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip

    def finished():
        if proc.returncode is None:
            _, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, err[-3000:]
        return workdir

    yield finished
    if proc.returncode is None:
        proc.kill()
        proc.communicate()


def _checkpoints(workdir):
    return sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())


def _restore(workdir, step):
    with ocp.StandardCheckpointer() as checkpointer:
        return checkpointer.restore(workdir / "checkpoints" / str(step) / "default")


def _flat(tree):
    import jax

    return {
        jax.tree_util.keystr(p): np.asarray(x) for p, x in jax.tree_util.tree_leaves_with_path(tree)
    }


def _tensorboard(workdir):
    """What TensorBoard shows: ``{tag: [(step, value)]}`` and the image steps, with its purge
    of events orphaned by a restart."""
    acc = event_accumulator.EventAccumulator(
        str(workdir / "tb"), size_guidance={"scalars": 0, "images": 0}
    )
    acc.Reload()
    scalars = {
        tag: [(e.step, e.value) for e in acc.Scalars(tag)]
        for tag in acc.Tags()["scalars"]
        if tag != "steps_per_s"
    }
    images = [e.step for e in acc.Images("samples")]
    return scalars, images


def assert_same_run(workdir, reference):
    """Bit-for-bit equality of everything the run keeps."""
    steps = _checkpoints(reference)
    assert _checkpoints(workdir) == steps
    for step in steps:
        got, want = _flat(_restore(workdir, step)), _flat(_restore(reference, step))
        assert got.keys() == want.keys()
        for name in want:
            assert got[name].dtype == want[name].dtype, name
            np.testing.assert_array_equal(got[name], want[name], err_msg=f"step {step} {name}")
    assert logged_metrics(workdir) == logged_metrics(reference)
    grids = sorted(p.name for p in (reference / "samples").iterdir())
    assert sorted(p.name for p in (workdir / "samples").iterdir()) == grids
    for name in grids:
        assert (workdir / "samples" / name).read_bytes() == (
            reference / "samples" / name
        ).read_bytes()
    assert _tensorboard(workdir) == _tensorboard(reference)
    leftovers = [
        p for p in workdir.rglob("*") if p.name.endswith(".tmp") or "orbax-checkpoint-tmp" in p.name
    ]
    assert not leftovers


def _feasible(kind, workdir):
    have = _checkpoints(workdir) if (workdir / "checkpoints").is_dir() else []
    if kind == "restore":
        return bool(have)
    if kind == "ckpt_delete":  # the first save of the run then deletes the oldest
        return len(have) >= KEEP
    return True


def test_kill_schedule_then_rerun_gives_the_uninterrupted_run(data_file, straight, tmp_path):
    workdir = tmp_path / "run"
    kill_log = tmp_path / "kills.txt"
    rng = random.Random(SEED)
    todo = list(KINDS)
    rng.shuffle(todo)
    todo += [rng.choice(KINDS) for _ in range(EXTRA_KILLS)]
    done = []
    while todo:
        assert len(done) < 30, f"seed {SEED}: no progress after {done}"
        kind = next((k for k in todo if _feasible(k, workdir)), None)
        if kind is None:  # only checkpoint-dependent kinds are left: make progress first
            kind, n = "step", PROGRESS
        else:
            todo.remove(kind)
            n = rng.randint(*N_RANGE[kind])
        result = _run(kind, n, data_file, workdir, GENIMG_TEST_KILL_LOG=kill_log)
        done.append(f"{kind}:{n}")
        schedule = f"seed {SEED}, kills so far {done}"
        assert result.returncode == -signal.SIGKILL, (schedule, result.stderr[-3000:])
        assert kill_log.read_text().splitlines()[-1] == f"{kind} {n}", schedule
        assert "Traceback" not in result.stderr, (schedule, result.stderr[-3000:])
    result = _run("none", 0, data_file, workdir)
    assert result.returncode == 0, (done, result.stderr[-3000:])
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert len(done) >= 10 and set(KINDS) <= {d.split(":")[0] for d in done}
    assert_same_run(workdir, straight())
    print(f"kill schedule (seed {SEED}): {len(done)} kills {done}; rerun identical")


def _lines(path):
    try:
        return len(path.read_text().splitlines())
    except FileNotFoundError:
        return 0


def _signal_when(proc, path, lines, signum, timeout=120):
    """Send ``signum`` once ``path`` (metrics.jsonl) has ``lines`` lines."""
    deadline = time.monotonic() + timeout
    while _lines(path) < lines:
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "the run did not get there in time"
        time.sleep(0.05)
    proc.send_signal(signum)


def _start(data_file, workdir, **env):
    return subprocess.Popen(
        _command("none", 0, data_file, workdir), cwd=REPO, env=_env(**env),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


STOPPED = re.compile(
    r"stopped by (SIGTERM|SIGINT) after step (\d+) of 24: checkpoint saved in (.+); "
    r"rerun the same command to resume"
)


def test_sigterm_sigint_and_a_second_signal_then_rerun_gives_the_uninterrupted_run(
    data_file, straight, tmp_path
):
    workdir = tmp_path / "run"
    metrics = workdir / "metrics.jsonl"
    slow = dict(GENIMG_TEST_STEP_DELAY=0.1)  # so that the signals land mid-run

    # SIGTERM (preemption): finish the step, save it, one line, exit 0.
    proc = _start(data_file, workdir, **slow)
    _signal_when(proc, metrics, 3, signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-3000:]
    last = err.strip().splitlines()[-1]
    match = STOPPED.fullmatch(last)
    assert match and match.group(1) == "SIGTERM", err[-3000:]
    first_stop = int(match.group(2))
    assert first_stop >= 3 and first_stop in _checkpoints(workdir)
    assert match.group(3) == str(workdir / "checkpoints")
    assert "Traceback" not in err

    # SIGINT (Ctrl-C) on the resumed run: the same, exit 130.
    proc = _start(data_file, workdir, **slow)
    _signal_when(proc, metrics, first_stop + 3, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-3000:]
    match = STOPPED.fullmatch(err.strip().splitlines()[-1])
    assert match and match.group(1) == "SIGINT", err[-3000:]
    second_stop = int(match.group(2))
    assert second_stop > first_stop and second_stop in _checkpoints(workdir)
    assert "Traceback" not in err

    # A second SIGTERM while the first one's checkpoint is being committed (commits take 1 s
    # here): the process ends at once.
    proc = _start(data_file, workdir, GENIMG_TEST_COMMIT_DELAY=1, **slow)
    _signal_when(proc, metrics, second_stop + 2, signal.SIGTERM)
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGTERM, err[-3000:]
    assert "Traceback" not in err
    assert list((workdir / "checkpoints").glob("*orbax-checkpoint-tmp*")), "not killed mid-save"

    # Rerunning the command finishes the run as if nothing had happened.
    result = _run("none", 0, data_file, workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    assert_same_run(workdir, straight())

"""Two processes x two fake CPU devices (jax.distributed over localhost, gloo collectives)
train exactly as one process with four devices: the same metrics.jsonl within 1e-5, also
after resuming the two-process run from its own checkpoint. Short timeouts so that a crashed
peer cannot hang the suite."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

TIMEOUT_S = 240
# The tiny MLP GAN on the 8x8 digits (the cheapest step to compile) with a global batch of 8:
# two rows per device, gradients averaged over all four devices of both processes.
ARGS = [
    "-m",
    "experiments.mlp_gan",
    "--config=experiments/mlp_gan.py:tiny",
    "--config.data.source=digits",
    "--config.train.batch_size=8",
    "--config.train.log_every=1",
    "--config.train.distributed_timeout_s=60",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _env(devices: int, **extra) -> dict:
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
    for key in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"):
        env.pop(key, None)
    env.update({k: str(v) for k, v in extra.items()})
    return env


def _one_process(workdir, steps: int) -> None:
    cmd = [sys.executable, *ARGS, f"--workdir={workdir}", f"--config.train.steps={steps}"]
    done = subprocess.run(cmd, env=_env(4), capture_output=True, text=True, timeout=TIMEOUT_S)
    assert done.returncode == 0, done.stderr[-3000:]


def _two_processes(workdir, steps: int) -> list[str]:
    port = _free_port()
    cmd = [sys.executable, *ARGS, f"--workdir={workdir}", f"--config.train.steps={steps}"]
    procs = [
        subprocess.Popen(
            cmd,
            env=_env(
                2,
                JAX_COORDINATOR_ADDRESS=f"localhost:{port}",
                JAX_NUM_PROCESSES=2,
                JAX_PROCESS_ID=rank,
            ),  # fmt: skip
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank in range(2)
    ]
    logs = []
    try:
        for p in procs:
            _, err = p.communicate(timeout=TIMEOUT_S)
            logs.append(err)
    finally:
        for p in procs:
            p.kill()
    for p, err in zip(procs, logs, strict=True):
        assert p.returncode == 0, err[-3000:]
    return logs


def _metrics(workdir) -> list[dict]:
    lines = (workdir / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k != "steps_per_s"} for line in lines]


def _assert_same_metrics(got, want) -> None:
    assert [m["step"] for m in got] == [m["step"] for m in want]
    for g, w in zip(got, want, strict=True):
        assert g.keys() == w.keys(), g["step"]
        np.testing.assert_allclose(
            [g[k] for k in sorted(g)], [w[k] for k in sorted(w)], rtol=1e-5, atol=1e-5,
            err_msg=f"step {g['step']}",
        )  # fmt: skip


@pytest.fixture(scope="module")
def one_process_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("one") / "run"
    _one_process(workdir, 6)
    return workdir


def test_two_processes_match_one_process_with_as_many_devices(one_process_run, tmp_path):
    workdir = tmp_path / "run"
    logs = _two_processes(workdir, 3)  # a checkpoint at step 2 and 3 ...
    assert "process 0 of 2" in logs[0] and "process 1 of 2" in logs[1]
    assert "4 devices" in logs[0]
    logs = _two_processes(workdir, 6)  # ... resumed from step 3 by two processes again
    assert "resumed from" in logs[0] and "at step 3" in logs[0]
    got = _metrics(workdir)
    _assert_same_metrics(got, _metrics(one_process_run))
    # Process 0 alone wrote the run's files; the checkpoints are complete.
    info = json.loads((workdir / "run_info.json").read_text())
    assert info["n_devices"] == 4 and info["num_processes"] == 2
    assert sorted(p.name for p in (workdir / "samples").glob("*.png"))[-1] == "step_0000006.png"
    from genimg.train import checkpoint as ckpt

    assert ckpt.finished_steps(workdir)[-1] == 6

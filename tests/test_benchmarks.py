"""The throughput benchmark runs each model and prints one JSON record with the peer's keys."""

import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEER_KEYS = {"impl", "model", "batch", "device", "threads", "img_per_s", "ms_per_step", "steps"}


@pytest.mark.parametrize("model", ["dcgan", "mlpgan", "convvae"])
def test_train_throughput_prints_one_record(model):
    out = subprocess.run(
        [sys.executable, "benchmarks/train_throughput.py", "--model", model]
        + ["--batch", "8", "--steps", "2", "--warmup", "1", "--log-norms"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 1, out.stdout
    record = json.loads(lines[0])
    assert PEER_KEYS <= record.keys()
    assert record["model"] == model and record["batch"] == 8 and record["steps"] == 2
    assert record["finite"] is True and record["img_per_s"] > 0

"""Run a script on fake CPU devices: XLA_FLAGS must be set before jax starts, so a subprocess."""

import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_on_fake_devices(script: str, *args: str, devices: int = 4, timeout: int = 600) -> dict:
    """Run ``script`` with ``devices`` fake CPU devices; returns the JSON of its last line."""
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
    out = subprocess.run(
        [sys.executable, "-c", script, *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])

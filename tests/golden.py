"""The metrics the experiments' tiny presets logged before the family-seam refactor.

``tests/data/tiny_metrics.json`` was recorded from the code before ``genimg.families`` existed
(in-process runs, seed 0, no CPU-default XLA flags); the refactor must not change what any
experiment computes. Keys are ``experiment:preset``.

They were recorded with XLA's convolutions, so `golden_config` runs the presets with
``model.conv_backend="xla"``: the configs' default "auto" picks oneDNN on CPU, which computes
the same function in another summation order (float32 rounding differences, ~1e-6 relative
per convolution, which steps of training can grow past these tolerances), and a golden
regenerated under "auto" would pin oneDNN's rounding on one machine, not the math. That
"auto" equals "xla" on a whole train step is checked in tests/test_conv_backend_auto.py.
"""

import json
import pathlib

import numpy as np

GOLDEN = json.loads((pathlib.Path(__file__).parent / "data" / "tiny_metrics.json").read_text())


def golden_config(config):
    """``config`` with XLA convolutions (see the module docstring); returns it."""
    if "model" in config and "conv_backend" in config.model:
        config.model.conv_backend = "xla"
    return config


def logged_metrics(workdir) -> list[dict]:
    """``metrics.jsonl`` without the wall-clock ``steps_per_s``."""
    lines = [
        json.loads(ln) for ln in (pathlib.Path(workdir) / "metrics.jsonl").read_text().splitlines()
    ]
    return [{k: v for k, v in m.items() if k != "steps_per_s"} for m in lines]


def assert_matches_golden(key: str, workdir) -> None:
    want, got = GOLDEN[key], logged_metrics(workdir)
    assert [m["step"] for m in got] == [m["step"] for m in want], key
    for w, g in zip(want, got, strict=True):
        assert g.keys() == w.keys(), (key, sorted(g), sorted(w))
        for name in w:
            np.testing.assert_allclose(
                g[name], w[name], rtol=1e-5, atol=1e-7, err_msg=f"{key} {name}"
            )

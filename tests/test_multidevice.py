"""1 device vs 4 fake CPU devices: the same global batch gives the same run.

Fake devices need XLA_FLAGS before jax starts, so the comparison runs in a subprocess.
"""

import textwrap

import numpy as np

from tests.fake_devices import run_on_fake_devices

SCRIPT = textwrap.dedent(
    """
    import json, sys
    import jax, numpy as np
    from experiments import dcgan
    from genimg.train.loop import train_from_config

    assert jax.local_device_count() == 4, jax.devices()
    results = {}
    for n in (1, 4):
        config = dcgan.get_config("tiny")
        config.data.source = "digits"
        config.model.d_dropout = 0.0  # dropout masks are per device by design
        config.train.steps = 3
        config.train.log_every = 1
        config.train.num_devices = n
        state = train_from_config(config, f"{sys.argv[1]}/dev{n}")
        lines = open(f"{sys.argv[1]}/dev{n}/metrics.jsonl").read().splitlines()
        results[n] = {
            "metrics": [json.loads(ln) for ln in lines],
            "g": [np.asarray(x).ravel().tolist() for x in jax.tree.leaves(state.g_params)],
            "d": [np.asarray(x).ravel().tolist() for x in jax.tree.leaves(state.d_params)],
            "bs": [np.asarray(x).ravel().tolist() for x in jax.tree.leaves(state.g_batch_stats)],
        }
    print(json.dumps(results))
    """
)


def test_four_devices_match_one(tmp_path):
    res = run_on_fake_devices(SCRIPT, str(tmp_path))
    one, four = res["1"], res["4"]
    assert [m["step"] for m in one["metrics"]] == [1, 2, 3]
    for m1, m4 in zip(one["metrics"], four["metrics"], strict=True):
        for key in ("d_loss", "g_loss", "d_real", "d_fake", "g_grad_norm", "d_grad_norm"):
            assert abs(m1[key] - m4[key]) <= 1e-4 * max(1.0, abs(m1[key])), (key, m1, m4)
    for part in ("g", "d", "bs"):
        for a, b in zip(one[part], four[part], strict=True):
            a, b = np.asarray(a), np.asarray(b)
            assert abs(a - b).max() <= 1e-4 * max(1.0, abs(a).max()), part

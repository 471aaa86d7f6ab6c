"""VAE: 1 device vs 4 fake CPU devices give the same run.

Dynamic binarisation and the reparameterisation noise are slices of one global draw (the DAE
corruptions go through the same ``global_batch_op`` as the binarisation), so the only
difference is the order of floating-point sums. Fake devices need XLA_FLAGS before jax
starts, so the comparison runs in a subprocess.
"""

import textwrap

import numpy as np

from tests.fake_devices import run_on_fake_devices

SCRIPT = textwrap.dedent(
    """
    import importlib, json, sys
    import jax, numpy as np
    from genimg.train.loop import train_from_config

    assert jax.local_device_count() == 4, jax.devices()
    results = {}
    for exp in ("vae",):
        for n in (1, 4):
            config = importlib.import_module("experiments." + exp).get_config("mlp,tiny")
            assert config.data.binarize == "dynamic"
            config.train.steps = 3
            config.train.log_every = 1
            config.train.sample_every = 0
            config.train.num_devices = n
            workdir = f"{sys.argv[1]}/{exp}{n}"
            state = train_from_config(config, workdir)
            lines = open(f"{workdir}/metrics.jsonl").read().splitlines()
            results[f"{exp}{n}"] = {
                "metrics": [json.loads(ln) for ln in lines],
                "params": [np.asarray(x).ravel().tolist() for x in jax.tree.leaves(state.params)],
            }
    print(json.dumps(results))
    """
)


def test_four_devices_match_one(tmp_path):
    res = run_on_fake_devices(SCRIPT, str(tmp_path))
    for exp, keys in (("vae", ("loss", "elbo", "kl", "grad_norm")),):
        one, four = res[f"{exp}1"], res[f"{exp}4"]
        assert [m["step"] for m in one["metrics"]] == [1, 2, 3]
        for m1, m4 in zip(one["metrics"], four["metrics"], strict=True):
            for key in keys:
                assert abs(m1[key] - m4[key]) <= 1e-4 * max(1.0, abs(m1[key])), (exp, key, m1, m4)
        for a, b in zip(one["params"], four["params"], strict=True):
            a, b = np.asarray(a), np.asarray(b)
            assert abs(a - b).max() <= 1e-4 * max(1.0, abs(a).max()), exp
        assert one["metrics"][0]["loss"] != one["metrics"][-1]["loss"]  # it trained

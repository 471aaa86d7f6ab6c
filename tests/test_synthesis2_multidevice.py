"""pix2pix and BiGAN: 1 device vs 2 fake CPU devices give the same run (no dropout: its masks
are drawn per device by design). CRN's step has no per-device path beyond the gradient mean."""

import textwrap

import numpy as np

from tests.fake_devices import run_on_fake_devices

SCRIPT = textwrap.dedent(
    """
    import json, sys
    import jax, numpy as np
    from experiments import bigan, pix2pix
    from genimg.train.loop import train_from_config

    assert jax.local_device_count() == 2, jax.devices()
    results = {}
    for name, module in (("pix2pix", pix2pix), ("bigan", bigan)):
        for n in (1, 2):
            config = module.get_config("tiny")
            if name == "pix2pix":
                config.model.dropout = 0.0
            if name == "bigan":
                config.model.d_dropout = 0.0
            config.train.update(steps=3, log_every=1, num_devices=n, sample_every=0)
            state = train_from_config(config, f"{sys.argv[1]}/{name}{n}")
            lines = open(f"{sys.argv[1]}/{name}{n}/metrics.jsonl").read().splitlines()
            results[f"{name}{n}"] = {
                "metrics": [json.loads(ln) for ln in lines],
                "leaves": [np.asarray(x).ravel().tolist() for x in jax.tree.leaves(state)],
            }
    print(json.dumps(results))
    """
)


def test_two_devices_match_one(tmp_path):
    res = run_on_fake_devices(SCRIPT, str(tmp_path), devices=2)
    for name in ("pix2pix", "bigan"):
        one, two = res[f"{name}1"], res[f"{name}2"]
        assert [m["step"] for m in one["metrics"]] == [1, 2, 3]
        for m1, m2 in zip(one["metrics"], two["metrics"], strict=True):
            for key in m1:
                if key == "steps_per_s":
                    continue
                assert abs(m1[key] - m2[key]) <= 1e-4 * max(1.0, abs(m1[key])), (name, key)
        for a, b in zip(one["leaves"], two["leaves"], strict=True):
            a, b = np.asarray(a), np.asarray(b)
            assert a.shape == b.shape
            assert abs(a - b).max() <= 1e-4 * max(1.0, abs(a).max()), name

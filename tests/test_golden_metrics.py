"""The tiny presets not run elsewhere in the suite log what they logged before the family
refactor (see ``tests/golden.py``); the others are checked where they run."""

import importlib

import pytest

from genimg.train.loop import train_from_config
from tests.golden import assert_matches_golden, golden_config


@pytest.mark.parametrize(
    "name, preset",
    [
        ("vae", "mlp,tiny"),
        ("cvae", "tiny"),
        ("autoencoder", "tiny"),
        ("classifier", "tiny"),
    ],
)
def test_tiny_preset_logs_the_recorded_metrics(tmp_path, name, preset):
    config = golden_config(importlib.import_module(f"experiments.{name}").get_config(preset))
    train_from_config(config, tmp_path)
    assert_matches_golden(f"{name}:{preset}", tmp_path)


# "dcgan:tiny" was recorded when the DCGAN's default recipe was today's `:classic` (the
# default's half width does not reach tiny, but its learning rates do), so it runs
# "classic,tiny": the same config the recording ran.
@pytest.mark.parametrize("name, presets", [("dcgan", "classic,tiny"), ("mlp_gan", "tiny")])
def test_gan_tiny_presets_on_fashion_mnist(tmp_path, fashion_dir, name, presets):
    # The GAN tiny presets keep the default data source, Fashion-MNIST.
    config = golden_config(importlib.import_module(f"experiments.{name}").get_config(presets))
    assert config.data.source == "fashion_mnist"
    train_from_config(config, tmp_path)
    assert_matches_golden(f"{name}:tiny", tmp_path)

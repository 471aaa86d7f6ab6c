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


@pytest.mark.parametrize("name", ["dcgan", "mlp_gan"])
def test_gan_tiny_presets_on_fashion_mnist(tmp_path, fashion_dir, name):
    # The GAN tiny presets keep the default data source, Fashion-MNIST.
    config = golden_config(importlib.import_module(f"experiments.{name}").get_config("tiny"))
    assert config.data.source == "fashion_mnist"
    train_from_config(config, tmp_path)
    assert_matches_golden(f"{name}:tiny", tmp_path)

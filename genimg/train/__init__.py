"""Training: state types, ``make_*_train_step`` factories, the shared loop, checkpoints."""

from __future__ import annotations

import importlib

# config.model.family -> module with ``build(config, image_shape, num_classes) -> Family``.
FAMILIES = {
    "gan": "genimg.train.gan",
    "vae": "genimg.train.vae",
    "cvae": "genimg.train.vae",
    "ae": "genimg.train.autoencoder",
    "dae": "genimg.train.autoencoder",
    "classifier": "genimg.train.classifier",
}


def build_family(config, image_shape, num_classes):
    """Build the model family named by ``config.model.family``."""
    name = config.model.family
    if name not in FAMILIES:
        raise ValueError(
            f"unknown model.family '{name}'; expected one of {', '.join(sorted(FAMILIES))}"
        )
    return importlib.import_module(FAMILIES[name]).build(config, tuple(image_shape), num_classes)

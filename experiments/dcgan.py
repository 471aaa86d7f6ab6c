"""DCGAN on Fashion-MNIST (or any source: 28, 32 or 64 px, grayscale or RGB).

    python -m experiments.dcgan --workdir=runs/dcgan
    python -m experiments.dcgan --workdir=/tmp/t --config=experiments/dcgan.py:tiny

Samples: runs/dcgan/samples/step_*.png; metrics: metrics.jsonl and tb/; checkpoints:
checkpoints/. Rerunning the same command resumes. Result on a 2-core CPU: see README.
"""

from __future__ import annotations

from experiments import gan_config


def get_config(arg: str | None = None):
    """``arg``: None for the default run, ``"tiny"`` for a seconds-long smoke run."""
    config = gan_config.base_config()
    config.model.arch = "dcgan"
    config.model.d_dropout = 0.3  # as in the TensorFlow DCGAN tutorial's discriminator
    if arg == "tiny":
        gan_config.tiny(config)
    elif arg:
        raise ValueError(f"unknown preset '{arg}' for dcgan; expected 'tiny' or none")
    return config


if __name__ == "__main__":
    from experiments import common

    common.cli(__file__)

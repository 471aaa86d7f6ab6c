"""The classic fully connected GAN (Goodfellow et al. 2014 style), kept exactly as the
entry-level example: z=100; G 100-256-512-1024-784 (ReLU, sigmoid out); D 784-512-256-1
(ReLU); batch 32; Adam 2e-4 (0.5, 0.999); non-saturating loss.

    python -m experiments.mlp_gan --workdir=runs/mlp_gan [--config.data.source=mnist]
    python -m experiments.mlp_gan --workdir=/tmp/t --config=experiments/mlp_gan.py:tiny
"""

from __future__ import annotations

from experiments import gan_config


def get_config(arg: str | None = None):
    """``arg``: None for the default run, ``"tiny"`` for a seconds-long smoke run."""
    config = gan_config.base_config()
    config.model.arch = "mlp"
    config.model.ema_decay = 0.0  # the classic example samples the raw generator
    config.train.batch_size = 32
    config.train.steps = 10000
    config.train.checkpoint_every = 2000
    config.train.sample_every = 1000
    if arg == "tiny":
        gan_config.tiny(config)
    elif arg:
        raise ValueError(f"unknown preset '{arg}' for mlp_gan; expected 'tiny' or none")
    return config


if __name__ == "__main__":
    from experiments import common

    common.cli(__file__)

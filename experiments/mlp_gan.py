"""The classic fully connected GAN (Goodfellow et al. 2014 style), kept exactly as the
entry-level example: z=100; G 100-256-512-1024-784 (ReLU, sigmoid out); D 784-512-256-1
(ReLU); batch 32; Adam 2e-4 (0.5, 0.999); non-saturating loss; samples from the raw G.

    python -m experiments.mlp_gan --workdir=runs/mlp_gan [--config.data.source=mnist]
    python -m experiments.mlp_gan --workdir=/tmp/t --config=experiments/mlp_gan.py:tiny

Presets: tiny (seconds).
"""

from __future__ import annotations

from genimg import cli
from genimg.families import gan
from genimg.metrics import periodic
from genimg.train import config as config_lib
from genimg.train.loop import train_from_config


def get_config(arg: str | None = None):
    config = config_lib.experiment_config(
        "gan",
        data=config_lib.data_block(),
        model=gan.model_config("mlp"),
        optim=gan.optim_config(),
        train=config_lib.train_block(
            batch_size=32, steps=10000, checkpoint_every=2000, sample_every=1000
        ),
        eval=periodic.eval_config(),
    )
    config.model.ema_decay = 0.0  # the classic example samples the raw generator
    return config_lib.apply_presets(config, arg, {"tiny": tiny})


def tiny(config) -> None:
    gan.tiny(config)
    config_lib.tiny_train(config)


def main(config, workdir) -> None:
    train_from_config(config, workdir, periodic.callbacks(config))


if __name__ == "__main__":
    cli.experiment(__file__, main, __doc__)

"""Class-conditional DCGAN on Fashion-MNIST: conditional batch norm in G, projection D.

    python -m experiments.cgan --workdir=runs/cgan
    python -m experiments.cgan --workdir=runs/cgan_concat --config=experiments/cgan.py:concat
    python -m experiments.cgan --workdir=/tmp/t --config=experiments/cgan.py:tiny
    python -m genimg.sample --workdir=runs/cgan --labels=3,7 --num_samples=16 --out=s.npz

The DCGAN experiment's networks and its `:classic` recipe (full width, hinge loss, spectrally
normalised D, TTUR with Adam(0, 0.9), EMA generator, 2000 steps at batch 64) with the labels
flowing through the batch: every batch norm of G takes a per-class scale and shift, and D adds
the projection ``<embed(y), phi(x)>`` to its logit (Miyato & Koyama 2018). Fake batches are
drawn for uniform labels. Sample grids put one class per column. Every GAN option of
experiments/dcgan.py (model.loss, gp_weight, r1_weight, n_critic, spectral_norm, ema_decay,
optim.g_lr/d_lr) works here unchanged. Result on a 2-core CPU: see the README.
Presets: concat (one-hot label joined to z and to D's input channels instead), mlp (the
classic conditional MLP GAN of Mirza & Osindero 2014, concatenation in G, projection in D),
tiny (seconds).
"""

from __future__ import annotations

from genimg import cli
from genimg.families import gan
from genimg.metrics import periodic
from genimg.train import config as config_lib
from genimg.train.loop import train_from_config


def get_config(arg: str | None = None):
    config = config_lib.experiment_config(
        "cgan",
        data=config_lib.data_block(),
        model=gan.model_config("dcgan", conditional=True),
        optim=gan.optim_config(),
        train=config_lib.train_block(num_samples=100),  # a 10x10 grid, one class per column
        eval=periodic.eval_config(),
    )
    # The DCGAN experiment's :classic recipe (see experiments/dcgan.py for why). Its default,
    # half width with G's learning rate at D's, was not measured for the conditional model.
    config.model.update(loss="hinge", spectral_norm=True)
    config.optim.update(g_lr=1e-4, d_lr=4e-4, b1=0.0, b2=0.9)
    return config_lib.apply_presets(config, arg, {"concat": concat, "mlp": mlp, "tiny": tiny})


def concat(config) -> None:
    """Condition both networks by concatenating the one-hot label (to z; to D's input)."""
    config.model.update(g_conditioning="concat", d_conditioning="concat")


def mlp(config) -> None:
    """The conditional version of experiments/mlp_gan.py (its networks, recipe and length),
    the one-hot label joined to z; D by projection unless ``concat`` follows."""
    config.model = gan.model_config("mlp", conditional=True)
    config.model.ema_decay = 0.0
    config.optim = gan.optim_config()
    config.train.update(batch_size=32, steps=10000, checkpoint_every=2000, sample_every=1000)


def tiny(config) -> None:
    gan.tiny(config)
    config_lib.tiny_train(config)
    config.data.source = "digits"  # 8x8, embedded in scikit-learn: no files needed
    config.train.num_samples = 10


def main(config, workdir) -> None:
    train_from_config(config, workdir, periodic.callbacks(config))


if __name__ == "__main__":
    cli.experiment(__file__, main, __doc__)

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
    # SN-GAN-style training (Miyato et al. 2018): hinge loss, spectrally normalised D, TTUR
    # with Adam(0, 0.9). With the tutorial recipe (non-saturating loss, Adam 2e-4 (0.5, 0.999),
    # with or without D dropout 0.3) this network collapsed to near-identical samples on
    # Fashion-MNIST for the whole 2000-step budget; this recipe gives diverse samples after a
    # few hundred steps. `--config.model.loss=nonsaturating ...` restores the tutorial setup.
    config.model.loss = "hinge"
    config.model.spectral_norm = True
    config.optim.g_lr = 1e-4
    config.optim.d_lr = 4e-4
    config.optim.b1 = 0.0
    config.optim.b2 = 0.9
    if arg == "tiny":
        gan_config.tiny(config)
    elif arg:
        raise ValueError(f"unknown preset '{arg}' for dcgan; expected 'tiny' or none")
    return config


if __name__ == "__main__":
    from experiments import common

    common.cli(__file__)

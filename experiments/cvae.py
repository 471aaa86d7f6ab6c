"""Class-conditional conv VAE (Sohn et al. 2015) on binarised Fashion-MNIST.

    python -m experiments.cvae --workdir=runs/cvae
    python -m experiments.cvae --workdir=/tmp/t --config=experiments/cvae.py:tiny

The label (one-hot, or a learned embedding with ``model.label_embed_dim > 0``) is joined to
the encoder's features and to ``z``. Sample grids put one class per column; the evaluator's
NLL is ``-log p(x | y)``.
"""

from __future__ import annotations

import ml_collections

from experiments import vae


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """``arg``: None / "conv", "mlp", "tiny" or "mlp_tiny"."""
    config = vae.get_config(arg)
    config.model.family = "cvae"
    if not (arg and "tiny" in arg):
        config.train.num_samples = 100  # a 10x10 grid: one class per column
    return config


if __name__ == "__main__":
    from experiments import common

    common.cli(__file__, vae.main)

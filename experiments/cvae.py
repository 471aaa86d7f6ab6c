"""Class-conditional conv VAE (Sohn et al. 2015) on binarised Fashion-MNIST.

    python -m experiments.cvae --workdir=runs/cvae
    python -m experiments.cvae --workdir=/tmp/t --config=experiments/cvae.py:tiny
    python -m genimg.sample --workdir=runs/cvae --labels=all --num_samples=100 --out=s.npz

The label (one-hot, or a learned embedding with model.label_embed_dim > 0) is joined to the
encoder's features and to z. Sample grids put one class per column; the evaluator's NLL is
-log p(x | y). Presets: aux (adds the class term of genimg/families/vae.py: a small classifier
learns the real images' labels and the decoder's images of prior draws are trained to be
classified as the label they were drawn for; see the README's synthesis results), mlp, tiny.
"""

from __future__ import annotations

from experiments import vae
from genimg import cli
from genimg.train import config as config_lib


def get_config(arg: str | None = None):
    config = vae.vae_config(conditional=True)
    config.train.num_samples = 100  # a 10x10 grid: one class per column
    return config_lib.apply_presets(config, arg, {"aux": aux, **vae.PRESETS})


def aux(config) -> None:
    config.model.aux_classifier_weight = 10.0  # 50 drew no better, less varied (README)


if __name__ == "__main__":
    cli.experiment(__file__, vae.main, __doc__)

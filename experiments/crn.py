"""Cascaded refinement network (Chen & Koltun 2017) on Fashion-MNIST: label map -> garment,
regressed with a feature-matching loss on a domain classifier's features, no discriminator.

    python -m experiments.classifier --workdir=runs/classifier_crn \
        --config=experiments/classifier.py:fast --config.train.seed=1
    python -m experiments.crn --workdir=runs/crn_labelmap
    python -m experiments.crn --workdir=runs/crn_edges --config=experiments/crn.py:edges
    python -m experiments.crn --workdir=/tmp/t --config=experiments/crn.py:tiny

The loss network (model.feature_net, default domain:runs/classifier_crn) should not be the
classifier that computes the domain FID of the outputs: train one with another seed, as
above. Presets: edges (edge-map inputs), tiny (seconds, on the 8x8 digits, pixel loss only).
Measured scores: see the README.
"""

from __future__ import annotations

from experiments import pix2pix as pix2pix_experiment
from genimg import cli
from genimg.families import crn
from genimg.train import config as config_lib


def get_config(arg: str | None = None):
    config = config_lib.experiment_config(
        "crn",
        data=config_lib.data_block("paired:labelmap:fashion_mnist"),
        model=crn.model_config(),
        optim=crn.optim_config(),
        train=config_lib.train_block(
            steps=1000, log_every=100, checkpoint_every=500, keep_checkpoints=2, num_samples=16
        ),
        eval=config_lib.eval_block(batch_size=250),
    )
    return config_lib.apply_presets(config, arg, PRESETS)


def tiny(config) -> None:
    config.data.source = config.data.source.replace(":fashion_mnist", ":digits")
    crn.tiny(config)
    config_lib.tiny_train(config)


PRESETS = {"edges": pix2pix_experiment.edges, "tiny": tiny}
main = pix2pix_experiment.main

if __name__ == "__main__":
    cli.experiment(__file__, main, __doc__)

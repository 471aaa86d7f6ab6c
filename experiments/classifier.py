"""Domain classifier on Fashion-MNIST: its penultimate features drive the offline domain FID.

    python -m experiments.classifier --workdir=runs/classifier
    python -m experiments.classifier --workdir=runs/classifier \
        --config=experiments/classifier.py:fast
    python -m genimg.evaluate --fake=npz:samples.npz --real=fashion_mnist \
        --extractor=domain:runs/classifier

Trains with the shared loop, then writes its test accuracy to W/eval.json. Rerunning resumes.
Any labelled source works (--config.data.source=mnist, idx:DIR, folder:DIR); train one
classifier per data set. Presets: fast (a usable extractor in about 2 minutes on a 2-core
CPU), tiny (seconds). Measured accuracy and domain-metric floors: see the README.
"""

from __future__ import annotations

from genimg import cli, evaluate
from genimg.families import classifier
from genimg.train import config as config_lib
from genimg.train.loop import train_from_config


def get_config(arg: str | None = None):
    config = config_lib.experiment_config(
        "classifier",
        data=config_lib.data_block(augment="flip"),  # "none" | "flip" | "flip_crop"
        model=classifier.model_config(),
        optim=classifier.optim_config(),
        train=config_lib.train_block(
            steps=2808,  # 6 epochs of 60k images at batch 128
            batch_size=128,
            log_every=100,
            checkpoint_every=1000,
            keep_checkpoints=2,
            sample_every=0,  # a classifier has nothing to sample
            num_samples=0,
        ),
        eval=config_lib.eval_block(batch_size=500),
    )
    return config_lib.apply_presets(config, arg, {"fast": fast, "tiny": tiny})


def fast(config) -> None:
    """Two epochs of a shallower network: a domain extractor in minutes, not most of an hour."""
    config.model.update(convs_per_stage=1, feature_dim=128)
    config.train.update(steps=938, checkpoint_every=938)  # 2 epochs at batch 128
    config.optim.warmup_steps = 100


def tiny(config) -> None:
    config.data.source = "digits"  # 8x8, embedded in scikit-learn: no files needed
    config.model.update(widths=(4, 8), convs_per_stage=1, feature_dim=16)
    config.optim.warmup_steps = 1
    config_lib.tiny_train(config)
    config.eval.batch_size = 64


def main(config, workdir) -> float:
    """Train, then measure and record test accuracy; returns it."""
    train_from_config(config, workdir)
    results = evaluate.run(workdir, ["accuracy"])
    print(f"accuracy {results['accuracy']:.4f} on the {results['split']} split")
    return results["accuracy"]


if __name__ == "__main__":
    cli.experiment(__file__, main, __doc__)

"""Detector of generated images: real Fashion-MNIST against the samples of genimg's generators.

    python -m genimg.sample --workdir=runs/dcgan --num_samples=10000 --out=runs/samples/dcgan.npz
    python -m experiments.detector --workdir=runs/detector_gan \
        --config.data.source=real_vs_fake:fashion_mnist,npz:runs/samples/dcgan.npz
    python -m genimg.evaluate --workdir=runs/vae --metrics=detect --detector=runs/detector_gan
    python -m genimg.evaluate --fake=npz:other.npz --real=fashion_mnist --metrics=detect \
        --detector=runs/detector_gan

A two-class `ConvClassifier` (0 = real, 1 = generated) trained with the blur + JPEG
augmentation of Wang et al. 2020 (each with probability 0.5: Gaussian blur sigma ~ U[0, 3],
JPEG quality ~ U{30..100}; host-side, in the data pipeline). Several FAKE sources may follow
the real one (`real_vs_fake:REAL,FAKE,FAKE`); the real images are capped at the number of
fakes. After training, ``roc`` (ROC-AUC, AP, accuracy) on the data's test split goes to
W/eval.json: give the fakes a held-out test split (an npz with ``train_images`` /
``test_images``), or measure held-out samples with ``genimg.evaluate --metrics=detect``.
Presets: tiny (digits against themselves: the code path in seconds, chance by construction).
Measured AUC/AP on seen and unseen generators: see the README.
"""

from __future__ import annotations

from genimg import cli, evaluate
from genimg.families import classifier, detector
from genimg.train import config as config_lib
from genimg.train.loop import train_from_config


def get_config(arg: str | None = None):
    data = config_lib.data_block(
        source="real_vs_fake:fashion_mnist,npz:runs/samples/dcgan.npz",
        augment="flip",  # on the device, in the step: "none" | "flip" | "flip_crop"
    )
    config = config_lib.experiment_config(
        "detector",
        data=detector.augment_config(data),
        model=detector.model_config(),
        optim=classifier.optim_config(),
        train=config_lib.train_block(
            steps=600,  # about 2 epochs of 10k real + 10k generated images at batch 64
            batch_size=64,
            log_every=50,
            checkpoint_every=600,
            keep_checkpoints=1,
            sample_every=0,  # a detector has nothing to sample
            num_samples=0,
        ),
        eval=config_lib.eval_block(batch_size=500),
    )
    config.optim.warmup_steps = 50
    return config_lib.apply_presets(config, arg, {"tiny": tiny})


def tiny(config) -> None:
    config.data.source = "real_vs_fake:digits,digits"  # no files needed; nothing to learn
    config.model.update(widths=(4, 8), feature_dim=16)
    config.optim.warmup_steps = 1
    config_lib.tiny_train(config)
    config.eval.batch_size = 64


def main(config, workdir) -> dict:
    """Train, then measure and record ``roc`` on the data's test split; returns it."""
    train_from_config(config, workdir)
    results = evaluate.run(workdir, ["roc"])
    print(
        f"detect_auc {results['detect_auc']:.4f} detect_ap {results['detect_ap']:.4f} "
        f"on the {results['split']} split"
    )
    return results


if __name__ == "__main__":
    cli.experiment(__file__, main, __doc__)

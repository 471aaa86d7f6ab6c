"""Text to image on captioned Fashion-MNIST scenes: a caption-conditional GAN.

    python -m experiments.text2image --workdir=runs/t2i
    python -m experiments.text2image --workdir=runs/t2i_bow --config=experiments/text2image.py:bow
    python -m experiments.text2image --workdir=/tmp/t --config=experiments/text2image.py:tiny
    python -m genimg.sample --workdir=runs/t2i --prompt="a bag right of a sneaker" --num_samples=16
    python -m genimg.evaluate --workdir=runs/t2i --metrics=captions
    python -c "from experiments.text2image import figure; figure('runs/t2i', 'docs/t2i.png')"

Data: the ``scenes`` source (56x56 canvases, a 2x2 grid of one to three Fashion-MNIST items,
captions such as "a sandal at the top left", "a bag left of a sneaker", "a small shirt at the
top right", "two sneakers", "a bag, a shirt and a boot"; a held-out split of (item, position),
(item, item), (size, item) and (count, item) combinations never captioned in training).
Model: a small transformer text encoder (2 blocks, 64 wide, padding masked) in each network, G
conditioned by concat(z, text) and FiLM batch norm, D by projection on the text vector; the
SN-GAN recipe of experiments/cgan.py (hinge loss, spectral norm, TTUR with Adam(0, 0.9), EMA
generator).
``captions`` (genimg.evaluate) needs a Fashion-MNIST classifier run at ``eval.classifier``.
Result on a 2-core CPU: see the README (Text to image).
Presets: bow (bag-of-words text encoder: the baseline), tiny (seconds).
"""

from __future__ import annotations

import numpy as np

from genimg import cli, synthesis
from genimg import images as images_lib
from genimg.families import gan, text2image
from genimg.train import config as config_lib
from genimg.train.checkpoint import restore_run
from genimg.train.loop import train_from_config


def get_config(arg: str | None = None):
    config = config_lib.experiment_config(
        "text2image",
        data=config_lib.data_block("scenes"),
        model=text2image.model_config("transformer"),
        optim=gan.optim_config(),
        train=config_lib.train_block(steps=3500, sample_every=500, checkpoint_every=500),
        eval=text2image.eval_config(),
    )
    config.optim.update(g_lr=1e-4, d_lr=4e-4, b1=0.0, b2=0.9)
    return config_lib.apply_presets(config, arg, {"bow": bow, "tiny": tiny})


def bow(config) -> None:
    """The baseline: a bag-of-words text encoder (word order is lost)."""
    config.model.encoder = "bow"


def tiny(config) -> None:
    text2image.tiny(config)
    config_lib.tiny_train(config)
    config.data.source = "scenes:n=32,n_test=8"
    config.train.num_samples = 8


# Rows of the README figure: trained combinations first, then held-out ones (marked *).
FIGURE_PROMPTS = (
    "a sandal at the top right",
    "a bag left of a coat",
    "a small shirt at the bottom left",
    "a large boot at the top left",
    "two bags",
    "three sneakers",
    "a dress, a coat and a bag",
    "a sandal at the top left",  # * held out (object, position)
    "a bag right of a sneaker",  # * held out (object, object)
    "a small bag at the top right",  # * held out (size, object)
    "two sneakers",  # * held out (count, object)
    "a coat, a shirt and a boot",  # * held out (object, object): coat + boot
)


def figure(workdir, out, prompts=FIGURE_PROMPTS, num: int = 8, seed: int = 0) -> np.ndarray:
    """A PNG grid of ``num`` samples (columns) for each prompt (rows) of the run in
    ``workdir``; returns the uint8 samples ``[len(prompts) * num, H, W, C]``."""
    _, family, state, _ = restore_run(workdir)
    tokens = np.stack([family.encode_prompt(p) for p in prompts]).repeat(num, axis=0)
    images, _ = synthesis.generate(family, state, len(tokens), seed, len(tokens), tokens)
    images_lib.save_png(out, images_lib.make_grid(images / 255.0, ncols=num))
    return images


def main(config, workdir) -> None:
    train_from_config(config, workdir)


if __name__ == "__main__":
    cli.experiment(__file__, main, __doc__)

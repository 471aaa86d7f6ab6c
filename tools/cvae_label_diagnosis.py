"""Where a conditional VAE's label accuracy goes: the domain classifier's accuracy on its
samples drawn several ways, against the accuracy on its reconstructions.

    python -m tools.cvae_label_diagnosis --workdir=runs/cvae --classifier=runs/classifier

Prints one line per way of drawing (accuracy overall and per class):
- the prior N(0, tau^2 I) at tau = 1 (what `python -m genimg.sample --labels=all` does), 0.7,
  0.4 and 0 (the decoder's image of z = 0 for each class), 10k balanced draws;
- an ex-post prior: z from a Gaussian fitted, per class, to the posterior means of the
  training images (and one fitted to all classes pooled);
- reconstructions of the test images (binarised as the run was trained, and grey): the
  decoder's images when z is the right one for each image. If these stay below a target, no
  prior reaches it with this decoder.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from genimg import cli
from genimg.data import load
from genimg.families import vae as vae_family
from genimg.metrics import extractors
from genimg.train.checkpoint import restore_run

NUM = 10000


def define_flags():
    cli.workdir_flag("A conditional VAE run (python -m experiments.cvae).")
    cli.define_string("classifier", None, "The domain classifier run that judges.", True)
    cli.seed_flag()


def main(args):
    config, family, state, _ = restore_run(args.workdir)
    if not family.conditional or family.encode is None:
        cli.fail(f"{args.workdir} is not a conditional VAE run (family '{family.name}')")
    judge = extractors.make_extractor(f"domain:{args.classifier}")
    decode = jax.jit(lambda z, y: family.decode(state, z, y))
    encode = jax.jit(lambda x, y: family.encode(state, x, y))

    def batched(fn, *arrays, size=1000):
        parts = [
            fn(*(jnp.asarray(a[i : i + size]) for a in arrays))
            for i in range(0, len(arrays[0]), size)
        ]
        return np.concatenate([np.asarray(p) for p in parts])

    def report(name, images, labels):
        pixels = np.round(np.clip(images, 0.0, 1.0) * 255.0).astype(np.uint8)
        logits = extractors.extract(judge, pixels, keep_features=False, progress=False).logits
        hit = np.argmax(logits, -1) == labels
        per_class = " ".join(f"{hit[labels == c].mean():.2f}" for c in range(family.num_classes))
        print(f"{name:44s} {hit.mean():.4f}   per class {per_class}", flush=True)

    labels = np.arange(NUM) % family.num_classes
    z = np.asarray(jax.random.normal(jax.random.key(args.seed), (NUM, family.latent_dim)))
    for tau in (1.0, 0.7, 0.4, 0.0):
        report(f"prior N(0, {tau}^2 I)", batched(decode, tau * z, labels), labels)

    def binarised(images):
        grey = jnp.asarray(images.astype(np.float32) / 255.0)
        return np.asarray(vae_family.eval_binarize(grey, config.data.binarize))

    train, test = load(config.data.source, "train"), load(config.data.source, "test")
    means = batched(encode, binarised(train.images), train.labels)
    rng = np.random.default_rng(args.seed)
    drawn = np.zeros_like(z)
    for c in range(family.num_classes):
        own = means[train.labels == c]
        drawn[labels == c] = rng.multivariate_normal(
            own.mean(0), np.cov(own.T), (labels == c).sum()
        )
    report("ex-post prior: a Gaussian per class", batched(decode, drawn, labels), labels)
    pooled = rng.multivariate_normal(means.mean(0), np.cov(means.T), NUM)
    report("ex-post prior: one pooled Gaussian", batched(decode, pooled, labels), labels)

    reconstruct = jax.jit(lambda x, y: family.reconstruct(state, x, y))
    xb = binarised(test.images)
    report(
        "reconstructions of the binarised test images",
        batched(reconstruct, xb, test.labels),
        test.labels,
    )
    grey = test.images.astype(np.float32) / 255.0
    report(
        "reconstructions of the grey test images",
        batched(reconstruct, grey, test.labels),
        test.labels,
    )
    report("the binarised test images themselves", xb, test.labels)


if __name__ == "__main__":
    cli.run(main, __doc__, define_flags)

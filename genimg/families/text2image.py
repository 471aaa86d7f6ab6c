"""The text-to-image family ("text2image"): a caption-conditional GAN on captioned scenes.

The "cgan" recipe with the class label replaced by a caption: the labels in the batch are the
captions' token ids ``[B, L]`` (``scenes`` data source, `genimg.data.scenes`), a text encoder
inside each network (a transformer or, as the baseline, a bag of words; ``model.encoder``)
turns them into a vector, G is conditioned by ``concat(z, text)`` and FiLM batch norm, D by a
projection on the text vector (`genimg.models.text2image`). The train step is the GAN
family's (`genimg.families.gan.make_gan_train_step`): each fake batch is drawn for the
captions of the real batch beside it.

``genimg.sample --prompt="a bag right of a sneaker"`` goes through ``Family.encode_prompt``
(the word-level tokenizer: unknown words and over-long prompts are one-line errors). The
evaluation group ``captions`` measures caption fidelity on the test and held-out splits (the
model, the nearest-training-caption retrieval baseline and the real scenes) and domain-FID
against the real test scenes, with the domain classifier run ``eval.classifier``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from genimg import synthesis
from genimg.data import load, scenes
from genimg.families import gan
from genimg.metrics import caption_fidelity as fidelity
from genimg.metrics import extractors as extractors_lib
from genimg.models import text2image as models
from genimg.train import family as family_lib
from genimg.train.common import to_unit_range

# Captions of the sample grids (one per column), two of them held out of training.
DISPLAY_CAPTIONS = (
    "a sandal at the top right",
    "a small shirt at the bottom left",
    "a sneaker left of a bag",
    "a shirt above a boot",
    "two bags",
    "three boots",
    "a dress, a coat and a bag",
    "a sandal at the top left",
)


def model_config(encoder: str = "transformer") -> ml_collections.ConfigDict:
    """The ``model`` block: the text encoder, both networks and the GAN loss."""
    m = ml_collections.ConfigDict()
    m.encoder = encoder  # "transformer" | "bow" (bag of words, the baseline)
    m.text_dim = 64
    m.text_depth = 2  # transformer blocks
    m.text_heads = 4
    m.z_dim = 64
    m.g_width = 16  # channels of the last hidden G stage (doubles per stage)
    m.d_width = 16  # channels of the first D conv (doubles per stage)
    m.kernel_size = 4
    m.conv_backend = "auto"  # "auto" (oneDNN on CPU where available) | "xla" | "onednn"
    m.spectral_norm = True
    m.loss = "hinge"
    m.n_critic = 1
    m.gp_weight = 0.0
    m.r1_weight = 0.0
    m.ema_decay = 0.999
    return m


def eval_config(classifier: str = "runs/classifier") -> ml_collections.ConfigDict:
    """The ``eval`` block: batch size and the domain classifier run of ``captions``."""
    e = ml_collections.ConfigDict()
    e.batch_size = 250
    e.classifier = classifier  # a Fashion-MNIST run of experiments/classifier.py
    return e


def tiny(config: ml_collections.ConfigDict) -> None:
    config.model.update(text_dim=8, text_depth=1, text_heads=2, z_dim=8, g_width=4, d_width=4)


def build_models(m, image_shape, axis_name=None):
    text = dict(
        vocab_size=len(scenes.TOKENIZER),
        max_len=scenes.TOKENIZER.max_len,
        encoder=m.encoder,
        text_dim=m.text_dim,
        text_depth=m.text_depth,
        text_heads=m.text_heads,
    )
    if m.encoder not in models.ENCODERS:
        raise ValueError(f"unknown model.encoder '{m.encoder}'; expected one of {models.ENCODERS}")
    generator = models.TextGenerator(
        image_shape=tuple(image_shape),
        width=m.g_width,
        kernel_size=m.kernel_size,
        axis_name=axis_name,
        conv_backend=m.conv_backend,
        **text,
    )
    discriminator = models.TextDiscriminator(
        width=m.d_width,
        kernel_size=m.kernel_size,
        spectral_norm=m.spectral_norm,
        conv_backend=m.conv_backend,
        **text,
    )
    return generator, discriminator


def same_captions(rng, real_tokens):
    """Fake batches are drawn for the captions of the real batch beside them."""
    del rng
    return real_tokens


def captions_group(config):
    """The ``captions`` evaluation group of a run with ``config`` (see the module doc)."""

    def evaluate(family, state, data: family_lib.EvalData) -> dict:
        extractor = extractors_lib.domain_extractor(config.eval.classifier)
        train = load(config.data.source, "train")
        held = load(config.data.source, "heldout", max_examples=len(data.images))
        results = {"domain_classifier": extractor.description}
        for split, images, tokens in (
            ("test", data.images, data.labels),
            ("heldout", held.images, held.labels),
        ):
            fakes, _ = synthesis.generate(
                family, state, len(tokens), data.seed, data.batch_size, tokens, progress=False
            )
            nearest = fidelity.nearest_captions(tokens, train.labels)
            features = {}
            candidates = {"model": fakes, "retrieval": train.images[nearest], "real": images}
            for name, x in candidates.items():
                grids, small, features[name] = fidelity.read_scenes(x, extractor, data.batch_size)
                ok, relations = fidelity.correct(grids, tokens, small)
                results.update(fidelity.accuracy_by_relation(ok, relations, f"{split}/{name}"))
                placed, _ = fidelity.correct(grids, tokens, classes=False)
                results.update(
                    fidelity.accuracy_by_relation(placed, relations, f"{split}/{name}/layout")
                )
                size = fidelity.size_accuracy(grids, small, tokens)
                if size is not None:
                    results[f"{split}/{name}/size_attribute"] = size
            if split == "test":
                results["scene_fid/model"] = fidelity.scene_fid(features["model"], features["real"])
                results["scene_fid/retrieval"] = fidelity.scene_fid(
                    features["retrieval"], features["real"]
                )
            else:
                results["scene_fid/model_heldout"] = fidelity.scene_fid(
                    features["model"], features["real"]
                )
        return results

    return evaluate


@family_lib.register("text2image")
def build(
    config: ml_collections.ConfigDict, image_shape: tuple[int, int, int], num_classes: int | None
) -> family_lib.Family:
    """The caption-conditional GAN for ``config.model`` / ``config.optim``."""
    del num_classes  # conditioned on captions, not classes
    m, o = config.model, config.optim
    generator, discriminator = build_models(m, image_shape)
    tokenizer = scenes.TOKENIZER
    example = jnp.zeros((1, tokenizer.max_len), jnp.int32)
    display = np.stack([tokenizer.encode(c) for c in DISPLAY_CAPTIONS])

    def adam(lr):
        return optax.adam(lr, b1=o.b1, b2=o.b2)

    def init_state(rng):
        return gan.create_gan_state(
            generator,
            discriminator,
            adam(o.g_lr),
            adam(o.d_lr),
            rng,
            m.z_dim,
            image_shape,
            example_labels=example,
        )

    def make_train_step(axis_name):
        g, d = build_models(m, image_shape, axis_name)
        return gan.make_gan_train_step(
            g, d, axis_name=axis_name, fake_labels_fn=same_captions, **gan.step_options(config)
        )

    def decode(state: gan.GANState, z, tokens):
        """The sampling generator (EMA weights unless ``ema_decay=0``) at codes ``z`` for
        captions ``tokens [N, L]``; differentiable in ``z``."""
        params = state.ema_params if m.ema_decay > 0 else state.g_params
        images = generator.apply(
            {"params": params, "batch_stats": state.g_batch_stats}, z, tokens, train=False
        )
        return to_unit_range(images, "-1_1")

    def sample(state: gan.GANState, rng: jax.Array, num: int, labels=None):
        """``num`` scenes for captions ``labels [num, L]`` (default: `DISPLAY_CAPTIONS`,
        one per column of an 8-wide grid)."""
        if labels is None:
            labels = jnp.asarray(display[np.arange(num) % len(display)])
        return decode(state, jax.random.normal(rng, (num, m.z_dim)), labels), labels

    return family_lib.Family(
        name="text2image",
        data_scale="-1_1",
        init_state=init_state,
        make_train_step=make_train_step,
        sample=sample,
        conditional=True,
        decode=decode,
        latent_dim=m.z_dim,
        eval_groups={"captions": captions_group(config)},
        default_metrics=("captions",),
        label_shape=(tokenizer.max_len,),
        encode_prompt=tokenizer.encode,
    )

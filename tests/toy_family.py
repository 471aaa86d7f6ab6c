"""A model family defined outside ``genimg/``, as a forked experiment would define one.

"toy" learns one mean image per class; it samples that mean plus Gaussian noise of a learned
scale. It is a whole family in one file -- state, step, sampler, an evaluation group, config
and the experiment's command line -- registered with ``genimg.train.family.register``:

    python -m tests.toy_family --workdir=W [--config=tests/toy_family.py:tiny]
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from genimg import cli
from genimg.families import common
from genimg.train import config as config_lib
from genimg.train import family as family_lib
from genimg.train.common import apply_gradients, create_state, maybe_pmean
from genimg.train.loop import train_from_config


class ClassMeans(nn.Module):
    """Per-class mean images and one log noise scale."""

    num_classes: int
    image_shape: tuple[int, int, int]

    @nn.compact
    def __call__(self, labels):
        means = self.param("means", nn.initializers.zeros, (self.num_classes, *self.image_shape))
        log_scale = self.param("log_scale", nn.initializers.zeros, ())
        return means[labels], log_scale


def distance_group(family, state, data) -> dict:
    """Mean squared distance of the test images to their class means."""
    means, _ = state.apply_fn({"params": state.params}, jnp.asarray(data.labels))
    x = data.images.astype(np.float32) / 255.0
    return {"distance": float(jnp.mean(jnp.square(means - x)))}


@family_lib.register("toy")
def build(config, image_shape, num_classes):
    model = ClassMeans(num_classes, tuple(image_shape))

    def init_state(rng):
        return create_state(model, common.make_adam(config.optim), rng, jnp.zeros((1,), jnp.int32))

    def make_train_step(axis_name):
        def train_step(state, batch, rng):
            def loss_fn(params):
                means, log_scale = model.apply({"params": params}, batch["label"])
                err = jnp.square(batch["image"] - means)
                # Gaussian NLL per pixel: the scale learns the residual spread.
                nll = 0.5 * err * jnp.exp(-2 * log_scale) + log_scale
                return jnp.mean(nll), jnp.mean(err)

            (loss, mse), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
            state, norm_metrics = apply_gradients(
                state, grads, axis_name, log_norms=config.train.log_norms
            )
            return state, maybe_pmean({"loss": loss, "mse": mse, **norm_metrics}, axis_name)

        return train_step

    def sample(state, rng, num, labels=None):
        if labels is None:
            labels = jnp.arange(num) % num_classes
        means, log_scale = model.apply({"params": state.params}, labels)
        noise = jax.random.normal(rng, means.shape) * jnp.exp(log_scale)
        return jnp.clip(means + noise, 0.0, 1.0), labels

    return family_lib.Family(
        name="toy",
        data_scale="0_1",
        init_state=init_state,
        make_train_step=make_train_step,
        sample=sample,
        num_classes=num_classes,
        conditional=True,
        eval_groups={"distance": distance_group},
        default_metrics=("distance",),
    )


def get_config(arg: str | None = None):
    config = config_lib.experiment_config(
        "toy",
        data=config_lib.data_block("digits"),
        model=config_lib.ConfigDict(),
        optim=common.adam_config(0.05),
        train=config_lib.train_block(steps=40, batch_size=32, log_every=10, sample_every=20),
        eval=config_lib.eval_block(batch_size=64),
    )
    return config_lib.apply_presets(config, arg, {"tiny": config_lib.tiny_train})


def main(config, workdir) -> None:
    train_from_config(config, workdir)


if __name__ == "__main__":
    cli.experiment(__file__, main, __doc__)

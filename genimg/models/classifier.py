"""A small VGG-style image classifier whose penultimate layer is the "domain" feature extractor.

``stages`` of ``convs_per_stage`` 3x3 conv + norm + ReLU blocks, each stage followed by a 2x2
max pool (a stage is skipped for pooling once the map is 1 pixel wide), then one hidden dense
layer (the features) and the class logits. Dropout sits before the hidden and the output layer.
Its accuracy on Fashion-MNIST is in the README (``experiments/classifier.py``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


class ConvClassifier(nn.Module):
    """Images [B, H, W, C] -> ``(features [B, feature_dim], logits [B, num_classes])``."""

    num_classes: int
    widths: Sequence[int] = (32, 64)  # channels of each stage; each stage ends in a 2x2 pool
    convs_per_stage: int = 2
    feature_dim: int = 256  # the penultimate (domain feature) width
    dropout: float = 0.3
    act: Callable[[jax.Array], jax.Array] = nn.relu
    norm: str = "batch"  # "batch" or "none"
    axis_name: str | None = None  # cross-device batch-norm statistics under pmap

    @nn.compact
    def __call__(self, x, train: bool = False):
        if x.ndim != 4:
            raise ValueError(f"ConvClassifier expects images [B, H, W, C], got {x.shape}")
        if self.norm not in ("batch", "none"):
            raise ValueError(f"unknown norm '{self.norm}'; expected 'batch' or 'none'")
        norm = (
            functools.partial(
                nn.BatchNorm,
                use_running_average=not train,
                momentum=0.9,
                axis_name=self.axis_name if train else None,
            )
            if self.norm == "batch"
            else None
        )
        for stage, width in enumerate(self.widths):
            for _ in range(self.convs_per_stage):
                x = nn.Conv(width, (3, 3), padding="SAME", use_bias=norm is None)(x)
                x = self.act(norm()(x) if norm else x)
            # Each stage's last activation, for perceptual losses (apply with
            # mutable=["intermediates"]); a no-op otherwise.
            self.sow("intermediates", f"stage{stage}", x)
            if x.shape[1] > 1 and x.shape[2] > 1:
                x = nn.max_pool(x, (2, 2), strides=(2, 2))  # [B, H/2, W/2, width]
        x = x.reshape((x.shape[0], -1))
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
        x = nn.Dense(self.feature_dim, use_bias=norm is None)(x)
        features = self.act(norm()(x) if norm else x)  # [B, feature_dim]
        h = nn.Dropout(self.dropout, deterministic=not train)(features)
        logits = nn.Dense(self.num_classes)(h)  # [B, num_classes]
        return features, jnp.asarray(logits, jnp.float32)

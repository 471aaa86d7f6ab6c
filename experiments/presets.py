"""Config pieces shared by several experiments."""

from __future__ import annotations

import ml_collections


def tiny_train(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The ``train`` block of every ``tiny`` preset: a few steps of a small batch, each part of
    the loop (logging, checkpoints, sample grids) exercised twice, no progress bar."""
    config.train.steps = 4
    config.train.batch_size = 8
    config.train.log_every = 2
    config.train.checkpoint_every = 2
    config.train.sample_every = 2
    config.train.num_samples = 4
    config.train.progress = False
    return config

"""Config blocks the shared loop reads, and the one preset grammar of every experiment.

An experiment's ``get_config(arg)`` assembles one `ml_collections.ConfigDict` from small
blocks -- ``data`` and ``train`` from here, ``model`` / ``optim`` (and any block of its own)
from its family module -- so that a run's ``config.json`` holds exactly the keys its code
reads. The library indexes keys directly (``config.train.log_norms``); a locked config turns a
typo into an error.

Presets: ``--config=experiments/vae.py:mlp,tiny`` calls ``get_config("mlp,tiny")``, which
applies the named presets left to right (`apply_presets`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import ml_collections

from genimg.errors import ConfigError

ConfigDict = ml_collections.ConfigDict


def data_block(source: str = "fashion_mnist", **extra) -> ConfigDict:
    """``source`` (see ``genimg.data.load``), ``split``, ``image_size`` (0 = as stored), plus
    the family's own data keys (e.g. ``binarize``)."""
    block = ConfigDict()
    block.source = source
    block.split = "train"
    block.image_size = 0  # 0 = the data's own size; else resize to this square size
    block.update(extra)
    return block


def train_block(**overrides) -> ConfigDict:
    """Every key the loop reads, with the defaults ``overrides`` does not replace."""
    block = ConfigDict()
    block.steps = 2000
    # Wall-clock budget in minutes (0 = none), counted from the start of this process's
    # training (compile included): the run ends after the first step past it as if
    # train.steps were reached (final grid, callbacks, checkpoint); rerunning resumes.
    block.max_minutes = 0.0
    block.batch_size = 64  # global, split over the devices
    block.seed = 0
    block.num_devices = 0  # 0 = all local devices
    # Several processes (jax.distributed): "auto" joins when JAX_COORDINATOR_ADDRESS is set,
    # "on" lets jax find the cluster (TPU pod slice, SLURM, Open MPI), "off" never joins.
    block.distributed = "auto"
    block.distributed_timeout_s = 300  # wait for peers at start; heartbeat = a third of it
    block.log_every = 50
    block.log_norms = True  # gradient/parameter norms in the metrics
    block.checkpoint_every = 500
    block.keep_checkpoints = 3
    block.sample_every = 500  # 0 = no sample grids (also for families that cannot sample)
    block.num_samples = 64  # images in each sample grid
    block.progress = True
    block.on_nonfinite = "stop"  # "stop" | "rollback" (to the last good checkpoint)
    block.max_rollbacks = 3  # "rollback": give up after this many
    block.rollback_lr_scale = 0.5  # "rollback": learning rates (optim.*lr) times this, each time
    for key, value in overrides.items():
        if key not in block:
            raise KeyError(f"train_block has no key '{key}'")
        block[key] = value
    return block


def eval_block(batch_size: int = 100, **extra) -> ConfigDict:
    """``batch_size`` of ``genimg.evaluate`` plus the family's evaluation keys."""
    block = ConfigDict()
    block.batch_size = batch_size
    block.update(extra)
    return block


def provenance_block(watermark: bool = True) -> ConfigDict:
    """``watermark``: every image file the run writes carries the invisible provenance mark
    (``genimg.watermark``) besides its PNG text. Turning it off is logged and written into
    ``run_info.json`` and ``MODEL_CARD.md``."""
    block = ConfigDict()
    block.watermark = watermark
    return block


def experiment_config(family: str, **blocks: ConfigDict) -> ConfigDict:
    """``{"family": family, **blocks}``: the shape of every experiment's config, with a
    ``provenance`` block (`provenance_block`) unless ``blocks`` has one."""
    config = ConfigDict()
    config.family = family
    for name, block in blocks.items():
        config[name] = block
    if "provenance" not in config:
        config.provenance = provenance_block()
    return config


def tiny_train(config: ConfigDict) -> ConfigDict:
    """The ``train`` block of every ``tiny`` preset: a few steps of a small batch, each part of
    the loop (logging, checkpoints, sample grids) exercised twice, no progress bar."""
    config.train.update(
        steps=4,
        batch_size=8,
        log_every=2,
        checkpoint_every=2,
        sample_every=2 if config.train.sample_every else 0,
        num_samples=4,
        progress=False,
    )
    return config


def apply_presets(
    config: ConfigDict, arg: str | None, presets: Mapping[str, Callable[[ConfigDict], object]]
) -> ConfigDict:
    """Apply the comma-separated preset names of ``arg`` (None or "" for none) in order."""
    for name in (arg or "").split(","):
        name = name.strip()
        if not name:
            continue
        if name not in presets:
            raise ConfigError(
                f"unknown preset '{name}'; this experiment has {', '.join(presets) or 'none'} "
                "(combine them with commas, e.g. :mlp,tiny)"
            )
        presets[name](config)
    return config

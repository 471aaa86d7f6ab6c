"""Sample quality during training: a loop callback (``genimg.train.loop.Callback``) that logs
FID / KID / precision-recall of fresh samples against the test split every N steps.

An experiment adds it with ``train_from_config(config, workdir, periodic.callbacks(config))``;
its settings are the ``eval`` block of `eval_config`.
"""

from __future__ import annotations

import logging

import ml_collections

from genimg import synthesis
from genimg.metrics.sample_quality import sample_quality
from genimg.train.loop import Callback, StepContext

log = logging.getLogger("genimg")


def eval_config() -> ml_collections.ConfigDict:
    """The ``eval`` block this callback reads."""
    return ml_collections.ConfigDict(
        dict(
            every=0,  # > 0: FID etc. of samples vs the test split every N steps
            num_samples=1000,  # samples per periodic evaluation
            extractor="inception",  # or "domain:CLASSIFIER_WORKDIR" (offline)
            metrics="fid,kid,pr",
        )
    )


def callbacks(config) -> list[Callback]:
    """``[Callback]`` for ``config.eval.every > 0``, else ``[]``."""
    ec = config.eval
    if not ec.every:
        return []

    def evaluate(ctx: StepContext) -> dict:
        fakes, _ = synthesis.generate(
            ctx.family, ctx.state, ec.num_samples, config.train.seed, progress=False
        )
        results = sample_quality(
            fakes,
            config.data.source,
            "test",
            ec.extractor,
            ec.metrics.split(","),
            progress=False,
        )
        numbers = {f"eval/{k}": v for k, v in results.items() if isinstance(v, float)}
        log.info("step %d: %s", ctx.step, numbers)
        return numbers

    return [Callback(ec.every, evaluate)]

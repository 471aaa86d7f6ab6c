"""The command line every experiment shares.

    python -m experiments.<name> --workdir=W [--config=experiments/<name>.py:tiny]
        [--config.train.steps=N --config.data.source=mnist ...]

``--config`` is an ml_collections config file flag: ``path[:preset]`` calls that file's
``get_config(preset)``; any key can be overridden with ``--config.<key>=value``. The CPU
defaults of ``genimg.platform`` are applied before JAX starts (set
``GENIMG_NO_CPU_DEFAULTS=1`` to opt out).
"""

from __future__ import annotations

import logging as pylogging
import sys

from genimg import platform

platform.configure_cpu_defaults()

from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from genimg.data import DataError  # noqa: E402
from genimg.train.loop import TrainingError, train_from_config  # noqa: E402

# Errors that are the user's to fix: reported in one line, exit status 1, no traceback.
USER_ERRORS = (DataError, TrainingError, FileNotFoundError)


def cli(experiment_file: str, main=train_from_config) -> None:
    """Define ``--workdir``/``--config`` (default: ``experiment_file``'s get_config) and run
    ``main(config, workdir)`` under absl."""
    flags.DEFINE_string("workdir", None, "Folder for checkpoints, metrics, samples.")
    flags.mark_flag_as_required("workdir")
    config_flags.DEFINE_config_file(
        "config", experiment_file, "Config file[:preset], e.g. experiments/dcgan.py:tiny."
    )

    def _main(argv):
        if len(argv) > 1:
            raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
        logging.set_verbosity(logging.WARNING)  # Orbax is chatty at INFO
        pylogging.getLogger("genimg").setLevel(pylogging.INFO)
        config = flags.FLAGS.config
        try:
            main(config, flags.FLAGS.workdir)
        except USER_ERRORS as err:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(1)

    app.run(_main)

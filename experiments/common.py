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
import re
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
    try:  # the default file is parsed right here, with the --config.* overrides of argv
        config_flags.DEFINE_config_file(
            "config", experiment_file, "Config file[:preset], e.g. experiments/dcgan.py:tiny."
        )
    except (AttributeError, KeyError, TypeError, ValueError) as err:
        _exit_bad_config(err, sys.argv)

    def _main(argv):
        if len(argv) > 1:
            raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
        logging.set_verbosity(logging.WARNING)  # Orbax is chatty at INFO
        pylogging.getLogger("genimg").setLevel(pylogging.INFO)
        try:
            config = flags.FLAGS.config
            config.lock()  # a typo in code (config.train.stpes) raises instead of adding a key
        except OSError as err:  # a --config path that cannot be loaded
            reason = re.search(r"\[Errno \d+\][^\n]*", str(err))
            print(
                f"error: bad --config: {reason.group(0) if reason else _one_line(err)}",
                file=sys.stderr,
            )
            sys.exit(1)
        try:
            main(config, flags.FLAGS.workdir)
        except USER_ERRORS as err:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(1)

    app.run(_main, flags_parser=_parse_flags)


def _parse_flags(argv):
    """absl flag parsing with one-line errors for bad ``--config`` files and overrides."""
    try:
        return flags.FLAGS(argv)
    except flags.Error as err:
        if isinstance(err.__cause__ or err.__context__, (AttributeError, KeyError)):
            _exit_bad_config(err.__cause__ or err.__context__, argv)
        print(f"error: {_one_line(err)} (see --helpfull)", file=sys.stderr)
    except (AttributeError, KeyError, TypeError, ValueError, OSError) as err:
        _exit_bad_config(err, argv)
    sys.exit(1)


def _exit_bad_config(err: BaseException, argv) -> None:
    if isinstance(err, (AttributeError, KeyError)):  # ml_collections: key not in the config
        text = str(err)
        key = re.search(r"[A-Za-z_]\w*", text)
        hint = re.search(r'Did you mean "(\w+)"', text)
        names = [a.split("=")[0] for a in argv if a.startswith("--config.")]
        key = key.group(0) if key else text
        bad = next((n for n in names if f".{key}." in n + "."), key)
        hint = f" (did you mean '{hint.group(1)}'?)" if hint else ""
        print(f"error: unknown config key {bad}{hint}", file=sys.stderr)
    else:
        print(f"error: bad --config: {_one_line(err)}", file=sys.stderr)
    sys.exit(1)


def _one_line(err: BaseException) -> str:
    """The useful part of a (possibly multi-line) error message, on one line."""
    text = str(err)
    if "Traceback (most recent call last)" in text:  # config file raised: keep its last line
        text = text.strip().splitlines()[-1]
    return " ".join(text.split())

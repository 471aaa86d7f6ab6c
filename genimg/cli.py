"""The command-line convention of every entry point: experiments, ``genimg.sample``,
``genimg.evaluate`` and the benchmarks.

- Flags are absl flags with underscores, defined through the helpers here so that the same
  thing has the same name everywhere: ``--workdir`` (a run's folder), ``--num_samples``
  (generated images), ``--num_images`` (test images), ``--batch_size`` (images per device
  call), ``--seed``, ``--labels`` (class ids for conditional families), ``--out``.
- ``--help`` prints the entry point's usage (its module docstring) and its own flags, and
  exits 0.
- Errors the user can fix (`genimg.errors.UserError`, a missing file, a bad flag or config
  key) print one line ``error: <what and how to fix it>`` on stderr and exit 1, with no
  traceback; entry points check their inputs before they write anything.
- A training run stopped by SIGTERM / SIGINT after saving (`genimg.errors.Interrupted`)
  prints one line saying where to resume and exits 0 (SIGTERM) or 130 (SIGINT); Ctrl-C
  anywhere else prints ``interrupted`` and exits 130.
- The CPU defaults of ``genimg.platform`` are applied when the program starts, before jax
  creates its backends (set ``GENIMG_NO_CPU_DEFAULTS=1`` to opt out).
"""

from __future__ import annotations

import logging as pylogging
import re
import sys
import types
from collections.abc import Callable, Sequence

from absl import app, flags, logging
from ml_collections import config_flags

from genimg import platform
from genimg.errors import Interrupted, UserError

FLAGS = flags.FLAGS
# Errors that are the user's to fix: reported in one line, exit status 1, no traceback.
USER_ERRORS = (UserError, FileNotFoundError)
_HELP_ARGS = ("--help", "-h", "-help", "--helpshort", "--helpfull", "-?")
_defined: list[str] = []  # flags of this entry point, in definition order, for --help


def log_devices() -> None:
    """Log the backend and devices this entry point runs on (one line). Training entry points
    log it in `genimg.train.loop.train_from_config`, after joining other processes."""
    pylogging.getLogger("genimg").info("%s", platform.describe_devices())


def fail(message: str) -> None:
    """Print ``error: message`` (one line) on stderr and exit with status 1."""
    print(f"error: {one_line(message)}", file=sys.stderr)
    sys.exit(1)


def one_line(err) -> str:
    """The useful part of a (possibly multi-line) error message, on one line."""
    text = str(err)
    if "Traceback (most recent call last)" in text:  # a config file raised: keep its last line
        # (ml_collections re-raises the config file's error type with the traceback in the
        # message, and a `UserError` escapes the line breaks of its message)
        text = text.replace("\\n", "\n").strip().splitlines()[-1]
    return " ".join(text.split())


# --- flags ------------------------------------------------------------------------------------


def _track(name: str) -> str:
    _defined.append(name)
    return name


def define_string(name: str, default, help_text: str, required: bool = False):
    holder = flags.DEFINE_string(_track(name), default, help_text)
    if required:
        flags.mark_flag_as_required(name)
    return holder


def define_integer(name: str, default, help_text: str, lower_bound: int | None = None):
    return flags.DEFINE_integer(_track(name), default, help_text, lower_bound=lower_bound)


def define_float(name: str, default, help_text: str):
    return flags.DEFINE_float(_track(name), default, help_text)


def define_bool(name: str, default: bool, help_text: str):
    return flags.DEFINE_bool(_track(name), default, help_text)


def define_list(name: str, default, help_text: str):
    return flags.DEFINE_list(_track(name), default, help_text)


def define_enum(name: str, default, choices, help_text: str):
    return flags.DEFINE_enum(_track(name), default, choices, help_text)


def workdir_flag(help_text: str = "A training run's folder.", required: bool = True):
    return define_string("workdir", None, help_text, required=required)


def num_samples_flag(default: int, help_text: str = "Number of generated images."):
    return define_integer("num_samples", default, help_text, lower_bound=1)


def num_images_flag(default: int = 0, help_text: str = "Use the first N test images (0 = all)."):
    return define_integer("num_images", default, help_text, lower_bound=0)


def batch_size_flag(default, help_text: str = "Images per device call."):
    return define_integer("batch_size", default, help_text, lower_bound=1)


def seed_flag(default: int = 0, help_text: str = "Random seed."):
    return define_integer("seed", default, help_text)


def labels_flag():
    return define_string(
        "labels",
        None,
        "Conditional families: class ids such as 3,7 (repeated to --num_samples) or 'all' "
        "(a balanced draw of every class).",
    )


def parse_labels(spec: str | None, num: int, num_classes: int | None):
    """``--labels``: None, ``all`` (0..K-1 repeated) or ``3,7`` (repeated) -> int list of
    length ``num``; range checks are the family's (`Family.check_labels`)."""
    if spec is None:
        return None
    if not num_classes:
        raise UserError("--labels needs a conditional run; this run's family takes no labels")
    if spec.strip() == "all":
        ids = list(range(num_classes))
    else:
        try:
            ids = [int(part) for part in spec.split(",") if part.strip()]
        except ValueError:
            raise UserError(f"--labels={spec}: expected class ids like 3,7 or 'all'") from None
        if not ids:
            raise UserError("--labels is empty: give class ids like 3,7 or 'all'")
    return [ids[i % len(ids)] for i in range(num)]


# --- running ----------------------------------------------------------------------------------


def _print_help(usage: str, extra: str = "") -> None:
    print(usage.strip() + "\n")
    print("flags:")
    for name in _defined:
        flag = FLAGS[name]
        default = "" if flag.default is None else f" (default: {flag.default_as_str})"
        print(f"  --{name}: {flag.help}{default}")
    if extra:
        print("\n" + extra.strip())


def args() -> types.SimpleNamespace:
    """The values of the flags this entry point defined, as attributes."""
    return types.SimpleNamespace(**{name: FLAGS[name].value for name in _defined})


def run(
    main: Callable[[types.SimpleNamespace], None],
    usage: str,
    define_flags: Callable[[], None] | None = None,
    help_extra: Callable[[], str] | None = None,
    positional: bool = False,
    commands: Sequence[str] = (),
):
    """Define the entry point's flags (``define_flags()``, with the helpers above), parse
    them and call ``main(args())`` under the convention above. Flags are defined only here,
    when the module runs as a program, so importing it as a library defines none; so are the
    CPU defaults applied (before jax creates its backends).

    With ``commands`` the program takes one of them as its first positional argument
    (``python -m genimg.synthesize inpaint --workdir=...``); it reaches ``main`` as
    ``args.command``. A missing or unknown command is a one-line error. With ``positional``
    the other words that are not flags (file names) arrive as ``args.argv``."""
    platform.configure_cpu_defaults()
    if define_flags is not None:
        define_flags()

    def parse(argv):
        if any(arg in _HELP_ARGS for arg in argv[1:]):
            _print_help(usage, help_extra() if help_extra else "")
            sys.exit(0)
        try:
            return FLAGS(argv)
        except flags.Error as err:
            cause = err.__cause__ or err.__context__
            if isinstance(cause, (AttributeError, KeyError)):
                _exit_bad_config(cause, argv)
            fail(f"{one_line(err)} (see --help)")
        except (AttributeError, KeyError, TypeError, ValueError, OSError) as err:
            _exit_bad_config(err, argv)

    def _main(argv):
        values = args()
        words = argv[1:]
        if commands:
            if not words:
                fail(f"give a command first: one of {', '.join(commands)} (see --help)")
            command, *words = words
            if command not in commands:
                fail(f"unknown command '{command}'; expected one of {', '.join(commands)}")
            values.command = command
        if positional:
            if not words:
                fail(f"missing arguments; see {argv[0]} --help")
            values.argv = list(words)  # the words that are not flags, in order
        elif words:
            fail(f"unexpected arguments: {' '.join(words)} (flags look like --name=value)")
        logging.set_verbosity(logging.WARNING)  # Orbax is chatty at INFO
        pylogging.getLogger("genimg").setLevel(pylogging.INFO)
        try:
            main(values)
        except USER_ERRORS as err:
            fail(str(err))
        except Interrupted as stop:  # a run that saved its state after SIGTERM / SIGINT
            print(one_line(stop), file=sys.stderr)
            sys.exit(stop.exit_code)
        except KeyboardInterrupt:  # Ctrl-C outside a training loop: nothing to save
            print("interrupted", file=sys.stderr)
            sys.exit(130)

    app.run(_main, flags_parser=parse)


def _exit_bad_config(err: BaseException, argv) -> None:
    if isinstance(err, (AttributeError, KeyError)):  # ml_collections: key not in the config
        text = str(err)
        key = re.search(r"[A-Za-z_]\w*", text)
        hint = re.search(r'Did you mean "(\w+)"', text)
        names = [a.split("=")[0] for a in argv if a.startswith("--config.")]
        key = key.group(0) if key else text
        bad = next((n for n in names if f".{key}." in n + "."), key)
        hint = f" (did you mean '{hint.group(1)}'?)" if hint else ""
        fail(f"unknown config key {bad}{hint}")
    reason = re.search(r"\[Errno \d+\][^\n]*", str(err)) if isinstance(err, OSError) else None
    fail(f"bad --config: {reason.group(0) if reason else one_line(err)}")


# --- experiments ------------------------------------------------------------------------------


def experiment(experiment_file: str, main: Callable, usage: str) -> None:
    """The CLI of ``python -m experiments.<name>``: ``--workdir``, ``--config=FILE[:PRESETS]``
    (default: ``experiment_file``'s ``get_config()``) and ``--config.<key>=value`` overrides;
    then ``main(config, workdir)``."""

    def define_flags():
        workdir_flag("Folder for checkpoints, metrics and samples (rerun to resume).")
        try:  # the default file is parsed right here, with the --config.* overrides of argv
            config_flags.DEFINE_config_file(
                _track("config"),
                experiment_file,
                "Config file[:presets], e.g. experiments/vae.py:mlp,tiny; override any key "
                "with --config.<key>=value.",
            )
        except (AttributeError, KeyError, TypeError, ValueError) as err:
            _exit_bad_config(err, sys.argv)

    def help_extra() -> str:
        try:
            config = FLAGS["config"].value
        except Exception:  # noqa: BLE001 (help must print even if the config cannot load)
            return ""
        lines = [f"  --config.{key}={value}" for key, value in _flatten(config)]
        return "config keys (defaults of this config):\n" + "\n".join(lines)

    def run_main(values):
        try:
            config = FLAGS.config
        except OSError as err:  # a --config path that cannot be loaded
            _exit_bad_config(err, sys.argv)
        config.lock()  # a typo in code (config.train.stpes) raises instead of adding a key
        main(config, values.workdir)

    run(run_main, usage, define_flags, help_extra)


def _flatten(config, prefix: str = ""):
    for key, value in config.items():
        if hasattr(value, "items"):
            yield from _flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value

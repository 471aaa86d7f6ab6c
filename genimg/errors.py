"""The one error type a user sees: a one-line message that names the thing and the fix.

Every entry point (`genimg.cli`) prints ``error: <message>`` for a `UserError` (and for a
missing file), exits with status 1 and shows no traceback. Library code raises the subclass
that fits; anything else is a bug and keeps its traceback. `Interrupted` is not an error: a
run stopped by a signal after saving its state, reported in one line with its own exit status.
"""

from __future__ import annotations


class UserError(Exception):
    """Something the user can fix: bad input, a bad setting, a missing file or run.

    The message is one line: line breaks in it (from a path, a source string or a file's
    contents quoted in it) are escaped as ``\\n``."""

    def __init__(self, message="", *args):
        if isinstance(message, str):
            message = message.replace("\r", "\\r").replace("\n", "\\n")
        super().__init__(message, *args)


class ConfigError(UserError, ValueError):
    """A config value or key that cannot work (names the key and what it accepts)."""


class Interrupted(Exception):
    """A run stopped by SIGTERM or SIGINT after it saved a checkpoint.

    The message is one line that says where the run stopped and how to resume; ``exit_code``
    is what a program should exit with: 0 after SIGTERM (a preempted job that saved its work
    did what it was asked to), 130 after SIGINT (128 + 2, what shells report for Ctrl-C).
    """

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code

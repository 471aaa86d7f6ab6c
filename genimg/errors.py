"""The one error type a user sees: a one-line message that names the thing and the fix.

Every entry point (`genimg.cli`) prints ``error: <message>`` for a `UserError` (and for a
missing file), exits with status 1 and shows no traceback. Library code raises the subclass
that fits; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """Something the user can fix: bad input, a bad setting, a missing file or run."""


class ConfigError(UserError, ValueError):
    """A config value or key that cannot work (names the key and what it accepts)."""

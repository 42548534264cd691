"""The one root of every error a user can cause or fix, and the one split of them that the
exit status shows.

Each part of the package names its own errors (ConfigError, MediaError, OutputError,
StoreError, ...) and derives them from UserError, so the entry points catch one class and
print its message as the single `error: ...` line (see streamer.report). Anything that is
not a UserError is a bug or an environment failure and is reported with its type name.

Errors in what the user typed derive from UsageError as well: the command line, a preset or
a setting's environment variable is wrong as written, so nothing was read or written and
the command exits 2, as for an option argparse refuses. Every other UserError is a run that
failed (an input, an output, the model store, the network, a device) and exits 1.
"""
from __future__ import annotations


class UserError(Exception):
    """Something the user can fix; `str(exc)` says what is wrong and what to do, in one
    line."""


class UsageError(UserError):
    """The command as written is wrong: an option value out of range or not among the
    choices, a bad preset, a name nothing knows. Exit status 2 (streamer.report)."""

"""The one root of every error a user can cause or fix.

Each part of the package names its own errors (ConfigError, MediaError, OutputError,
StoreError, ...) and derives them from UserError, so the entry points catch one class and
print its message as the single `error: ...` line (see streamer.report). Anything that is
not a UserError is a bug or an environment failure and is reported with its type name.
"""
from __future__ import annotations


class UserError(Exception):
    """Something the user can fix; `str(exc)` says what is wrong and what to do, in one
    line."""

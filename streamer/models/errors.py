"""Errors the model store raises for the user; each message is one line."""
from __future__ import annotations

from streamer.errors import UsageError, UserError


class StoreError(UserError):
    """A user-facing model store failure; str(exc) is one line, shown as `error: ...`."""


class UnknownModel(StoreError, UsageError, ValueError):
    """A style or asset name that the catalog does not know (a usage error: exit 2)."""


class ModelNotInstalled(StoreError, FileNotFoundError):
    """A model file is not in the store; the message names the command that installs it."""

    def __str__(self) -> str:
        # FileNotFoundError would format a single argument fine, but be explicit: one line.
        return str(self.args[0]) if self.args else "model not installed"


class DownloadError(StoreError):
    """The network or the server failed (after retries where retrying made sense)."""


class VerificationError(StoreError):
    """A file's size, checksum or structure is wrong; the bad file has been removed."""


class BadSetting(StoreError, UsageError, ValueError):
    """A setting (an option or an environment variable) that cannot work, refused before
    any network or disk work (a usage error: exit 2)."""


class StoreNotWritable(StoreError):
    """fetch/import into a folder we must not write to."""


class BadModelFile(StoreError, ValueError):
    """A model file is not DCT-Net (or is damaged); the message says why in one line."""

"""HTTP download with resume, retries and verification, on the standard library only.

A file is written to `<name>.part` and renamed into place only once its size and sha256
check out, so a file under its real name is always a verified one. A `.part` left behind
by a network failure is resumed with an HTTP Range request next time.
"""
from __future__ import annotations

import hashlib
import http.client
import logging
import math
import os
import socket
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

from .errors import BadSetting, DownloadError, VerificationError

log = logging.getLogger("streamer.models")

CHUNK = 1 << 16
USER_AGENT = "toonstream-model-store/1"
# Client errors that a retry can cure; any other 4xx is final (404: wrong URL or mirror).
_RETRYABLE_HTTP = {408, 425, 429}


@dataclass(frozen=True)
class DownloadOptions:
    timeout: float = 30.0       # seconds without any data before a try is abandoned
    retries: int = 3            # extra tries after the first
    backoff: float = 1.0        # first wait between tries, doubled each time (capped at 30 s)
    progress: bool | None = None  # None: a bar only when stderr is a terminal

    def __post_init__(self) -> None:
        # A zero timeout fails every try at once and a negative retry count means no try
        # at all; both look like network trouble later, so refuse them here.
        if not (isinstance(self.timeout, (int, float)) and math.isfinite(self.timeout)
                and self.timeout > 0):
            raise ValueError(f"timeout must be a positive number of seconds, not {self.timeout!r}")
        if not isinstance(self.retries, int) or self.retries < 0:
            raise ValueError(f"retries must be 0 or more, not {self.retries!r}")
        if not (math.isfinite(self.backoff) and self.backoff >= 0):
            raise ValueError(f"backoff must be 0 or more seconds, not {self.backoff!r}")


SCHEMES = ("http", "https")


def url_problem(url: str) -> str | None:
    """Why `url` cannot be downloaded over HTTP(S) at all, or None. Checked before the
    first try: no retry cures a missing host or an unknown scheme."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError as exc:
        return f"has a bad port or address ({exc})"
    if parts.scheme.lower() not in SCHEMES:
        return "is not an http(s) URL"
    if not parts.hostname:
        return "has no host"
    return None


def check_mirror(mirror: str, setting: str) -> str:
    """`mirror` if it is a usable base URL, else BadSetting naming the setting it came
    from (`--mirror` or TOONSTREAM_MODEL_MIRROR)."""
    problem = url_problem(mirror)
    if problem:
        shown = f"{setting}={mirror!r}" if setting.isupper() else f"{setting} {mirror!r}"
        raise BadSetting(f"{shown} {problem}; a mirror is a base URL such as "
                         f"https://mirror.example.org/models")
    return mirror


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def check_file(path: Path, size: int | None, sha256: str | None) -> str | None:
    """Why `path` does not match the published size/sha256, or None when it does."""
    actual = path.stat().st_size
    if size is not None and actual != size:
        kind = "truncated" if actual < size else "too long"
        return f"size {actual:,} B, expected {size:,} B ({kind} or a different file)"
    if sha256 is not None:
        digest = sha256_file(path)
        if digest != sha256:
            return f"sha256 {digest[:16]}... does not match the published {sha256[:16]}..."
    return None


class _Incomplete(Exception):
    """The connection ended before the announced length; retry with a Range request."""


def _host(url: str) -> str:
    return urlsplit(url).netloc or url


def _open(url: str, offset: int, timeout: float) -> http.client.HTTPResponse:
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)


def _content_range_start(value: str | None) -> int | None:
    # "bytes 100-199/200"
    try:
        return int(value.split()[1].split("-")[0]) if value else None
    except (IndexError, ValueError):
        return None


def _one_try(url: str, part: Path, label: str, opts: DownloadOptions) -> None:
    offset = part.stat().st_size if part.exists() else 0
    try:
        resp = _open(url, offset, opts.timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:
            # The .part is not a prefix of what the server has now: start over.
            part.unlink(missing_ok=True)
            raise _Incomplete("the partial download did not match the server's file") from None
        raise
    with resp:
        start = _content_range_start(resp.headers.get("Content-Range"))
        if offset and resp.status == 206 and start == offset:
            mode = "ab"
        else:
            # The server ignored the Range header (plain 200): the body is the whole file.
            offset, mode = 0, "wb"
        length = resp.headers.get("Content-Length")
        total = offset + int(length) if length and length.isdigit() else None
        show = opts.progress if opts.progress is not None else sys.stderr.isatty()
        from tqdm import tqdm  # only needed here; keeps `import streamer.models` light

        with open(part, mode) as out, tqdm(total=total, initial=offset, unit="B", unit_scale=True,
                                           unit_divisor=1024, desc=label, file=sys.stderr,
                                           disable=not show, leave=False) as bar:
            got = offset
            while True:
                block = resp.read(CHUNK)
                if not block:
                    break
                out.write(block)
                got += len(block)
                bar.update(len(block))
        # http.client returns b"" when a connection drops early instead of raising, so the
        # announced length is the only way to tell a finished body from a cut one.
        if total is not None and got < total:
            raise _Incomplete(f"connection closed after {got:,} of {total:,} B")


def _reason(exc: BaseException, opts: DownloadOptions) -> str:
    if isinstance(exc, urllib.error.URLError) and not isinstance(exc, urllib.error.HTTPError):
        exc = exc.reason if isinstance(exc.reason, BaseException) else exc
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return f"no data for {opts.timeout:g} s (server stalled)"
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return f"{exc.reason}"
    if isinstance(exc, (_Incomplete, http.client.IncompleteRead)):
        return str(exc) if isinstance(exc, _Incomplete) else "connection closed early"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def download(url: str, dest: Path, *, size: int | None, sha256: str | None,
             options: DownloadOptions = DownloadOptions(), label: str | None = None,
             validate: Callable[[Path], str | None] | None = None) -> Path:
    """Download `url` to `dest`, resuming a `.part` file, and keep it only if it verifies:
    size and sha256 where given, then `validate(part)` (returns a reason, or None if fine),
    which catches what checksums cannot when none is published, e.g. an HTML error page.

    Raises DownloadError when the network fails after all tries (the `.part` stays for the
    next run to resume) and VerificationError when the bytes are wrong (everything deleted).
    """
    dest = Path(dest)
    label = label or dest.name
    problem = url_problem(url)
    if problem:
        raise DownloadError(f"{label}: cannot download {url!r}: it {problem}")
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    if size is not None and part.exists() and part.stat().st_size > size:
        part.unlink()  # longer than the real file: cannot be a prefix of it
    tries = max(1, options.retries + 1)
    for attempt in range(1, tries + 1):
        if size is not None and part.exists() and part.stat().st_size == size:
            break  # an earlier run got every byte but stopped before verifying
        try:
            _one_try(url, part, label, options)
            break
        except urllib.error.HTTPError as exc:
            if exc.code not in _RETRYABLE_HTTP and exc.code < 500:
                raise DownloadError(f"{label}: HTTP {exc.code} {exc.reason} from {url}") from None
            last: BaseException = exc
        except (_Incomplete, http.client.HTTPException, urllib.error.URLError, OSError) as exc:
            last = exc
        if attempt < tries:
            wait = min(30.0, options.backoff * 2 ** (attempt - 1))
            log.warning("%s: %s; retrying in %.1f s (try %d of %d)", label,
                        _reason(last, options), wait, attempt + 1, tries)
            time.sleep(wait)
    else:
        if part.exists() and part.stat().st_size == 0:
            part.unlink()
        kept = " (partial file kept; the next fetch resumes it)" if part.exists() else ""
        raise DownloadError(f"{label}: {_reason(last, options)} from {_host(url)}, "
                            f"gave up after {tries} tries{kept}")

    problem = check_file(part, size, sha256)
    if problem is None and validate is not None:
        problem = validate(part)
    if problem:
        part.unlink(missing_ok=True)
        raise VerificationError(f"{label} from {_host(url)}: {problem}; the download was deleted")
    os.replace(part, dest)
    return dest

"""`fetch` refuses invalid settings at once, in one line, before any network or disk work
(issue 12, item 8 and the fetch flags): a mirror that is not an http(s) URL with a host,
from --mirror or TOONSTREAM_MODEL_MIRROR, a timeout that is not a positive number of
seconds, a negative retry count."""
from __future__ import annotations

import logging
import math
import subprocess
import sys
from pathlib import Path

import pytest

from streamer.models import DownloadError, DownloadOptions, download
from streamer.models.cli import main

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, tmp_path):
    monkeypatch.delenv("TOONSTREAM_MODELS", raising=False)
    monkeypatch.delenv("TOONSTREAM_MODEL_MIRROR", raising=False)
    monkeypatch.setenv("TOONSTREAM_CACHE", str(tmp_path / "user-cache"))


def _one_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_mirror_that_is_not_a_url_is_one_line_in_a_fresh_interpreter(tmp_path):
    root = tmp_path / "store"
    proc = subprocess.run([sys.executable, "-m", "streamer.models", "fetch", "anime", "--mirror",
                           "notaurl", "--models", str(root), "--no-progress"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error: --mirror 'notaurl' is not"), lines
    assert "Traceback" not in proc.stderr
    assert not root.exists()


def test_mirror_from_the_environment_is_checked_and_named(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TOONSTREAM_MODEL_MIRROR", "notaurl")
    root = tmp_path / "store"
    assert main(["fetch", "anime", "--models", str(root), "--no-progress"]) == 2
    assert _one_error(capsys).startswith("error: TOONSTREAM_MODEL_MIRROR='notaurl' is not")
    assert not root.exists()


@pytest.mark.parametrize("mirror, words", [
    ("http://", "has no host"),
    ("https:///models", "has no host"),
    ("ftp://mirror.example.org", "is not an http(s) URL"),
    ("http://127.0.0.1:99999", "port"),
])
def test_a_mirror_without_host_or_with_another_scheme_is_refused_without_retries(
        tmp_path, capsys, mirror, words):
    root = tmp_path / "store"
    assert main(["fetch", "3d", "--mirror", mirror, "--models", str(root), "--no-progress"]) == 2
    line = _one_error(capsys)  # one line: no "retrying" warnings before it
    assert f"--mirror {mirror!r}" in line and words in line
    assert not root.exists()


@pytest.mark.parametrize("flag, value, words", [
    ("--timeout", "0", "must be a number above 0"),
    ("--timeout", "-1", "must be a number above 0"),
    ("--timeout", "nan", "must be a number above 0"),
    ("--timeout", "inf", "must be a number above 0"),
    ("--timeout", "soon", "must be a number above 0"),
    ("--retries", "-1", "must be a whole number from 0"),
    ("--retries", "two", "must be a whole number from 0"),
])
def test_invalid_timeout_or_retries_are_refused_at_once(tmp_path, capsys, flag, value, words):
    root = tmp_path / "store"
    assert main(["fetch", "3d", flag, value, "--models", str(root)]) == 2
    line = _one_error(capsys)
    assert line.startswith(f"error: argument {flag}: ") and words in line and repr(value) in line
    assert not root.exists()


@pytest.mark.parametrize("url", ["http://", "notaurl/x.pb", "file:///etc/hostname"])
def test_download_refuses_a_bad_url_before_trying(tmp_path, caplog, url):
    opts = DownloadOptions(timeout=1.0, retries=3, backoff=60.0, progress=False)
    with caplog.at_level(logging.WARNING, logger="streamer.models"):
        with pytest.raises(DownloadError, match=r"cannot download .*(not an http|no host)"):
            download(url, tmp_path / "x.pb", size=None, sha256=None, options=opts)
    assert "retrying" not in caplog.text
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kwargs", [{"timeout": 0}, {"timeout": -2.0}, {"timeout": math.nan},
                                    {"retries": -1}, {"backoff": -1.0}])
def test_download_options_refuse_values_that_cannot_work(kwargs):
    with pytest.raises(ValueError):
        DownloadOptions(**kwargs)

"""Model store downloads against a real HTTP server on 127.0.0.1 (Range support, and
misbehaviours on demand: stall after the headers, drop the connection halfway)."""
from __future__ import annotations

import hashlib
import json
import re
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from streamer.models import (DownloadError, DownloadOptions, Store, VerificationError, download,
                             parse_catalog)
from streamer.models.cli import main

FAST = DownloadOptions(timeout=5.0, retries=2, backoff=0.0, progress=False)
MODEL_ID = "test/cartoon-compound"


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, tmp_path):
    monkeypatch.delenv("TOONSTREAM_MODELS", raising=False)
    monkeypatch.delenv("TOONSTREAM_MODEL_MIRROR", raising=False)
    monkeypatch.setenv("TOONSTREAM_CACHE", str(tmp_path / "user-cache"))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def do_GET(self) -> None:
        srv: _Server = self.server  # type: ignore[assignment]
        path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path.lstrip("/"))
        rng = self.headers.get("Range")
        srv.requests.append((path, rng))
        file = srv.root / path
        if not file.is_file():
            self.send_error(404, "Not Found")
            return
        data = file.read_bytes()
        start, status = 0, 200
        m = re.fullmatch(r"bytes=(\d+)-", rng or "")
        if m and srv.ranges:
            start, status = int(m.group(1)), 206
            if start >= len(data):
                self.send_error(416, "Range Not Satisfiable")
                return
        body = data[start:]
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        if path in srv.stall:
            srv.stop.wait(30)  # headers sent, then nothing: the client must time out
            self.close_connection = True
            return
        if srv.drops.get(path, 0) > 0:
            srv.drops[path] -= 1
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True  # hang up with half the announced bytes sent
            return
        self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, root: Path):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.root = root
        self.requests: list[tuple[str, str | None]] = []
        self.stall: set[str] = set()
        self.drops: dict[str, int] = {}
        self.ranges = True
        self.stop = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def put(self, rel: str, data: bytes) -> str:
        dest = self.root / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)
        return f"{self.url}/{rel}"


@pytest.fixture
def server(tmp_path):
    srv = _Server(tmp_path / "served")
    srv.root.mkdir()
    thread = threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield srv
    srv.stop.set()
    srv.shutdown()
    srv.server_close()


@pytest.fixture(scope="module")
def pb_bytes(models_dir) -> bytes:
    """A real DCT-Net graph in the official format (copied from the shared store)."""
    return (models_dir / "dctnet" / "cartoon_3d_bg.pb").read_bytes()


def _catalog(data: bytes, *, size: int | None = None, sha256: str | None = None):
    """A one-style catalog whose checksums are those of `data` unless overridden."""
    size = len(data) if size is None else size
    sha256 = hashlib.sha256(data).hexdigest() if sha256 is None else sha256
    files = [{"part": part, "path": f"cartoon_anime_{part}.pb", "local": f"dctnet/cartoon_toy_{part}.pb",
              "size": size, "sha256": sha256} for part in ("bg", "h")]
    return parse_catalog({
        "url_templates": {"hub": "https://example.invalid/{model_id}/{revision}/{path}"},
        "models": {
            "toy": {"kind": "style", "source": {"hub": "hub", "model_id": MODEL_ID, "revision": "v1"},
                    "files": files},
            "mask": {"kind": "mask", "source": {"url": "https://example.invalid/alpha.jpg",
                                                "model_id": MODEL_ID},
                     "files": [{"part": "mask", "path": "alpha.jpg", "local": "dctnet/alpha.jpg"}]},
        }})


def _serve_style(server: _Server, data: bytes) -> None:
    for part in ("bg", "h"):
        server.put(f"{MODEL_ID}/cartoon_anime_{part}.pb", data)


def test_good_file_downloads_verifies_and_builds_onnx(server, pb_bytes, tmp_path):
    _serve_style(server, pb_bytes)
    store = Store(tmp_path / "store", _catalog(pb_bytes))
    paths = store.fetch("toy", mirror=server.url, options=FAST)
    for path in paths:
        assert path.read_bytes() == pb_bytes
        assert not path.with_name(path.name + ".part").exists()
    manifest = json.loads((store.root / "manifest.json").read_text())
    assert manifest["files"]["dctnet/cartoon_toy_bg.pb"]["origin"] == \
        f"{server.url}/{MODEL_ID}/cartoon_anime_bg.pb"
    meta = json.loads((store.root / "onnx" / "toy_bg.json").read_text())
    assert meta["source_sha256"] == hashlib.sha256(pb_bytes).hexdigest()
    assert (store.root / "onnx" / "toy_h.onnx").is_file()


def test_installed_file_is_not_downloaded_again(server, pb_bytes, tmp_path):
    _serve_style(server, pb_bytes)
    store = Store(tmp_path / "store", _catalog(pb_bytes))
    store.fetch("toy", mirror=server.url, options=FAST, build=False)
    server.requests.clear()
    store.fetch("toy", mirror=server.url, options=FAST, build=False)
    assert server.requests == []


def test_truncated_file_is_rejected_and_deleted(server, pb_bytes, tmp_path):
    _serve_style(server, pb_bytes[: len(pb_bytes) // 3])
    store = Store(tmp_path / "store", _catalog(pb_bytes))
    with pytest.raises(VerificationError, match=r"truncated.*deleted") as exc:
        store.fetch("toy", mirror=server.url, options=FAST, build=False)
    assert "\n" not in str(exc.value)
    assert list((store.root / "dctnet").iterdir()) == []


def test_wrong_checksum_is_rejected_and_deleted(server, pb_bytes, tmp_path):
    _serve_style(server, pb_bytes)
    store = Store(tmp_path / "store", _catalog(pb_bytes, sha256="0" * 64))
    with pytest.raises(VerificationError, match=r"sha256 .* does not match .*deleted"):
        store.fetch("toy", mirror=server.url, options=FAST, build=False)
    assert list((store.root / "dctnet").iterdir()) == []


def test_error_page_served_as_200_is_rejected_by_structure(server, tmp_path):
    # The mask has no published checksum: only the content check can catch this.
    server.put(f"{MODEL_ID}/alpha.jpg", b"<html><body>rate limited</body></html>")
    store = Store(tmp_path / "store", _catalog(b"x"))
    with pytest.raises(VerificationError, match="not a complete JPEG"):
        store.fetch("mask", mirror=server.url, options=FAST)
    assert not (store.root / "dctnet" / "alpha.jpg").exists()


def test_missing_file_404_is_a_one_line_error(server, tmp_path, capsys):
    rc = main(["fetch", "anime", "--models", str(tmp_path / "store"), "--mirror", server.url,
               "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1  # the run failed (issue 23.14)
    assert len(err) == 1 and err[0].startswith("error: ") and "HTTP 404" in err[0]
    assert len(server.requests) == 1  # a 404 is final: no retries


def test_stalled_server_times_out_with_clear_error(server, pb_bytes, tmp_path):
    url = server.put("slow/cartoon.pb", pb_bytes)
    server.stall.add("slow/cartoon.pb")
    opts = DownloadOptions(timeout=0.5, retries=1, backoff=0.0, progress=False)
    with pytest.raises(DownloadError) as exc:
        download(url, tmp_path / "cartoon.pb", size=len(pb_bytes), sha256=None, options=opts)
    msg = str(exc.value)
    assert "no data for 0.5 s" in msg and "stalled" in msg and "gave up after 2 tries" in msg
    assert "\n" not in msg
    assert len(server.requests) == 2
    assert not (tmp_path / "cartoon.pb").exists()


def test_interrupted_download_resumes_with_range_and_verifies(server, pb_bytes, tmp_path):
    url = server.put("cut/cartoon.pb", pb_bytes)
    server.drops["cut/cartoon.pb"] = 1
    dest = download(url, tmp_path / "cartoon.pb", size=len(pb_bytes),
                    sha256=hashlib.sha256(pb_bytes).hexdigest(), options=FAST)
    assert dest.read_bytes() == pb_bytes
    (first, r1), (second, r2) = server.requests
    assert r1 is None and r2 == f"bytes={len(pb_bytes) // 2}-"


def test_partial_file_left_by_an_earlier_run_is_resumed(server, pb_bytes, tmp_path):
    url = server.put("p/cartoon.pb", pb_bytes)
    (tmp_path / "cartoon.pb.part").write_bytes(pb_bytes[:1000])
    download(url, tmp_path / "cartoon.pb", size=len(pb_bytes),
             sha256=hashlib.sha256(pb_bytes).hexdigest(), options=FAST)
    assert server.requests == [("p/cartoon.pb", "bytes=1000-")]
    assert (tmp_path / "cartoon.pb").read_bytes() == pb_bytes


def test_server_without_range_support_restarts_from_zero(server, pb_bytes, tmp_path):
    url = server.put("p/cartoon.pb", pb_bytes)
    server.ranges = False
    (tmp_path / "cartoon.pb.part").write_bytes(b"junk" * 100)
    download(url, tmp_path / "cartoon.pb", size=len(pb_bytes),
             sha256=hashlib.sha256(pb_bytes).hexdigest(), options=FAST)
    assert (tmp_path / "cartoon.pb").read_bytes() == pb_bytes


def test_cli_fetch_uses_the_catalog_paths_under_a_mirror(server, pb_bytes, tmp_path, capsys,
                                                         monkeypatch):
    # The real catalog: 3d's files are cartoon_anime_*.pb in its ModelScope repository.
    for part in ("bg", "h"):
        server.put(f"damo/cv_unet_person-image-cartoon-3d_compound-models/cartoon_anime_{part}.pb",
                   pb_bytes)
    monkeypatch.setenv("TOONSTREAM_MODEL_MIRROR", server.url)
    root = tmp_path / "store"
    rc = main(["fetch", "3d", "--models", str(root), "--no-progress"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert (root / "dctnet" / "cartoon_3d_bg.pb").read_bytes() == pb_bytes
    assert (root / "dctnet" / "cartoon_3d_h.pb").is_file()
    assert (root / "onnx" / "3d_bg.onnx").is_file() and (root / "onnx" / "3d_h.onnx").is_file()
    assert "no published sha256, checked size and structure only" in err
    assert "cartoon_3d_bg.pb" in out


def test_cli_reports_a_stalled_server_in_one_error_line(server, pb_bytes, tmp_path, capsys):
    rel = "damo/cv_unet_person-image-cartoon-3d_compound-models/cartoon_anime_bg.pb"
    server.put(rel, pb_bytes)
    server.stall.add(rel)
    rc = main(["fetch", "3d", "--models", str(tmp_path / "store"), "--mirror", server.url,
               "--timeout", "0.5", "--retries", "1", "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1
    assert err[0].startswith("warning: cartoon_3d_bg.pb: no data for 0.5 s")  # the retry
    assert err[-1].startswith("error: cartoon_3d_bg.pb: no data for 0.5 s (server stalled)")
    assert "Traceback" not in "\n".join(err)


def test_fetch_downloads_again_an_installed_file_that_changed_since(server, pb_bytes, tmp_path,
                                                                     capsys):
    """The repair command that a damaged-file error names must repair: `fetch` does not
    skip a file whose bytes differ from those recorded when it was installed, even for a
    style without a published sha256 (3d) and a change too small for the weight checks."""
    for part in ("bg", "h"):
        server.put(f"damo/cv_unet_person-image-cartoon-3d_compound-models/cartoon_anime_{part}.pb",
                   pb_bytes)
    root = tmp_path / "store"
    args = ["fetch", "3d", "--models", str(root), "--mirror", server.url, "--no-progress"]
    assert main(args) == 0
    installed = root / "dctnet" / "cartoon_3d_bg.pb"
    data = bytearray(pb_bytes)
    data[len(data) // 2] ^= 0x01  # inside the weights: a lowest bit, plausible values
    installed.write_bytes(bytes(data))
    assert main(["path", "3d", "--models", str(root)]) == 1
    assert f"fetch 3d --models {root}" in capsys.readouterr().err
    server.requests.clear()
    assert main(args) == 0, capsys.readouterr().err
    assert [p for p, _ in server.requests] == \
        ["damo/cv_unet_person-image-cartoon-3d_compound-models/cartoon_anime_bg.pb"]
    assert installed.read_bytes() == pb_bytes
    assert main(["path", "3d", "--models", str(root)]) == 0

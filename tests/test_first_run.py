"""The first run of a new user: no model store yet. `make run` (run_video.py --fetch) fetches
the style it needs, verified, into the per-user store, and converts the bundled sample; the
files come from the catalog's sources under a mirror on 127.0.0.1 (the download tests' real
HTTP server). Without the user's consent nothing is downloaded: a script gets one error
line naming --fetch, a terminal gets a y/N question, and the web server never downloads."""
from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from streamer.models import ModelNotInstalled, Store, load_catalog
from streamer.models.ensure import ask_yes_no, ensure_models, missing_for
from streamer.samples import SAMPLE
from streamer.video.app import main as run_video
# The real HTTP server of the model store's download tests (Range support, request log).
from test_store_download import server  # noqa: F401  (a pytest fixture)

ROOT = Path(__file__).resolve().parents[1]
# The test store's anime weights are fp16-rounded copies whose sha256 is (rightly) not the
# published one, so a fetch of anime from them fails verification; 3d has no published
# sha256 and is checked by size and structure, like every style but anime.
STYLE = "3d"


@pytest.fixture
def empty_user(monkeypatch, tmp_path) -> Path:
    """A user without TOONSTREAM_MODELS: the store is the per-user cache, empty."""
    monkeypatch.delenv("TOONSTREAM_MODELS", raising=False)
    monkeypatch.delenv("TOONSTREAM_MODEL_MIRROR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "home-cache"))
    monkeypatch.setenv("TOONSTREAM_CACHE", str(tmp_path / "home-cache" / "toonstream"))
    store = tmp_path / "home-cache" / "toonstream" / "models"
    assert not store.exists()
    return store


@pytest.fixture
def mirror(server, models_dir, monkeypatch):  # noqa: F811
    """The catalog's files for STYLE, the face detector and the head mask, served at their
    mirror paths (copies of the test store; its bg model serves as the head model, which
    holds the same weights for this style)."""
    cat = load_catalog()
    for target in (STYLE, "face", "mask"):
        for f in cat.model(target).files:
            src = models_dir / f.local
            if not src.is_file() and f.part == "h":
                src = models_dir / cat.model(target).file("bg").local
            server.put(f.mirror_path, src.read_bytes())
    monkeypatch.setenv("TOONSTREAM_MODEL_MIRROR", server.url)
    return server


def _read(path: Path) -> np.ndarray:
    img = cv2.imread(str(path))
    assert img is not None, f"{path} is not an image"
    return img


@pytest.mark.slow
def test_make_run_fetches_the_style_into_an_empty_user_store_and_converts_the_sample(
        empty_user, mirror, models_dir, tmp_path, capfd):
    out = tmp_path / "out" / f"luciano_{STYLE}.png"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAKE", "MFLAGS"))}
    # `-o venv`: this interpreter already has the project; the rest is `make run` as shipped.
    proc = subprocess.run(["make", "-o", "venv", "run", f"PY={sys.executable}",
                           f"STYLE={STYLE}", f"OUTPUT={out}", "ARGS=--no-progress"],
                          cwd=ROOT, env=env, capture_output=True, text=True)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log
    assert "fetched and verified: 3d, face, mask" in log
    assert "1 face(s) pasted" in log  # the fetched detector and mask were used

    # Every file came from the mirror, verified, into the per-user store.
    cat = load_catalog()
    got = {p for p, _ in mirror.requests}
    for target in (STYLE, "face", "mask"):
        for f in cat.model(target).files:
            assert f.mirror_path in got
            assert (empty_user / f.local).read_bytes() == (mirror.root / f.mirror_path).read_bytes()
    assert not list(empty_user.rglob("*.part"))

    # The result is the one the test store gives for the same command.
    ref = tmp_path / "ref.png"
    assert run_video([str(SAMPLE), "-o", str(ref), "--style", STYLE, "--models",
                      str(models_dir), "--no-progress"]) == 0
    a, b = _read(out), _read(ref)
    assert a.shape == b.shape == _read(SAMPLE).shape
    assert int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max()) <= 1
    capfd.readouterr()

    # Nothing is missing any more: the next run asks nothing and downloads nothing.
    n = len(mirror.requests)
    assert ensure_models(Store(empty_user), STYLE, "auto", fetch=True, log=print) == ()
    assert len(mirror.requests) == n


def test_without_fetch_a_script_gets_one_error_line_naming_fetch_and_nothing_is_downloaded(
        empty_user, mirror, tmp_path, capfd):
    out = tmp_path / "x.png"
    rc = run_video([str(SAMPLE), "-o", str(out), "--style", STYLE, "--no-progress"])
    err = capfd.readouterr().err.strip().splitlines()
    assert rc == 1
    assert len(err) == 1 and err[0].startswith("error: ") and "--fetch" in err[0]
    assert f"python -m streamer.models fetch {STYLE}" in err[0]
    assert mirror.requests == [] and not out.exists() and not empty_user.exists()


def test_no_fetch_never_asks_even_on_a_terminal(empty_user, mirror):
    asked: list[str] = []
    with pytest.raises(ModelNotInstalled, match="--fetch"):
        ensure_models(Store(empty_user), STYLE, "auto", fetch=False, log=print,
                      interactive=True, ask=lambda q: asked.append(q) or True)
    assert asked == [] and mirror.requests == []


def test_a_terminal_is_asked_and_no_means_no_download(empty_user, mirror):
    questions: list[str] = []
    with pytest.raises(ModelNotInstalled):
        ensure_models(Store(empty_user), STYLE, "auto", fetch=None, log=print,
                      interactive=True, ask=lambda q: questions.append(q) or False)
    assert len(questions) == 1
    assert "3d (11.8 MB)" in questions[0] and str(empty_user) in questions[0]
    assert mirror.requests == []


def test_a_terminal_that_answers_yes_gets_the_style_and_the_face_files(empty_user, mirror):
    lines: list[str] = []
    got = ensure_models(Store(empty_user), STYLE, "auto", fetch=None, log=lines.append,
                        interactive=True, ask=lambda q: True)
    assert got == (STYLE, "face", "mask")
    assert missing_for(Store(empty_user), STYLE, "on").all == ()
    assert any("no published sha256" in line for line in lines)  # the store's checks, shown


def test_the_prompt_reads_yes_and_treats_anything_else_or_end_of_input_as_no():
    out = io.StringIO()
    assert ask_yes_no("download?", io.StringIO("y\n"), out) is True
    assert out.getvalue() == "download? [y/N] "
    assert ask_yes_no("download?", io.StringIO("YES\n"), io.StringIO()) is True
    assert ask_yes_no("download?", io.StringIO("\n"), io.StringIO()) is False
    assert ask_yes_no("download?", io.StringIO("nope\n"), io.StringIO()) is False
    assert ask_yes_no("download?", io.StringIO(""), io.StringIO()) is False


def test_an_optional_face_file_that_fails_turns_faces_off_but_the_style_is_fetched(
        empty_user, mirror):
    face = load_catalog().model("face").files[0]
    (mirror.root / face.mirror_path).unlink()  # the mirror lacks the detector: HTTP 404
    lines: list[str] = []
    got = ensure_models(Store(empty_user), STYLE, "auto", fetch=True, log=lines.append)
    assert got == (STYLE, "mask")
    assert any(line.startswith("note: face could not be fetched") and "404" in line
               for line in lines)
    # With --faces on the detector is required: the same failure is the error.
    with pytest.raises(Exception, match="404"):
        ensure_models(Store(empty_user), STYLE, "on", fetch=True, log=lines.append)


def test_faces_off_needs_only_the_style(empty_user):
    need = missing_for(Store(empty_user), STYLE, "off")
    assert need.required == (STYLE,) and need.optional == ()
    need = missing_for(Store(empty_user), STYLE, "on")
    assert need.required == (STYLE, "face", "mask")


def test_run_stream_without_fetch_fails_before_opening_the_camera(empty_user, mirror, capfd):
    from streamer.live.app import main as run_stream
    rc = run_stream(["--synthetic", "--sink", "null", "--seconds", "1", "--style", STYLE,
                     "--no-commands"])
    err = capfd.readouterr().err
    assert rc != 0
    assert "error: " in err and "--fetch" in err
    assert "source:" not in err  # the camera was not opened
    assert mirror.requests == []


def test_the_web_server_never_downloads_a_missing_style(empty_user, mirror, capfd):
    pytest.importorskip("gradio")
    from streamer.web.cli import main as run_web
    rc = run_web([])  # fails before it would serve
    err = capfd.readouterr().err
    assert rc == 1
    assert "error: " in err and "python -m streamer.models fetch" in err
    assert mirror.requests == []


def test_the_bundled_sample_is_package_data_with_its_licence_note():
    assert SAMPLE.is_file() and SAMPLE.parent.name == "samples"
    assert _read(SAMPLE).shape == (400, 400, 3)
    note = (SAMPLE.parent / "README.md").read_text(encoding="utf-8")
    assert "CC0" in note and "luciano.png" in note


def test_run_stream_with_fetch_downloads_the_style_then_streams(empty_user, mirror, capfd):
    from streamer.live.app import main as run_stream
    rc = run_stream(["--synthetic", "--sink", "null", "--seconds", "1", "--style", STYLE,
                     "--faces", "off", "--no-commands", "--fetch", "--status-every", "0"])
    err = capfd.readouterr().err
    assert rc == 0, err
    assert f"fetched and verified: {STYLE}" in err and "done:" in err
    got = {p for p, _ in mirror.requests}
    assert all(f.mirror_path in got for f in load_catalog().model(STYLE).files)
    assert not (empty_user / "face").exists()  # faces off: the detector is not needed


def test_the_documented_fetch_face_mask_command_fetches_both(empty_user, mirror, capsys):
    from streamer.models.cli import main as models_cli
    assert models_cli(["fetch", "face", "mask", "--no-progress"]) == 0
    assert (empty_user / "face" / "yunet.onnx").is_file()
    assert (empty_user / "dctnet" / "alpha.jpg").is_file()
    # An unknown name among several fails before anything is downloaded.
    n = len(mirror.requests)
    assert models_cli(["fetch", STYLE, "pixar", "--no-progress"]) == 2
    assert "unknown model 'pixar'" in capsys.readouterr().err
    assert len(mirror.requests) == n


def test_toonstream_models_set_wins_over_the_user_store_for_the_fetch(
        empty_user, mirror, monkeypatch, tmp_path, capfd):
    own = tmp_path / "team-store"
    monkeypatch.setenv("TOONSTREAM_MODELS", str(own))
    out = tmp_path / "x.png"
    rc = run_video([str(SAMPLE), "-o", str(out), "--style", STYLE, "--faces", "off",
                    "--fetch", "--no-progress"])
    assert rc == 0, capfd.readouterr().err
    assert (own / "dctnet" / f"cartoon_{STYLE}_bg.pb").is_file() and out.is_file()
    assert not empty_user.exists()

"""The web page's model side and command line, without a browser (see test_web_browser.py for
the page itself in Chromium): same output as run_video, progress, limits, temporary files,
the webcam path, the queue settings, and run_web.py's options."""
from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

from web.harness import ROOT, free_port, require_web, run_cli, shared_service
from web.media import make_clip, probe

from awkward_media import damaged, decoded, picture, png_with_icc


@pytest.fixture(scope="module")
def service(models_dir):
    return shared_service(models_dir)


@pytest.mark.parametrize("faces", [True, False])
def test_photo_is_the_command_lines_output(service, models_dir, media_dir, tmp_path, faces):
    src = media_dir / "luciano.png"
    cli = cv2.imread(str(run_cli(models_dir, src, tmp_path / "cli.png", "3d",
                                 "--faces", "on" if faces else "off")))
    web = cv2.imread(str(service.photo(src, "3d", faces)))
    assert web.shape == cli.shape
    assert int(np.abs(web.astype(np.int16) - cli).max()) <= 1
    plain = cv2.imread(str(service.photo(src, "3d", not faces)))
    assert np.abs(plain.astype(np.int16) - web).max() > 8  # the switch changes the face


def test_installed_styles_and_previews(service, models_dir):
    from streamer.models import open_store

    store = open_store(models_dir)
    assert service.styles == [s for s in store.catalog.styles if store.source_for(s) is not None]
    previews = service.previews()
    assert [name for name, _ in previews] == service.styles
    for _, img in previews:
        assert img.shape == (128, 128, 3) and img.dtype == np.uint8
    # each style looks different on the pattern
    flat = [img.astype(np.int16) for _, img in previews]
    for i in range(len(flat)):
        for j in range(i + 1, len(flat)):
            assert np.abs(flat[i] - flat[j]).mean() > 1.0, (service.styles[i], service.styles[j])
    assert service.previews() is previews  # made once


def test_video_keeps_frames_and_audio_and_reports_progress(service, tmp_path):
    clip = tmp_path / "clip.mp4"
    frames = make_clip(clip, seconds=1.0, fps=10, size=(160, 128))
    calls = []
    out = service.video(clip, "anime", on_progress=lambda f, n, t: calls.append((f, n, t)))
    assert out.suffix == ".mp4" and out.is_file()
    assert probe(out) == (frames, 160, 128, 1)
    assert calls, "no progress reported"
    fractions = [f for f, _, _ in calls if f is not None]
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)
    assert calls[-1][1:] == (frames, frames)


def test_audio_a_container_cannot_hold_is_its_own_error(tmp_path):
    import av

    from streamer.sinks.video_file import ContainerCannotHold, OutputError, copy_audio_stream

    clip = tmp_path / "clip.mp4"
    make_clip(clip, seconds=0.3, fps=10, size=(64, 48))  # AAC audio, which WebM cannot hold
    assert issubclass(ContainerCannotHold, OutputError)
    with av.open(str(clip)) as src, av.open(str(tmp_path / "out.webm"), "w") as out:
        with pytest.raises(ContainerCannotHold, match="webm container cannot hold"):
            copy_audio_stream(out, src.streams.audio[0], "webm", "out.webm")


def test_video_goes_to_matroska_on_the_type_not_the_words(service, tmp_path, monkeypatch):
    from types import SimpleNamespace

    from streamer.sinks.video_file import ContainerCannotHold, OutputError
    from streamer.web import service as service_mod

    clip = tmp_path / "clip.mp4"
    make_clip(clip, seconds=0.3, fps=10, size=(64, 48), audio=False)
    tried = []

    def convert(src, dst, work, on_progress):
        tried.append(dst.suffix)
        if len(tried) == 1:
            raise failure
        return SimpleNamespace(warnings=[])

    monkeypatch.setattr(service_mod, "convert_video", convert)
    failure = ContainerCannotHold("clip.mp4: the mp4 container cannot hold it")
    assert service.video(clip, "anime").suffix == ".mkv" and tried == [".mp4", ".mkv"]
    # another output error is the user's, even when its words say "cannot hold"
    tried.clear()
    failure = OutputError("clip.mp4: the disk cannot hold it; free some space")
    with pytest.raises(OutputError, match="disk cannot hold"):
        service.video(clip, "anime")
    assert tried == [".mp4"]


def test_limits_give_clear_messages(service, tmp_path):
    from streamer.web.service import WebError

    clip = tmp_path / "clip.mp4"
    make_clip(clip, seconds=1.0, fps=10, size=(64, 48), audio=False)
    old = service.limits
    try:
        service.limits = dataclasses.replace(old, max_video_seconds=0.5)
        with pytest.raises(WebError, match=r"1\.0 s long; this server converts videos up to 0\.5 s"):
            service.video(clip, "anime")
        service.limits = dataclasses.replace(old, max_video_pixels=32 * 32)
        with pytest.raises(WebError, match=r"64x48"):
            service.video(clip, "anime")
        service.limits = dataclasses.replace(old, max_photo_pixels=100)
        photo = tmp_path / "p.png"
        cv2.imwrite(str(photo), np.zeros((20, 20, 3), np.uint8))
        with pytest.raises(WebError, match=r"20x20"):
            service.photo(photo, "anime")
    finally:
        service.limits = old
    with pytest.raises(WebError, match="not installed here"):
        service.photo(tmp_path / "p.png", "no-such-style")
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    from streamer.errors import UserError
    with pytest.raises(UserError, match="not an image"):
        service.photo(bad, "anime")


def test_temporary_files_are_swept_and_removed(models_dir, media_dir):
    from streamer.web.service import ToonService

    svc = ToonService(models=str(models_dir), keep_s=0.0)
    try:
        first = svc.photo(media_dir / "bryan_115px.png", "anime")
        assert first.is_file()
        time.sleep(0.05)
        second = svc.photo(media_dir / "bryan_115px.png", "anime")
        assert second.is_file() and not first.parent.exists()  # swept by the next request
        workdir = svc.workdir
    finally:
        svc.close()
    assert not workdir.exists()


def test_webcam_frames_through_the_live_path(service):
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    out = service.webcam(frame, "anime", False, "test-session")
    assert out.shape == frame.shape and out.dtype == np.uint8
    again = service.webcam(frame, "anime", False, "test-session")
    assert np.array_equal(out, again)  # a copy, not a view into a reused buffer
    from streamer.live.toon import working_size
    toon = service._live["test-session"][1]
    assert (toon.work_w, toon.work_h) == working_size(640, 480, service.live_size)
    with_faces = service.webcam(frame, "anime", True, "test-session")
    assert with_faces.shape == frame.shape
    big = rng.integers(0, 256, (1080, 1920, 3), dtype=np.uint8)
    assert service.webcam(big, "3d", False, "other").shape == (540, 960, 3)
    assert service.webcam(None, "anime", False, "x") is None


def test_the_webcam_measures_its_precision_at_its_first_frame_and_files_keep_theirs(models_dir):
    from streamer.web.service import ToonService

    lines: list[str] = []
    svc = ToonService(models=str(models_dir), log=lines.append)
    try:
        assert svc._chooser is None  # nothing measured before a webcam frame
        frame = np.full((360, 640, 3), 128, np.uint8)
        assert svc.webcam(frame, "anime", False, "s").shape == frame.shape
        chooser = svc._chooser
        assert chooser is not None and chooser.choice.measured
        assert [m.label for m in chooser.choice.measured][0] == "fast"
        assert any(line.startswith("precision auto: ") for line in lines), lines
        assert svc.flows.engine_settings.precision == "exact"  # photos and videos: exact
    finally:
        svc.close()
    fixed = ToonService(models=str(models_dir), webcam_precision="exact")
    try:
        fixed.webcam(np.full((360, 640, 3), 128, np.uint8), "anime", False, "s")
        assert fixed._chooser is None
    finally:
        fixed.close()


def test_queue_runs_one_model_call_at_a_time(service):
    require_web()
    from streamer.web.app import CONCURRENCY_ID, build_app

    demo = build_app(service, stream_every=0.25)
    fns = {fn.name: fn for fn in demo.fns.values()}
    for name in ("run_photo", "run_video", "run_cam"):
        assert fns[name].concurrency_limit == 1
        assert fns[name].concurrency_id == CONCURRENCY_ID
        assert fns[name].queue
    cam = fns["run_cam"]
    # Gradio's stream mode: chunks go into the open stream, the server keeps the newest
    assert cam.trigger_mode == "multiple" and cam.stream_every == 0.25
    assert demo._queue.max_size == 16


# --- run_web.py ---------------------------------------------------------------------------


def _run_web(args, env=None):
    return subprocess.Popen([sys.executable, str(ROOT / "run_web.py"), *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})


def test_cli_rejects_bad_options():
    for args, pattern in ((["--auth", "nopassword"], "USER:PASSWORD"),
                          (["--port", "70000"], "--port: must be"),
                          (["--max-video-seconds", "0"], "must be a number above 0"),
                          (["--max-file-size", "lots"], "not a file size: 'lots'")):
        p = _run_web(args)
        _, err = p.communicate(timeout=120)
        assert p.returncode == 2 and re.search(pattern, err), err
        assert "Traceback" not in err


def test_cli_without_models_says_what_to_do(tmp_path):
    require_web()
    p = _run_web(["--models", str(tmp_path), "--port", str(free_port())])
    _, err = p.communicate(timeout=120)
    assert p.returncode == 1
    assert "error: no style is installed" in err and "fetch anime" in err


def test_cli_serves_with_warning_and_password(models_dir):
    require_web()
    port = free_port()
    p = _run_web(["--host", "0.0.0.0", "--port", str(port), "--auth", "ann:secret",
                  "--models", str(models_dir)])
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 180
        while True:
            assert p.poll() is None, p.communicate()[1]
            try:
                urllib.request.urlopen(base + "/", timeout=5)
                break
            except (urllib.error.URLError, ConnectionError):
                assert time.monotonic() < deadline, "run_web.py did not start in 180 s"
                time.sleep(0.5)
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(base + "/gradio_api/login_check", timeout=10)
        assert e.value.code == 401
        form = urllib.parse.urlencode({"username": "ann", "password": "secret"}).encode()
        with urllib.request.urlopen(base + "/login", data=form, timeout=10) as r:
            assert json.load(r) == {"success": True}
        bad = urllib.parse.urlencode({"username": "ann", "password": "wrong"}).encode()
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(base + "/login", data=bad, timeout=10)
    finally:
        p.terminate()
        try:
            _, err = p.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            _, err = p.communicate()
    assert "warning: serving on 0.0.0.0" in err
    assert "engine:" in err
    # SIGTERM stops it like Ctrl+C: cleanly, with its temporary files removed; the exit
    # status says a signal ended it (128 + 15), as a shell reports it
    assert p.returncode == 143, err
    assert "stopped by SIGTERM" in err and "Traceback" not in err
    workdir = re.search(r"temporary files: (\S+)", err).group(1)
    assert not Path(workdir).exists()


# --- what users uploaded (tests/awkward_media.py): colour profiles, random and cut files ----


def test_web_video_tab_survives_a_png_with_an_icc_profile(tmp_path, models_dir):
    # The web server converts in its own process: a crash there takes the page down. Two
    # uploads, as a user retries; each ends as a one-line message, never a dead process.
    pytest.importorskip("gradio")
    src = tmp_path / "photo.png"
    src.write_bytes(png_with_icc(picture(0)))
    code = (
        "import sys\n"
        "from streamer.errors import UserError\n"
        "from streamer.web.service import ToonService, message\n"
        f"svc = ToonService(models={str(models_dir)!r})\n"
        "for _ in range(2):\n"
        "    try:\n"
        f"        svc.video({str(src)!r}, 'anime')\n"
        "        print('converted')\n"
        "    except UserError as exc:\n"
        "        print('message:', message(exc))\n"
        "svc.close()\n")
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, timeout=600)
    assert res.returncode == 0, (res.returncode, res.stderr)
    lines = res.stdout.splitlines()
    assert len(lines) == 2 and all("Photo tab" in ln for ln in lines), res.stdout


def test_web_video_tab_says_a_random_file_is_not_a_video(tmp_path, models_dir):
    # FFmpeg's text-art demuxer takes any bytes; the page said "the video does not say how
    # long it is", which sends the user looking for a duration.
    pytest.importorskip("gradio")
    from streamer.errors import UserError
    from streamer.web.service import message

    src = tmp_path / "upload.bin"
    src.write_bytes(np.random.default_rng(1).integers(0, 256, 100_000, np.uint8).tobytes())
    with pytest.raises(UserError) as err:
        shared_service(models_dir).video(src, "anime")
    assert "not a video" in message(err.value)
    assert "how long" not in message(err.value)


def test_web_video_tab_passes_on_the_warning_for_a_truncated_file(tmp_path, models_dir):
    pytest.importorskip("gradio")
    src = damaged(tmp_path, ".mkv", "truncated")
    warnings: list[str] = []
    out = shared_service(models_dir).video(src, "anime", on_warning=warnings.append)
    frames = len(decoded(out))
    assert len(warnings) == 1 and "ends early" in warnings[0]
    assert f"{frames} frames written" in warnings[0]


# --- the background controls in the page's own words (issue 23, item 16) ---------------------

@pytest.mark.parametrize("picked,want", [
    ("#FF8000", "#ff8000"), ("0f0", "#00ff00"), ("rgb(255, 128, 0)", "#ff8000"),
    ("rgba(0, 0, 255, 0.5)", "#0000ff"), ("hsl(120, 100%, 50%)", "#00ff00"),
    ("hsla(0, 100%, 50%, 1)", "#ff0000")])
def test_every_form_the_colour_picker_gives_is_a_colour(picked, want):
    require_web()
    from streamer.web.background import background_value

    assert background_value("color", picked, None) == f"color:{want}"


def test_a_bad_colour_is_said_in_the_pages_words(service, media_dir):
    from streamer.errors import UserError
    from streamer.web.background import background_value

    with pytest.raises(UserError) as err:
        background_value("color", "greenish", None)
    text = str(err.value)
    assert text == ("The background colour 'greenish' cannot be read: pick one with the colour "
                    "picker, or type it as #RRGGBB (e.g. #00ff00).")
    assert "--background" not in text


@pytest.mark.parametrize("what", ["text", "folder", "huge", "missing"])
def test_a_background_image_that_cannot_be_used_is_named_by_its_upload(tmp_path, what):
    require_web()
    from streamer.errors import UserError
    from streamer.web.background import background_value

    room = tmp_path / "gradio-cache" / "0123abcd" / "room.png"
    room.parent.mkdir(parents=True)
    if what == "text":
        room.write_text("not an image")
        reason = "cannot be read as an image (PNG, JPEG, WebP, BMP or TIFF)"
    elif what == "folder":
        room.mkdir()
        reason = "is a folder; give an image file (PNG, JPEG, WebP, BMP or TIFF)"
    elif what == "huge":
        from test_background import _png_header
        _png_header(room, 40000, 40000)
        reason = "is 40000x40000 (1600 MP), too large"
    else:
        reason = "does not exist"
    with pytest.raises(UserError) as err:
        background_value("image", None, str(room))
    text = str(err.value)
    assert text.startswith(f"The background image room.png {reason}")
    assert str(room.parent) not in text and "--background" not in text and "\n" not in text


def test_an_upload_that_is_not_a_picture_reaches_our_checks_as_the_file(tmp_path):
    # Gradio's own preprocessing opens uploads with PIL: "Could not preprocess input
    # component ... UnidentifiedImageError" and a traceback in the server log
    require_web()
    from gradio.data_classes import ImageData

    from streamer.web.app import ImageUpload

    upload = ImageUpload(type="filepath", image_mode=None, render=False)
    notes = tmp_path / "notes.png"
    notes.write_text("not an image")
    assert upload.preprocess(ImageData(path=str(notes), orig_name="notes.png")) == str(notes)
    # a picture is handed over as it is: its alpha channel stays (Gradio's default mode
    # would convert it to RGB)
    cutout = tmp_path / "cutout.png"
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[2:6, 2:6] = 255
    cv2.imwrite(str(cutout), rgba)
    got = upload.preprocess(ImageData(path=str(cutout), orig_name="cutout.png"))
    assert cv2.imread(got, cv2.IMREAD_UNCHANGED).shape == (8, 8, 4)

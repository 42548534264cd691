"""run_stream.py as users meet it: presets, one-line errors that say what to do, the
camera that goes away, stdin commands, a UDP stream and a recording from the real model."""
from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import av
import numpy as np
import pytest

from streamer.config import ConfigError, LiveSettings, build_settings
from streamer.live import app
from streamer.sources import camera as camera_mod

from awkward_media import picture, png_with_icc
from stopped_runs import stop_while_streaming

ROOT = Path(__file__).resolve().parents[1]


def _run(argv, stdin=None) -> tuple[int, list[str]]:
    lines: list[str] = []
    rc = app.main(argv, log=lines.append, stdin=stdin)
    return rc, lines


def _tiny(models_dir, *extra) -> list[str]:
    # bf16: these tests are about the command line, and a style's first int8 use builds
    # its int8 model (tests/test_int8.py covers that)
    return ["--models", str(models_dir), "--config", "live-cpu", "--synthetic",
            "--camera-size", "320x180", "--work", "64", "--precision", "fast",
            "--status-every", "0", *extra]


def _no_video_devices() -> bool:
    return not any(Path(f"/dev/video{i}").exists() for i in range(10))


# --- settings ------------------------------------------------------------------------------

def test_live_presets_load_and_the_cpu_one_is_scheduled_and_measures_its_precision():
    cpu = build_settings(LiveSettings, "live-cpu")
    gpu = build_settings(LiveSettings, "live-720p")
    assert cpu.work_auto and cpu.work_spec() <= 144  # auto starts small, then measures
    assert cpu.precision == "auto" and cpu.schedule == "face-first" and cpu.queue == 1
    assert gpu.work_spec() == 720 and gpu.camera_size == "1280x720"
    assert app.auto_preset("cpu")[0] == "live-cpu"
    assert app.auto_preset("openvino")[0] == "live-cpu"
    assert app.auto_preset("cuda")[0] == "live-720p"


@pytest.mark.parametrize("argv, words, status", [  # 2: usage, 1: the run failed
    (["--work", "8"], "work must be a short side from 16 to 8192", 2),
    (["--work", "wide"], "work must be WIDTHxHEIGHT", 2),
    (["--output-size", "321x180"], "output-size must be even", 2),
    (["--sink", "carrier-pigeon"], "unknown sink 'carrier-pigeon'", 2),
    (["--style", "cubist"], "unknown style 'cubist'; styles: anime", 2),
    (["--source", "/nonexistent/clip.mp4"], "not a camera index", 1),
])
def test_bad_settings_are_one_line_errors(models_dir, argv, words, status):
    rc, lines = _run(["--models", str(models_dir), "--config", "live-cpu", "--no-commands",
                      "--sink", "null", *argv])
    assert rc == status
    assert lines[-1].startswith("error: ") and words in lines[-1], lines


def test_queue_longer_than_two_is_refused():
    with pytest.raises(ConfigError, match="queue must be 1 or 2"):
        LiveSettings(queue=4)


def test_the_work_setting_is_parsed_once(monkeypatch):
    from streamer import config
    from streamer.config import WorkSize, parse_work

    assert parse_work(" 360 ") == WorkSize(360)
    assert parse_work("256X144") == WorkSize((256, 144))
    assert parse_work("Auto") == WorkSize(144, auto=True)
    calls = []

    def counted(text):
        calls.append(text)
        return parse_work(text)

    monkeypatch.setattr(config, "parse_work", counted)
    s = LiveSettings(work="256x144", sinks=("null",))
    assert s.work_size == WorkSize((256, 144))
    assert s.work_spec() == (256, 144) and not s.work_auto
    assert calls == ["256x144"]


# --- errors that tell the user what to do --------------------------------------------------

def test_no_virtual_camera_is_one_line_with_the_modprobe_command(models_dir):
    from pyvirtualcam.camera import BACKENDS
    if not _no_video_devices():
        pytest.skip("this machine has video devices (maybe a v4l2loopback)")
    t0 = time.monotonic()
    # --seconds: a virtual camera that opened after all ends the run instead of hanging it
    rc, lines = _run(_tiny(models_dir, "--no-commands", "--sink", "vcam", "--seconds", "5"))
    assert rc == 1
    assert lines[-1].startswith("error: no virtual camera")
    if "v4l2loopback" in BACKENDS:
        assert "sudo modprobe v4l2loopback exclusive_caps=1" in lines[-1]
    assert not any(line.startswith("toon:") for line in lines)  # failed before the model
    assert time.monotonic() - t0 < 30


@pytest.mark.skipif(not _no_video_devices(), reason="this machine has video devices")
def test_no_camera_lists_what_probing_found_in_one_line_without_a_traceback():
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    p = subprocess.run([sys.executable, str(ROOT / "run_stream.py"), "--camera", "0",
                        "--config", "live-cpu", "--no-commands"],
                       capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert p.returncode == 1
    err = p.stderr.strip().splitlines()
    assert err[-1].startswith("error: no camera at index 0: cameras found (probing 0..9): none")
    assert "Traceback" not in p.stderr


class _Capture:
    def __init__(self, frames, opened=True):
        self.left, self.opened = frames, opened

    def isOpened(self):
        return self.opened

    def set(self, *a):
        return True

    def get(self, prop):
        import cv2
        return {cv2.CAP_PROP_FRAME_WIDTH: 320, cv2.CAP_PROP_FRAME_HEIGHT: 180,
                cv2.CAP_PROP_FPS: 30}.get(prop, 0)

    def read(self):
        if self.left <= 0:
            return False, None
        self.left -= 1
        time.sleep(1 / 30)
        return True, np.full((180, 320, 3), 90, np.uint8)

    def release(self):
        pass


def test_a_camera_unplugged_mid_stream_stops_cleanly_and_says_so(models_dir, monkeypatch,
                                                                 tmp_path):
    opened = []

    def opener(device, api):
        opened.append(device)
        return _Capture(20) if len(opened) == 1 else _Capture(0, opened=False)

    monkeypatch.setattr(camera_mod, "open_capture", opener)
    stats = tmp_path / "stats.json"
    rc, lines = _run(["--models", str(models_dir), "--config", "live-cpu", "--camera", "0",
                      "--camera-size", "320x180", "--work", "64", "--sink", "null",
                      "--reconnect", "0.5", "--no-commands", "--status-every", "0",
                      "--stats-json", str(stats)])
    assert rc == 1
    assert lines[-1].startswith("error: camera 0 stopped delivering frames")
    assert "did not come back within 0.5 s" in lines[-1]
    assert any(line.startswith("done: ") for line in lines)  # stopped cleanly first
    data = json.loads(stats.read_text())
    assert data["frames_in"] == 20 and "stopped delivering" in data["ended"]


# --- streaming from the command line ------------------------------------------------------

def test_stdin_commands_switch_the_style_and_quit(models_dir, tmp_path):
    stats = tmp_path / "s.json"

    class SlowLines(io.StringIO):
        """Lines that arrive a while after the start, as a user types them."""

        def __iter__(self):
            time.sleep(0.8)
            yield "style sketch\n"
            time.sleep(2.0)
            yield "quit\n"

    rc, lines = _run(_tiny(models_dir, "--sink", "null", "--seconds", "30",
                           "--stats-json", str(stats)), stdin=SlowLines())
    assert rc == 0, lines
    data = json.loads(stats.read_text())
    assert data["ended"] == "quit" and data["style"] == "sketch"
    assert data["style_switches"][0]["to"] == "sketch"
    assert data["seconds"] < 25
    assert any("style: anime -> sketch" in line for line in lines)


def _free_port() -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_udp_stream_from_the_real_model_is_read_back_and_stats_are_written(models_dir,
                                                                          tmp_path):
    port = _free_port()
    got, errors = [], []

    def receive():
        try:
            with av.open(f"udp://127.0.0.1:{port}", format="mpegts", timeout=15,
                         options={"overrun_nonfatal": "1", "fifo_size": "500000"}) as c:
                for f in c.decode(video=0):
                    got.append((f.width, f.height))
                    if len(got) >= 15:
                        break
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    t = threading.Thread(target=receive, daemon=True)
    t.start()
    time.sleep(0.3)
    stats = tmp_path / "stats.json"
    rc, lines = _run(_tiny(models_dir, "--no-commands", "--sink", f"udp://127.0.0.1:{port}",
                           "--seconds", "2.5", "--stats-json", str(stats)))
    t.join(20)
    assert rc == 0, lines
    assert not errors, errors
    assert len(got) >= 15 and got[-1] == (320, 180)
    data = json.loads(stats.read_text())
    assert data["frames_out"] >= 15
    assert set(data["drops"]) == {"source", "toon", "sink"}
    assert data["latency_ms"]["p50"] <= data["latency_ms"]["p95"]
    assert data["engine"] and data["work_size"] == [112, 64]


def test_a_recording_sink_writes_a_playable_file(models_dir, tmp_path):
    out = tmp_path / "rec.mkv"
    stats = tmp_path / "stats.json"
    rc, lines = _run(_tiny(models_dir, "--no-commands", "--sink", "null", "--sink", str(out),
                           "--seconds", "1.5", "--stats-json", str(stats)))
    assert rc == 0, lines
    with av.open(str(out)) as c:
        frames = [f for f in c.decode(video=0)]
    assert len(frames) == json.loads(stats.read_text())["frames_out"] > 5
    assert (frames[0].width, frames[0].height) == (320, 180)
    assert not list(tmp_path.glob(".rec.mkv.partial*"))


def test_ctrl_c_stops_cleanly_and_leaves_a_finished_recording(models_dir, tmp_path):
    import signal
    out = tmp_path / "rec.mkv"
    stats = tmp_path / "s.json"
    rc, err = stop_while_streaming(["--sink", "null", "--sink", str(out), "--stats-json",
                                    str(stats)], models_dir, signal.SIGINT)
    assert rc == 0, err
    assert "stopping" in err and "Traceback" not in err
    assert json.loads(stats.read_text())["ended"] == "interrupt"
    with av.open(str(out)) as c:
        assert sum(1 for _ in c.decode(video=0)) > 5


# --- what users brought: a PNG with a colour profile, SIGTERM, working size, sinks ---------


def test_run_stream_plays_a_png_with_an_icc_profile_without_crashing(tmp_path, models_dir):
    src = tmp_path / "photo.png"
    src.write_bytes(png_with_icc(picture(0)))
    res = subprocess.run([sys.executable, str(ROOT / "run_stream.py"), "--config", "live-cpu",
                          "--models", str(models_dir), "--source", str(src), "--sink", "null",
                          "--seconds", "5"],
                         cwd=ROOT, capture_output=True, text=True, timeout=600,
                         stdin=subprocess.DEVNULL)
    assert res.returncode == 0, (res.returncode, res.stderr)


def test_run_stream_recording_stopped_by_sigterm_is_finished_and_playable(tmp_path,
                                                                         models_dir):
    out = tmp_path / "rec.mkv"
    rc, err = stop_while_streaming(["--sink", "null", "--sink", str(out)], models_dir,
                                   signal.SIGTERM)
    assert rc == 143, err
    assert "stopping (SIGTERM)" in err and "Traceback" not in err
    with av.open(str(out)) as c:
        assert sum(1 for _ in c.decode(video=0)) > 5
    assert [x.name for x in tmp_path.iterdir()] == ["rec.mkv"]


def _tiny_live(models_dir, *extra: str) -> list[str]:
    # unlike _tiny: no working size (the tests give their own), the preset's precision, and
    # no stdin commands
    return ["--models", str(models_dir), "--config", "live-cpu", "--synthetic",
            "--camera-size", "320x180", "--status-every", "0", "--no-commands", *extra]


# 8192: the largest short side --work takes (the option's range); still far above the camera
@pytest.mark.parametrize("work, expect", [("3000x3000", "320x176"), ("8192", "320x176")])
def test_a_working_size_above_the_camera_is_capped_with_a_note(models_dir, tmp_path, work,
                                                               expect):
    stats = tmp_path / "s.json"
    rc, lines = _run(_tiny_live(models_dir, "--work", work, "--sink", "null", "--seconds", "1",
                                "--stats-json", str(stats)))
    assert rc == 0, lines
    assert "x".join(map(str, json.loads(stats.read_text())["work_size"])) == expect
    notes = [ln for ln in lines if ln.startswith("note: ") and "working size" in ln]
    assert len(notes) == 1 and "320x180" in notes[0], lines


@pytest.mark.parametrize("sink, words", [
    ("udp://127.0.0.1:99999", "port must be a number in 1..65535"),
    ("udp://127.0.0.1", "no port given"),
    ("udp://:5000", "no host given"),
])
def test_a_bad_stream_url_is_refused_before_anything_starts(models_dir, sink, words):
    rc, lines = _run(_tiny_live(models_dir, "--sink", sink, "--seconds", "2"))
    assert rc == 2  # the command is wrong as written
    assert lines[-1].startswith("error: ") and words in lines[-1], lines
    assert not [ln for ln in lines if ln.startswith(("source:", "sinks:", "toon:"))], lines


def test_the_same_file_twice_as_a_sink_is_refused_at_start(models_dir, tmp_path):
    out = tmp_path / "rec.mkv"
    rc, lines = _run(_tiny_live(models_dir, "--sink", str(out), "--sink",
                                str(tmp_path / "." / "rec.mkv"), "--seconds", "2"))
    assert rc == 2
    assert lines[-1].startswith("error: ") and "given twice" in lines[-1], lines
    assert not [ln for ln in lines if ln.startswith("source:")], lines
    assert list(tmp_path.iterdir()) == []

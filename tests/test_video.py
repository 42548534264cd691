"""run_video end to end with the real model at a small working size: what the output
keeps (frames, timestamps, rate, duration, audio, metadata, rotation, odd sizes, bit depth)
and how bad inputs and interrupts end (one line, nothing left behind)."""
from __future__ import annotations

import os
import signal
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from streamer.video.app import main

from plain_user import as_plain_user
from stopped_runs import stop_at_the_last_moment, stop_while_writing
from awkward_media import clip, decoded, picture, with_audio
from video_cli import one_error_line

ROOT = Path(__file__).resolve().parents[1]
SIZE = "64"  # working short side: tiny, so CI stays fast on two cores


# --- clips the tests make -------------------------------------------------------------------


def _picture(i: int, h: int, w: int) -> np.ndarray:
    """A moving, lopsided picture: a gradient, a bright block near the top-left corner and a
    bar that moves, so frames differ and orientation can be told."""
    y, x = np.mgrid[0:h, 0:w]
    img = np.empty((h, w, 3), np.uint8)
    img[..., 0] = (x * 255 // max(w - 1, 1)).astype(np.uint8)
    img[..., 1] = (y * 255 // max(h - 1, 1)).astype(np.uint8)
    img[..., 2] = (i * 37) % 256
    img[: h // 3, : w // 3] = 255
    bar = (i * 3) % w
    img[:, bar: bar + 2] = 0
    return img


def make_clip(path: Path, *, n: int = 10, width: int = 64, height: int = 48,
              rate: Fraction = Fraction(24), pts: list[int] | None = None,
              time_base: Fraction | None = None, pix_fmt: str = "yuv420p",
              codec: str = "libx264", rotation: int | None = None, audio_tracks: int = 0,
              metadata: dict | None = None, bframes: bool = True, faststart: bool = False
              ) -> Path:
    """Encode a test clip with PyAV: `pts` (in `time_base`) for variable frame rate,
    `rotation` (counter-clockwise degrees) as a display matrix, `audio_tracks` AAC tracks."""
    tb = time_base
    if tb is None:
        tb = Fraction(1, int(rate)) if rate.denominator == 1 else Fraction(1, 90000)
    if pts is None:
        step = int(round(1 / (rate * tb)))
        pts = [i * step for i in range(n)]
    options = {} if bframes else {"bf": "0"}
    container_options = {"movflags": "+faststart"} if faststart else {}
    with av.open(str(path), "w", container_options=container_options) as c:
        if metadata:
            c.metadata.update(metadata)
        v = c.add_stream(codec, rate=rate, options=options)
        v.width, v.height, v.pix_fmt = width, height, pix_fmt
        v.time_base = tb
        v.codec_context.time_base = tb
        if rotation is not None:
            v.set_display_rotation(rotation)
        audios = []
        for k in range(audio_tracks):
            a = c.add_stream("aac", rate=44100)
            a.layout = "mono"
            a.metadata["language"] = ["eng", "fra", "deu"][k % 3]
            audios.append(a)
        for i, p in enumerate(pts):
            frame = av.VideoFrame.from_ndarray(_picture(i, height, width), "bgr24")
            frame.pts, frame.time_base = p, tb
            c.mux(v.encode(frame))
        c.mux(v.encode())
        end_s = float((pts[-1] + (pts[-1] - pts[-2] if len(pts) > 1 else 1)) * tb)
        for k, a in enumerate(audios):
            total = int(end_s * 44100)
            t = np.arange(total) / 44100
            wave = (0.3 * np.sin(2 * np.pi * (440 + 110 * k) * t)).astype(np.float32)
            for start in range(0, total, 1024):
                chunk = wave[start: start + 1024]
                af = av.AudioFrame.from_ndarray(chunk[None, :], format="flt", layout="mono")
                af.sample_rate, af.pts, af.time_base = 44100, start, Fraction(1, 44100)
                c.mux(a.encode(af))
            c.mux(a.encode())
    return path


def probe(path: Path) -> dict:
    """What a test compares: per-stream timing, packets and metadata, and decoded video."""
    out: dict = {"audio": []}
    with av.open(str(path)) as c:
        out["format"] = c.format.name
        out["metadata"] = dict(c.metadata)
        v = c.streams.video[0]
        out["video_metadata"] = dict(v.metadata)
        out["rate"] = v.average_rate
        out["codec"] = v.codec_context.name
        for s in c.streams.audio:
            out["audio"].append({"codec": s.codec_context.name, "tb": s.time_base,
                                 "metadata": dict(s.metadata), "packets": []})
        frames, rotations = [], []
        for packet in c.demux():
            if packet.stream.type == "audio" and packet.size:
                out["audio"][packet.stream.index - (1 if packet.stream.index > v.index else 0)
                             ]["packets"].append((packet.pts, packet.duration, bytes(packet)))
            elif packet.stream.type == "video":
                for f in packet.decode():
                    frames.append((float(f.pts * f.time_base),
                                   float((f.duration or 0) * f.time_base)))
                    rotations.append(f.rotation)
                    if len(frames) == 1:
                        out["first_image"] = f.to_ndarray(format="bgr24")
                        out["pix_fmt"] = f.format.name
                        out["size"] = (f.width, f.height)
        out["times"] = [t for t, _ in frames]
        out["rotations"] = rotations
        for a in out["audio"]:
            p = a["packets"]
            a["start"] = float(p[0][0] * a["tb"])
            a["end"] = float((p[-1][0] + p[-1][1]) * a["tb"])
            a["payload"] = [x[2] for x in p]
    return out


def video_end(path: Path) -> float:
    """When the video stream ends, in seconds, as a player sees it: the track's start plus
    its duration where the container records one (MP4/MOV), else the last frame's pts plus
    its duration (Matroska stores a duration per block)."""
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        if v.duration is not None and v.start_time is not None:
            return float((v.start_time + v.duration) * v.time_base)
        last = None
        for p in c.demux(v):
            if p.pts is not None and (last is None or p.pts > last[0]):
                last = (p.pts, p.duration)
        return float((last[0] + last[1]) * v.time_base)


def run(capfd, *args: str) -> tuple[int, str]:
    rc = main([str(a) for a in args])
    out, err = capfd.readouterr()
    return rc, out + err


@pytest.fixture(autouse=True)
def _models_env(models_dir, monkeypatch):
    monkeypatch.setenv("TOONSTREAM_MODELS", str(models_dir))


def _left_behind(folder: Path, keep: set[str]) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name not in keep)


# --- what the output keeps ------------------------------------------------------------------


def test_event_clip_keeps_frames_timestamps_audio_packets_and_metadata(media_dir, tmp_path,
                                                                        capfd):
    src = media_dir / "event_640x480.mp4"
    dst = tmp_path / "event.mp4"
    rc, log = run(capfd, src, "-o", dst, "--size", "96", "--stats-json", tmp_path / "s.json")
    assert rc == 0, log
    assert "engine: " in log and "done: 90 frames" in log
    a, b = probe(src), probe(dst)
    assert b["times"] == pytest.approx(a["times"], abs=1e-6)  # every frame, same pts
    assert b["rate"] == a["rate"] == Fraction(30000, 1001)
    assert video_end(dst) == pytest.approx(video_end(src), abs=1e-6)
    assert len(b["audio"]) == 1
    assert b["audio"][0]["payload"] == a["audio"][0]["payload"]  # remuxed, not re-encoded
    one_audio_frame = 1024 / 44100
    assert abs(b["audio"][0]["start"] - a["audio"][0]["start"]) <= one_audio_frame
    assert abs(b["audio"][0]["end"] - a["audio"][0]["end"]) <= one_audio_frame
    # The video starts a frame after the audio in this clip; that offset is kept.
    assert (b["times"][0] - b["audio"][0]["start"]) == pytest.approx(
        a["times"][0] - a["audio"][0]["start"], abs=1e-4)
    assert b["metadata"]["creation_time"] == a["metadata"]["creation_time"]
    assert b["video_metadata"]["language"] == "eng"
    assert b["audio"][0]["metadata"]["language"] == "eng"
    assert b["pix_fmt"] == "yuv420p" and b["size"] == (640, 480)
    assert (tmp_path / "s.json").is_file()
    assert _left_behind(tmp_path, {"event.mp4", "s.json"}) == []


def test_stats_json_reports_frames_engine_and_stage_times(tmp_path, capfd):
    import json

    src = make_clip(tmp_path / "in.mp4", n=6)
    rc, log = run(capfd, src, "-o", tmp_path / "out.mp4", "--size", SIZE, "--device", "cpu",
                  "--stats-json", tmp_path / "s.json")
    assert rc == 0, log
    stats = json.loads((tmp_path / "s.json").read_text())
    assert stats["frames"] == 6 and stats["backend"] == "onnxruntime" and stats["device"] == "cpu"
    assert set(stats["items"][0]["stage_busy_s"]) == {"decode", "toon", "encode"}
    assert stats["fps"] > 0


def test_tears_clip_keeps_every_frame_through_scene_cuts_and_the_container_metadata(
        media_dir, tmp_path, capfd):
    src = media_dir / "tears_640x360.mp4"
    dst = tmp_path / "tears.mkv"  # a different container: MKV keeps timestamps in ms
    rc, log = run(capfd, src, "-o", dst, "--size", "48", "--device", "cpu", "--preset",
                  "ultrafast")
    assert rc == 0, log
    a, b = probe(src), probe(dst)
    assert len(b["times"]) == len(a["times"]) == 240
    assert b["times"] == pytest.approx(a["times"], abs=0.0006)
    tags = {k.lower(): v for k, v in b["metadata"].items()}  # Matroska writes COMMENT
    assert tags["title"] == a["metadata"]["title"]
    assert tags["comment"] == a["metadata"]["comment"]
    assert b["audio"] == []


@pytest.mark.parametrize("container", ["mp4", "mkv"])
def test_variable_frame_rate_timestamps_and_duration_round_trip(tmp_path, capfd, container):
    tb = Fraction(1, 1000)
    pts = [0, 40, 120, 160, 400, 440, 480, 600, 633, 700]
    # The input has no B-frames, so its own duration is unambiguous; the output has them.
    src = make_clip(tmp_path / f"vfr.{container}", pts=pts, time_base=tb, rate=Fraction(25),
                    bframes=False)
    dst = tmp_path / f"out.{container}"
    rc, log = run(capfd, src, "-o", dst, "--size", SIZE, "--device", "cpu")
    assert rc == 0, log
    a, b = probe(src), probe(dst)
    assert a["times"] == pytest.approx([p / 1000 for p in pts])
    assert b["times"] == pytest.approx(a["times"], abs=1e-6)
    assert video_end(dst) == pytest.approx(video_end(src), abs=1e-3)


def test_constant_frame_rate_and_duration_are_kept(tmp_path, capfd):
    src = make_clip(tmp_path / "cfr.mp4", n=12, rate=Fraction(30000, 1001),
                    time_base=Fraction(1, 30000))
    dst = tmp_path / "out.mp4"
    rc, log = run(capfd, src, "-o", dst, "--size", SIZE, "--device", "cpu")
    assert rc == 0, log
    a, b = probe(src), probe(dst)
    assert b["rate"] == a["rate"] == Fraction(30000, 1001)
    assert b["times"] == pytest.approx(a["times"], abs=1e-6)
    assert video_end(dst) == pytest.approx(video_end(src), abs=1e-6)


def test_odd_size_is_padded_by_one_pixel_that_repeats_the_edge(tmp_path, capfd):
    src = make_clip(tmp_path / "odd.mkv", width=65, height=49, pix_fmt="yuv444p")
    dst = tmp_path / "out.mp4"
    rc, log = run(capfd, src, "-o", dst, "--size", SIZE, "--device", "cpu", "--crf", "0")
    assert rc == 0, log
    assert "odd size 65x49" in log and "66x50" in log
    b = probe(dst)
    assert b["size"] == (66, 50)
    assert len(b["times"]) == 10
    img = b["first_image"].astype(int)
    # The padding repeats the last column and row (up to the codec's rounding).
    assert np.abs(img[:, 65] - img[:, 64]).mean() < 3
    assert np.abs(img[49] - img[48]).mean() < 3


@pytest.mark.parametrize("rotation", [90, -90, 180])
def test_rotated_input_is_written_upright_without_a_display_matrix(tmp_path, capfd, rotation):
    src = make_clip(tmp_path / "rot.mp4", width=64, height=48, rotation=rotation, n=4)
    a = probe(src)
    assert a["rotations"][0] % 360 == rotation % 360
    dst = tmp_path / "out.mp4"
    rc, log = run(capfd, src, "-o", dst, "--size", "48", "--device", "cpu", "--crf", "0")
    assert rc == 0, log
    assert "display matrix" in log
    b = probe(dst)
    assert set(b["rotations"]) == {0}
    # The picture as a player shows the input: rotate counter-clockwise by `rotation`.
    upright = np.rot90(a["first_image"], k=(rotation // 90) % 4)
    assert b["size"] == (upright.shape[1], upright.shape[0])
    # The bright block of the test picture is where a player shows it.
    want = upright.mean(axis=2) > 200
    got = b["first_image"].mean(axis=2)
    assert got[want].mean() > got[~want].mean() + 40


@pytest.mark.parametrize("pix_fmt, words", [("yuv420p10le", "10-bit 4:2:0"),
                                            ("yuv444p", "8-bit 4:4:4")])
def test_high_bit_depth_or_444_input_becomes_8_bit_420_with_a_note(tmp_path, capfd, pix_fmt,
                                                                   words):
    src = make_clip(tmp_path / "deep.mkv", pix_fmt=pix_fmt, n=4)
    dst = tmp_path / "out.mp4"
    rc, log = run(capfd, src, "-o", dst, "--size", SIZE, "--device", "cpu")
    assert rc == 0, log
    assert f"note: input is {words}" in log
    b = probe(dst)
    assert b["pix_fmt"] == "yuv420p" and len(b["times"]) == 4


def test_input_without_audio_gives_a_video_only_output(tmp_path, capfd):
    src = make_clip(tmp_path / "silent.mp4", n=5)
    dst = tmp_path / "out.mp4"
    rc, log = run(capfd, src, "-o", dst, "--size", SIZE, "--device", "cpu")
    assert rc == 0, log
    assert probe(dst)["audio"] == []


@pytest.mark.parametrize("container", ["mp4", "mkv", "mov"])
def test_two_audio_tracks_are_copied_packet_for_packet_with_their_languages(tmp_path, capfd,
                                                                           container):
    src = make_clip(tmp_path / f"two.{container}", n=24, audio_tracks=2)
    dst = tmp_path / f"out.{container}"
    rc, log = run(capfd, src, "-o", dst, "--size", SIZE, "--device", "cpu")
    assert rc == 0, log
    a, b = probe(src), probe(dst)
    assert len(b["audio"]) == 2
    for x, y in zip(a["audio"], b["audio"]):
        assert y["codec"] == "aac"
        assert y["payload"] == x["payload"]
        assert y["metadata"]["language"] == x["metadata"]["language"]
        assert abs(y["start"] - x["start"]) <= 1024 / 44100
        assert abs(y["end"] - x["end"]) <= 1024 / 44100


@pytest.mark.parametrize("suffix, codec", [(".webm", "libvpx-vp9"), (".avi", "mpeg4"),
                                           (".mov", "libx264")])
def test_other_containers_convert_to_the_same_container(tmp_path, capfd, suffix, codec):
    src = make_clip(tmp_path / f"in{suffix}", n=6, codec=codec)
    dst = tmp_path / f"out{suffix}"
    rc, log = run(capfd, src, "-o", dst, "--size", SIZE, "--device", "cpu")
    assert rc == 0, log
    b = probe(dst)
    assert len(b["times"]) == 6
    assert b["codec"] == ("vp9" if suffix == ".webm" else "h264")


def test_container_metadata_is_kept(tmp_path, capfd):
    meta = {"title": "A test clip", "comment": "made by the tests", "artist": "Toonstream"}
    src = make_clip(tmp_path / "meta.mp4", n=4, metadata=meta)
    dst = tmp_path / "out.mp4"
    rc, log = run(capfd, src, "-o", dst, "--size", SIZE, "--device", "cpu")
    assert rc == 0, log
    got = probe(dst)["metadata"]
    assert {k: got.get(k) for k in meta} == meta


def test_a_folder_of_images_and_videos_is_mirrored_by_name(tmp_path, capfd, golden_dir):
    import shutil

    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    make_clip(src / "clip.mp4", n=3)
    shutil.copy(golden_dir / "flow" / "luciano.png", src / "sub" / "photo.png")
    (src / "notes.txt").write_text("not media")
    dst = tmp_path / "out"
    rc, log = run(capfd, src, "-o", dst, "--size", SIZE, "--device", "cpu")
    assert rc == 0, log
    assert sorted(str(p.relative_to(dst)) for p in dst.rglob("*") if p.is_file()) == \
        ["clip.mp4", "sub/photo.png"]
    assert len(probe(dst / "clip.mp4")["times"]) == 3


def test_refuses_to_overwrite_without_y_and_overwrites_with_it(tmp_path, capfd):
    src = make_clip(tmp_path / "in.mp4", n=3)
    dst = tmp_path / "out.mp4"
    dst.write_bytes(b"precious")
    rc, log = run(capfd, src, "-o", dst, "--size", SIZE, "--device", "cpu")
    assert rc != 0 and "exists; add -y" in log
    assert dst.read_bytes() == b"precious"
    rc, log = run(capfd, src, "-o", dst, "--size", SIZE, "--device", "cpu", "-y")
    assert rc == 0, log
    assert len(probe(dst)["times"]) == 3


def test_a_preset_applies_and_the_command_line_overrides_it(tmp_path, capfd):
    import json

    src = make_clip(tmp_path / "in.mp4", n=3)
    rc, log = run(capfd, src, "-o", tmp_path / "out.mp4", "--config", "cpu", "--size", SIZE,
                  "--device", "cpu", "--stats-json", tmp_path / "s.json")
    assert rc == 0, log
    settings = json.loads((tmp_path / "s.json").read_text())["settings"]
    assert (settings["size"], settings["precision"], settings["preset"]) == (64, "fast",
                                                                            "veryfast")


# --- bad input, one line each, nothing left behind ------------------------------------------


def _assert_one_line_error(rc: int, log: str, words: str) -> None:
    assert rc != 0
    lines = [ln for ln in log.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error: ")]
    assert len(errors) == 1, log
    assert words in errors[0], log
    assert "Traceback" not in log


def _bad_inputs(tmp_path: Path, media_dir: Path) -> dict[str, tuple[Path, str]]:
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 20)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    truncated = tmp_path / "truncated.mp4"  # faststart: the index is whole, the data is not
    truncated.write_bytes((media_dir / "event_640x480.mp4").read_bytes()[:200_000])
    audio_only = tmp_path / "audio.m4a"
    with av.open(str(audio_only), "w", format="mp4") as c:
        a = c.add_stream("aac", rate=44100)
        a.layout = "mono"
        for start in range(0, 44100, 1024):
            af = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="flt",
                                            layout="mono")
            af.sample_rate, af.pts = 44100, start
            c.mux(a.encode(af))
        c.mux(a.encode())
    unknown = tmp_path / "unknown.mkv"
    make_clip(tmp_path / "known.mkv", n=3)
    data = (tmp_path / "known.mkv").read_bytes()
    unknown.write_bytes(data.replace(b"V_MPEG4/ISO/AVC", b"V_QQQQQ/ISO/QQQ"))
    (tmp_path / "known.mkv").unlink()
    return {
        "not a video": (text, "not a video file"),
        "zero bytes": (empty, "empty file"),
        "truncated mid-stream": (truncated, "damaged or truncated"),
        "no video stream": (audio_only, "no video stream"),
        "unknown codec": (unknown, "unknown to this FFmpeg"),
        "unreadable path": (tmp_path / "missing.mp4", "no such file"),
    }


@pytest.mark.parametrize("case", ["not a video", "zero bytes", "truncated mid-stream",
                                  "no video stream", "unknown codec", "unreadable path"])
def test_bad_input_is_a_one_line_error_and_leaves_nothing_behind(tmp_path, media_dir, capfd,
                                                                  case):
    src, words = _bad_inputs(tmp_path, media_dir)[case]
    out = tmp_path / "out"
    out.mkdir()
    rc, log = run(capfd, src, "-o", out / "result.mp4", "--size", SIZE, "--device", "cpu")
    _assert_one_line_error(rc, log, words)
    assert list(out.iterdir()) == []


def test_unreadable_file_is_a_one_line_error(tmp_path, capfd):
    src = make_clip(tmp_path / "in.mp4", n=2)
    src.chmod(0)

    def convert() -> tuple[int, str]:
        assert not os.access(src, os.R_OK)  # the mode applies here, as root too
        return run(capfd, src, "-o", tmp_path / "out.mp4", "--device", "cpu")

    rc, log = as_plain_user(convert)
    _assert_one_line_error(rc, log, "cannot read")


@pytest.mark.parametrize("case", ["unwritable", "missing", "a file"])
def test_unwritable_output_folder_is_a_one_line_error(tmp_path, capfd, case):
    src = make_clip(tmp_path / "in.mp4", n=2)
    if case == "unwritable":
        folder = tmp_path / "ro"
        folder.mkdir()
        folder.chmod(0o500)
    elif case == "missing":
        folder = tmp_path / "no" / "such"
    else:
        folder = tmp_path / "plain.txt"
        folder.write_text("x")
    rc, log = as_plain_user(lambda: run(capfd, src, "-o", folder / "out.mp4", "--size", SIZE,
                                        "--device", "cpu"))
    _assert_one_line_error(rc, log, "output folder")
    assert _left_behind(tmp_path, {"in.mp4", "plain.txt", "ro"}) == []
    if case == "unwritable":
        assert list(folder.iterdir()) == []


def test_unknown_style_is_a_one_line_error_that_lists_the_styles(tmp_path, capfd):
    src = make_clip(tmp_path / "in.mp4", n=2)
    rc, log = run(capfd, src, "-o", tmp_path / "out.mp4", "--style", "pixar")
    _assert_one_line_error(rc, log, "unknown style 'pixar'")
    assert "sd-illustration" in log
    assert _left_behind(tmp_path, {"in.mp4"}) == []


@pytest.mark.parametrize("codec, words", [("hevc_nvenc", "hevc_nvenc"),
                                          ("libnothing", "not in this FFmpeg build")])
def test_an_encoder_that_cannot_start_is_a_one_line_error(tmp_path, capfd, codec, words):
    check = av.codec.CodecContext.create("hevc_nvenc", "w") if codec == "hevc_nvenc" else None
    if check is not None:
        check.width, check.height, check.pix_fmt = 256, 256, "yuv420p"
        check.time_base = Fraction(1, 25)
        try:
            check.open()
            pytest.skip("this machine has a working NVENC")
        except av.error.FFmpegError:
            pass
    src = make_clip(tmp_path / "in.mp4", n=2)
    rc, log = run(capfd, src, "-o", tmp_path / "out.mp4", "--codec", codec, "--device", "cpu")
    _assert_one_line_error(rc, log, words)
    assert _left_behind(tmp_path, {"in.mp4"}) == []


def test_a_codec_the_container_cannot_hold_is_a_one_line_error(tmp_path, capfd):
    src = make_clip(tmp_path / "in.mp4", n=2)
    rc, log = run(capfd, src, "-o", tmp_path / "out.webm", "--codec", "libx264",
                  "--device", "cpu")
    _assert_one_line_error(rc, log, "cannot hold libx264")
    assert _left_behind(tmp_path, {"in.mp4"}) == []


# --- Ctrl+C ---------------------------------------------------------------------------------


def test_ctrl_c_stops_cleanly_and_leaves_no_file_that_looks_complete(tmp_path, models_dir):
    src = make_clip(tmp_path / "long.mp4", n=200, width=320, height=240)
    out = tmp_path / "out"
    out.mkdir()
    # stopped once encoded frames are being written to the temporary file
    rc, err = stop_while_writing(src, out, models_dir, signal.SIGINT)
    assert rc == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert list(out.iterdir()) == []


# --- progress -------------------------------------------------------------------------------


def test_progress_counts_stream_time_when_the_container_has_no_frame_count():
    import io

    from streamer.pipeline.core import PipelineStats
    from streamer.video.progress import Progress

    buf = io.StringIO()
    bar = Progress(0, 10.0, 1.0, "clip.mkv", True, file=buf)
    bar(PipelineStats(frames_out=24, last_time=6.0, elapsed_s=2.0))
    assert bar.by_time and bar.bar.total == 10.0 and bar.bar.n == pytest.approx(5.0)
    bar.close()
    frames = Progress(90, 3.0, 0.0, "clip.mp4", True, file=buf)
    frames(PipelineStats(frames_out=24, last_time=0.8, elapsed_s=2.0))
    assert not frames.by_time and frames.bar.total == 90 and frames.bar.n == 24
    frames.close()


def test_matroska_input_reports_no_frame_count_so_progress_goes_by_time(tmp_path):
    from streamer.sources.video_file import VideoFileSource

    with VideoFileSource(make_clip(tmp_path / "in.mkv", n=5)) as src:
        assert src.info.frames == 0 and src.info.duration == pytest.approx(5 / 24, abs=0.01)


# --- what users brought (tests/awkward_media.py): AVI output, signals, folders, codecs ------


def test_run_videos_own_avi_output_counts_in_frames_and_reads_back(tmp_path, capfd):
    src = clip(tmp_path / "c.mp4", n=12)
    rc, log = run(capfd, src, "-o", tmp_path / "out.avi", "--size", SIZE, "--faces", "off")
    assert rc == 0, log
    with av.open(str(tmp_path / "out.avi")) as c:
        v = c.streams.video[0]
        # one tick per frame: no empty chunks, every packet a frame
        assert v.time_base == Fraction(1, 24) and v.frames == 12
        sizes = [p.size for p in c.demux(v) if p.size]
    assert len(sizes) == 12
    rc, log = run(capfd, tmp_path / "out.avi", "-o", tmp_path / "back.mp4", "--size", SIZE,
                  "--faces", "off")
    assert rc == 0, log
    assert len(decoded(tmp_path / "back.mp4")) == 12


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_run_video_stopped_by_a_signal_removes_the_partial_file(tmp_path, models_dir, sig):
    # SIGTERM and SIGHUP behave like Ctrl+C
    src = clip(tmp_path / "long.mp4", n=200, size=(320, 240))
    out = tmp_path / "out"
    out.mkdir()
    rc, log = stop_while_writing(src, out, models_dir, sig, "--faces", "off")
    assert rc == 128 + sig, log  # 143 for SIGTERM, 129 for SIGHUP
    assert f"interrupted by {signal.Signals(sig).name}" in log and "Traceback" not in log
    assert list(out.iterdir()) == []  # no .partial- file, no result.mp4


def test_a_folder_converts_every_good_file_reports_each_bad_one_and_a_rerun_finishes(
        tmp_path, capfd):
    src = tmp_path / "in"
    src.mkdir()
    clip(src / "a.mp4", n=3)
    (src / "b.mp4").write_text("not a video\n" * 50)  # sorted between two good files
    cv2.imwrite(str(src / "c.png"), picture(1))
    (src / "d.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    dst = tmp_path / "out"
    rc, log = run(capfd, src, "-o", dst, "--size", SIZE, "--faces", "off")
    assert rc == 1, log
    assert sorted(p.name for p in dst.iterdir()) == ["a.mp4", "c.png"]
    failed = [ln for ln in log.splitlines() if ln.startswith("failed: ")]
    assert [ln.split(":")[1].strip() for ln in failed] == ["b.mp4", "d.jpg"], log
    one_error_line(log, "2 of 4 files could not be converted")
    assert log.rstrip().splitlines()[-1].startswith("error: ")  # the count comes last

    # The user fixes one file and reruns: finished outputs are skipped (no "exists; add
    # -y"), the fixed file is converted, the still-bad one is reported again.
    clip(src / "b.mp4", n=2)
    mtime = (dst / "a.mp4").stat().st_mtime_ns
    rc, log = run(capfd, src, "-o", dst, "--size", SIZE, "--faces", "off")
    assert rc == 1, log
    assert "add -y" not in log
    assert "a.mp4: skipped" in log and "c.png: skipped" in log
    assert (dst / "a.mp4").stat().st_mtime_ns == mtime
    assert len(decoded(dst / "b.mp4")) == 2
    one_error_line(log, "1 of 4 files could not be converted")

    # With every file good, the rerun ends with exit 0.
    (src / "d.jpg").unlink()
    rc, log = run(capfd, src, "-o", dst, "--size", SIZE, "--faces", "off")
    assert rc == 0, log
    assert "nothing to convert" in log


def test_opus_audio_into_flv_with_audio_copy_is_refused_before_any_work(tmp_path, capfd):
    # a codec/container pair that does not play; the default re-encodes it (below)
    src = with_audio(tmp_path / "talk.mkv", "libopus")
    rc, log = run(capfd, src, "-o", tmp_path / "out.flv", "--size", SIZE, "--faces", "off",
                  "--audio", "copy")
    assert rc == 1
    one_error_line(log, "opus audio")
    assert "does not play" in log and ".mkv" in log and "--audio encode" in log
    assert "engine:" not in log  # refused before the model starts
    assert sorted(p.name for p in tmp_path.iterdir()) == ["talk.mkv"]


def test_aac_audio_into_flv_is_written_and_reads_back(tmp_path, capfd):
    src = with_audio(tmp_path / "talk.mkv", "aac")
    rc, log = run(capfd, src, "-o", tmp_path / "out.flv", "--size", SIZE, "--faces", "off")
    assert rc == 0, log
    with av.open(str(tmp_path / "out.flv")) as c:
        assert [s.codec_context.name for s in c.streams.audio] == ["aac"]


# --- audio the container cannot hold as it is (issue 23, item 10) ---------------------------


def _burst_clip(path: Path, *, audio_start: float = 0.25, burst_at: float = 0.8,
                gap: tuple[float, float] | None = None, seconds: float = 1.0) -> Path:
    """A 24 fps clip with mono AAC audio that starts `audio_start` s after the video, is
    silent but for a 1 kHz burst at `burst_at` s, and has no audio from `gap[0]` to
    `gap[1]` s (its timestamps jump over it, as a damaged or paused recording's do)."""
    rate, size = 44100, 1024
    with av.open(str(path), "w") as c:
        v = c.add_stream("libx264", rate=24)
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        a = c.add_stream("aac", rate=rate)
        a.layout = "mono"
        for i in range(round(seconds * 24)):
            f = av.VideoFrame.from_ndarray(_picture(i, 48, 64), "bgr24")
            f.pts, f.time_base = i, Fraction(1, 24)
            c.mux(v.encode(f))
        c.mux(v.encode())
        start = round(audio_start * rate)
        for s in range(start, round(seconds * rate) - size, size):
            if gap and gap[0] * rate <= s < gap[1] * rate:
                continue
            t = np.arange(s, s + size) / rate
            wave = np.where((t >= burst_at) & (t < burst_at + 0.05),
                            0.5 * np.sin(2 * np.pi * 1000 * (t - burst_at)), 0.0)
            af = av.AudioFrame.from_ndarray(wave[None].astype(np.float32), format="fltp",
                                            layout="mono")
            af.sample_rate, af.pts, af.time_base = rate, s, Fraction(1, rate)
            c.mux(a.encode(af))
        c.mux(a.encode())
    return path


def _decoded_audio(path: Path, index: int = 0) -> dict:
    """A file's audio stream decoded: when its first sample plays, when its last ends, how
    many seconds of samples it has, and when the first loud sample (a burst) plays."""
    with av.open(str(path)) as c:
        codec = c.streams.audio[index].codec_context.name
        frames = list(c.decode(audio=index))
    first = frames[0]
    start = float(first.pts * first.time_base)
    rate = first.sample_rate
    onset = None
    for f in frames:
        x = np.abs(f.to_ndarray().astype(np.float32)).max(axis=0)
        loud = np.flatnonzero(x > 0.2)
        if loud.size:
            onset = float(f.pts * f.time_base) + loud[0] / rate
            break
    last = frames[-1]
    return {"start": start, "end": float(last.pts * last.time_base) + last.samples / rate,
            "seconds": sum(f.samples for f in frames) / rate, "onset": onset,
            "codec": codec}


def test_event_clip_into_transparent_webm_keeps_its_aac_audio_as_opus_in_sync(media_dir,
                                                                           tmp_path, capfd):
    # the case: a phone video (AAC) to WebM with alpha was refused
    src = media_dir / "event_640x480.mp4"
    dst = tmp_path / "e.webm"
    rc, log = run(capfd, src, "-o", dst, "--background", "transparent", "--size", SIZE,
                  "--faces", "off", "--preset", "ultrafast")
    assert rc == 0, log
    notes = [ln for ln in log.splitlines() if "re-encoded to Opus" in ln]
    assert len(notes) == 1 and notes[0].startswith("note: ") and "aac" in notes[0], log
    a, b = _decoded_audio(src), _decoded_audio(dst)
    assert b["codec"] == "opus"
    assert b["start"] == pytest.approx(a["start"], abs=0.005)
    assert b["seconds"] == pytest.approx(a["seconds"], abs=0.005)
    assert b["end"] == pytest.approx(a["end"], abs=0.005)
    with av.open(str(dst)) as c:
        assert c.streams.video[0].metadata.get("alpha_mode") == "1"  # VP9 with alpha
        assert c.streams.audio[0].metadata.get("language") == "eng"
    assert probe(dst)["times"] == pytest.approx(probe(src)["times"], abs=1e-3)
    assert _left_behind(tmp_path, {"e.webm"}) == []


@pytest.mark.parametrize("suffix, args, codec", [(".webm", [], "opus"),
                                                 (".mp4", ["--audio", "encode"], "aac")])
def test_re_encoded_audio_keeps_its_start_and_its_sync_across_a_gap(tmp_path, capfd, suffix,
                                                                     args, codec):
    # audio that starts after the video, with a 0.2 s hole in its timestamps before a burst:
    # the burst must play when it did in the input, not 0.2 s early
    src = _burst_clip(tmp_path / "in.mkv", audio_start=0.25, burst_at=0.8, gap=(0.5, 0.7))
    dst = tmp_path / f"out{suffix}"
    rc, log = run(capfd, src, "-o", dst, "--size", SIZE, "--faces", "off", *args)
    assert rc == 0, log
    a, b = _decoded_audio(src), _decoded_audio(dst)
    assert b["codec"] == codec
    assert a["onset"] == pytest.approx(0.8, abs=0.003)
    assert b["onset"] == pytest.approx(a["onset"], abs=0.005)
    # the start is kept (AAC in MP4 plays its encoder's 1024 priming samples first when the
    # track starts after 0: the edit list skips them only at 0)
    assert b["start"] == pytest.approx(a["start"], abs=1024 / 44100 + 0.002)
    assert b["end"] == pytest.approx(a["end"], abs=0.005)
    # the hole is silence in the output, so the output holds more samples than the input
    assert b["seconds"] >= a["seconds"] + 0.15


def test_every_audio_stream_is_re_encoded_with_its_language(tmp_path, capfd):
    src = make_clip(tmp_path / "two.mp4", n=24, audio_tracks=2)
    dst = tmp_path / "out.webm"
    rc, log = run(capfd, src, "-o", dst, "--size", SIZE, "--device", "cpu")
    assert rc == 0, log
    assert sum("re-encoded to Opus" in ln for ln in log.splitlines()) == 1  # one line
    a, b = probe(src), probe(dst)
    assert [x["codec"] for x in b["audio"]] == ["opus", "opus"]
    assert [x["metadata"]["language"] for x in b["audio"]] == ["eng", "fra"]
    for k in range(2):
        x, y = _decoded_audio(src, k), _decoded_audio(dst, k)
        assert y["start"] == pytest.approx(x["start"], abs=0.005)
        assert y["seconds"] == pytest.approx(x["seconds"], abs=0.005)


@pytest.mark.parametrize("alpha", [False, True])
def test_audio_copy_refuses_naming_only_containers_that_carry_what_was_asked(tmp_path, capfd,
                                                                              alpha):
    src = make_clip(tmp_path / "in.mp4", n=4, audio_tracks=1)
    extra = ["--background", "transparent"] if alpha else []
    rc, log = run(capfd, src, "-o", tmp_path / "out.webm", "--size", SIZE, "--faces", "off",
                  "--audio", "copy", *extra)
    _assert_one_line_error(rc, log, "cannot hold the input's aac audio (stream #1)")
    error = next(ln for ln in log.splitlines() if ln.startswith("error: "))
    assert "--audio encode" in error and ".mkv" in error and ".mov" in error
    assert (".mp4" in error) is not alpha  # MP4 holds AAC but carries no alpha
    assert "engine:" not in log  # before the model starts
    assert _left_behind(tmp_path, {"in.mp4"}) == []


def test_audio_none_and_encode_and_the_default_copy(tmp_path, capfd):
    src = make_clip(tmp_path / "in.mp4", n=6, audio_tracks=1)
    payload = probe(src)["audio"][0]["payload"]
    for mode, want in (("none", None), ("encode", "aac"), ("auto", "aac")):
        dst = tmp_path / f"{mode}.mp4"
        rc, log = run(capfd, src, "-o", dst, "--size", SIZE, "--faces", "off",
                      "--audio", mode)
        assert rc == 0, log
        got = probe(dst)["audio"]
        if want is None:
            assert got == []
            continue
        assert [x["codec"] for x in got] == [want]
        # auto copies what the container holds; encode re-encodes it (other packets)
        assert (got[0]["payload"] == payload) is (mode == "auto")
        assert ("re-encoded" in log) is (mode == "encode")


def test_opus_audio_into_flv_is_re_encoded_to_aac_by_default(tmp_path, capfd):
    src = with_audio(tmp_path / "talk.mkv", "libopus")
    rc, log = run(capfd, src, "-o", tmp_path / "out.flv", "--size", SIZE, "--faces", "off")
    assert rc == 0, log
    assert "re-encoded to AAC" in log
    with av.open(str(tmp_path / "out.flv")) as c:
        assert [s.codec_context.name for s in c.streams.audio] == ["aac"]
        assert sum(1 for p in c.demux(c.streams.audio[0]) if p.size) > 3


def test_a_bad_audio_mode_is_one_line(tmp_path, capfd):
    src = make_clip(tmp_path / "in.mp4", n=2)
    try:  # argparse's own line and exit status 2
        rc = main([str(src), "-o", str(tmp_path / "out.mp4"), "--audio", "loud"])
    except SystemExit as exc:
        rc = exc.code
    err = capfd.readouterr().err
    assert rc == 2 and "--audio" in err and "loud" in err and "Traceback" not in err
    preset = tmp_path / "p.yaml"
    preset.write_text("audio: loud\n")
    rc, log = run(capfd, src, "-o", tmp_path / "out.mp4", "--config", preset)
    _assert_one_line_error(rc, log, "audio must be auto, copy, encode or none")


@pytest.mark.parametrize("audio_start, args", [(0.25, []), (0.0, ["--audio", "encode"])])
def test_audio_into_avi_is_placed_from_zero_so_it_stays_in_sync(tmp_path, capfd, audio_start,
                                                                  args):
    # AVI places audio by position: audio that starts late is re-encoded with silence before
    # it (a copy would play 0.25 s early), and the encoder's priming is left out
    src = _burst_clip(tmp_path / "in.mkv", audio_start=audio_start, burst_at=0.8)
    dst = tmp_path / "out.avi"
    rc, log = run(capfd, src, "-o", dst, "--size", SIZE, "--faces", "off", *args)
    assert rc == 0, log
    if not args:
        assert "avi places audio by position" in log
    a, b = _decoded_audio(src), _decoded_audio(dst)
    assert b["start"] == pytest.approx(0.0, abs=1e-6)
    assert b["onset"] == pytest.approx(a["onset"], abs=0.005)


# --- the type of a folder's outputs (issue 23, item 11) -------------------------------------


def _folder(tmp_path: Path, names: tuple[str, ...]) -> Path:
    src = tmp_path / "in"
    src.mkdir()
    for name in names:
        if name.endswith((".jpg", ".png")):
            cv2.imwrite(str(src / name), _picture(0, 48, 64))
        else:
            make_clip(src / name, n=3, audio_tracks=1 if name.endswith(".mp4") else 0)
    return src


def test_a_folder_with_a_transparent_background_gets_outputs_that_carry_alpha(tmp_path, capfd):
    # every .mp4 of a folder failed: outputs kept the input's type, which has no alpha
    src = _folder(tmp_path, ("a.mp4", "b.mov", "c.jpg", "d.png"))
    dst = tmp_path / "out"
    rc, log = run(capfd, src, "-o", dst, "--background", "transparent", "--size", SIZE,
                  "--faces", "off")
    assert rc == 0, log
    assert sorted(p.name for p in dst.iterdir()) == ["a.webm", "b.mov", "c.png", "d.png"]
    with av.open(str(dst / "a.webm")) as c:
        assert c.streams.video[0].metadata.get("alpha_mode") == "1"
        assert [s.codec_context.name for s in c.streams.audio] == ["opus"]
    with av.open(str(dst / "b.mov")) as c:
        assert c.streams.video[0].codec_context.name == "prores"
        assert next(c.decode(video=0)).format.name.startswith("yuva")
    assert cv2.imread(str(dst / "c.png"), cv2.IMREAD_UNCHANGED).shape[2] == 4


def test_format_and_image_format_choose_the_type_of_the_outputs_run_video_names(tmp_path,
                                                                                capfd):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    make_clip(src / "a.mp4", n=3, audio_tracks=1)
    make_clip(src / "sub" / "b.mkv", n=3)
    cv2.imwrite(str(src / "c.jpg"), _picture(0, 48, 64))
    rc, log = run(capfd, src, "-o", tmp_path / "out", "--format", "mov", "--image-format",
                  "webp", "--size", SIZE, "--faces", "off")
    assert rc == 0, log
    out = tmp_path / "out"
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == [
        "a.mov", "c.webp", "sub/b.mov"]
    assert probe(out / "a.mov")["format"].startswith("mov") and \
        [x["codec"] for x in probe(out / "a.mov")["audio"]] == ["aac"]
    # several inputs into a folder, and a single input's default name, the same way
    rc, log = run(capfd, src / "a.mp4", src / "sub" / "b.mkv", "-o", tmp_path / "many",
                  "--format", ".WEBM", "--size", SIZE, "--faces", "off")
    assert rc == 0, log
    assert sorted(p.name for p in (tmp_path / "many").iterdir()) == ["a.webm", "b.webm"]
    rc, log = run(capfd, src / "a.mp4", "--format", "mkv", "--size", SIZE, "--faces", "off")
    assert rc == 0, log
    assert (src / "a_anime.mkv").is_file()


@pytest.mark.parametrize("case, words", [
    ("unknown", "is not a video container run_video writes"),
    ("no alpha", "mp4 cannot carry the alpha channel"),
    ("disagrees", "-o out.mp4 is a .mp4 file but --format asks for .webm"),
    ("collision", "would both be written as"),
])
def test_format_errors_are_one_line_before_any_work(tmp_path, capfd, case, words):
    src = _folder(tmp_path, ("a.mp4", "a.mov"))
    out = tmp_path / "out"
    args = {"unknown": [src, "-o", out, "--format", "gif"],
            "no alpha": [src, "-o", out, "--format", "mp4", "--background", "transparent"],
            "disagrees": [src / "a.mp4", "-o", tmp_path / "out.mp4", "--format", "webm"],
            "collision": [src, "-o", out, "--format", "webm"]}[case]
    rc, log = run(capfd, *args, "--size", SIZE, "--faces", "off")
    _assert_one_line_error(rc, log, words)
    assert "engine:" not in log
    assert _left_behind(tmp_path, {"in"}) == [] and sorted(
        p.name for p in src.iterdir()) == ["a.mov", "a.mp4"]


def test_a_preset_carries_the_format_and_the_audio_mode(tmp_path, capfd):
    src = _folder(tmp_path, ("a.mp4",))
    preset = tmp_path / "web.yaml"
    preset.write_text("format: webm\naudio: none\n")
    rc, log = run(capfd, src, "-o", tmp_path / "out", "--config", preset, "--size", SIZE,
                  "--faces", "off")
    assert rc == 0, log
    assert probe(tmp_path / "out" / "a.webm")["audio"] == []


def test_damaged_audio_is_re_encoded_past_with_a_warning_and_stays_in_sync(tmp_path, capfd):
    good = _burst_clip(tmp_path / "good.mkv", audio_start=0.0, burst_at=0.8)
    src = tmp_path / "damaged.mkv"
    with av.open(str(good)) as i, av.open(str(src), "w") as o:
        streams = {s.index: o.add_stream_from_template(s) for s in i.streams}
        k = 0
        for p in i.demux():
            if not p.size:  # the demuxer's empty flush packets
                continue
            out = streams[p.stream.index]
            if p.stream.type == "audio":
                k += 1
                if k in (6, 7):  # two packets of garbage, where the file says audio is
                    bad = av.Packet(b"\xff" * p.size)
                    bad.pts, bad.dts, bad.time_base = p.pts, p.dts, p.time_base
                    p = bad
            p.stream = out
            o.mux(p)
    rc, log = run(capfd, src, "-o", tmp_path / "out.webm", "--size", SIZE, "--faces", "off")
    assert rc == 0, log
    warnings = [ln for ln in log.splitlines() if ln.startswith("warning: ")]
    assert len(warnings) == 1 and "2 damaged packet(s)" in warnings[0], log
    b = _decoded_audio(tmp_path / "out.webm")
    assert b["onset"] == pytest.approx(0.8, abs=0.005)


# --- stopped over and over, and at the last moment (issue 23 items 3 and 15) ----------------

#: (signal, seconds after the temporary output appeared, output, faces)
_STOPS = [(signal.SIGINT, 0.0, "result.mp4", "off"),
          (signal.SIGTERM, 0.3, "result.mp4", "auto"),
          (signal.SIGINT, 0.6, "frames/%05d.png", "off"),
          (signal.SIGTERM, 1.0, "frames/%05d.png", "off"),
          (signal.SIGINT, 1.5, "result.mp4", "off")]


def test_run_video_stopped_again_and_again_exits_130_or_143_and_leaves_nothing(tmp_path,
                                                                             models_dir):
    """Each run gets its signal twice, 0.1 s apart, as a user presses Ctrl+C again while the
    stop waits for the model call in flight: the second must not abandon the stage threads
    (a thread torn down inside ONNX Runtime at exit aborts the process, exit 134)."""
    src = clip(tmp_path / "long.mp4", n=300, size=(320, 240))
    for i, (sig, wait_s, output, faces) in enumerate(_STOPS):
        out = tmp_path / f"out{i}"
        out.mkdir()
        rc, log = stop_while_writing(src, out, models_dir, sig, "--faces", faces,
                                     output=output, wait_s=wait_s, again_after_s=0.1)
        assert rc == 128 + sig, (i, rc, log)  # 130 for Ctrl+C, 143 for SIGTERM
        assert "terminate called" not in log and "Traceback" not in log, (i, log)
        lines = [ln for ln in log.splitlines() if ln.startswith("interrupted")]
        assert len(lines) == 1 and "was removed" in lines[0], (i, log)
        assert list(out.iterdir()) == [], i  # no partial file or folder, no output


@pytest.mark.parametrize("moment", ["finishing", "renamed"])
def test_a_sigterm_at_the_last_moment_of_a_transparent_webm_keeps_it_and_says_so(
        tmp_path, models_dir, moment):
    """The signal comes while the sink flushes and renames the output, or just after: the
    output is complete, so it stays, and the line says it stayed (not "removed")."""
    src = clip(tmp_path / "in.mp4", n=12)
    out = tmp_path / "out"
    out.mkdir()
    dst = out / "toon.webm"
    rc, log = stop_at_the_last_moment(moment, [src, "-o", dst, "--size", SIZE, "--faces",
                                               "off", "--background", "transparent"],
                                      models_dir)
    assert rc == 143, log
    assert "Traceback" not in log
    assert log.strip().splitlines()[-1] == (f"interrupted by SIGTERM: stopped; {dst} was "
                                            f"already complete and is kept"), log
    assert [p.name for p in out.iterdir()] == ["toon.webm"]
    with av.open(str(dst)) as c:  # complete: every frame, with its alpha plane
        st = c.streams.video[0]
        assert st.codec_context.name == "vp9"
        dec = av.CodecContext.create("libvpx-vp9", "r")  # the decoder that reads VP9 alpha
        frames = [f for p in c.demux(st) for f in dec.decode(p if p.size else None)]
    assert len(frames) == 12 and all(f.format.name == "yuva420p" for f in frames)



# --- VP9 speed presets ----------------------------------------------------------------------

@pytest.mark.parametrize("preset, deadline, speed", [
    (None, "realtime", "8"), ("realtime", "realtime", "8"), ("ultrafast", "realtime", "8"),
    ("veryfast", "realtime", "6"), ("faster", "good", "5"), ("good", "good", "3"),
    ("medium", "good", "3"), ("slow", "good", "2"), ("veryslow", "good", "0")])
def test_vp9_presets_are_libvpx_deadlines_and_speeds(preset, deadline, speed):
    from streamer.sinks.video_file import choose_encoder
    for alpha in (True, False):
        enc = choose_encoder(Path("out.webm"), alpha=alpha, preset=preset, width=1280)
        assert enc.codec == "libvpx-vp9" and enc.threads == 0  # offline: the encoder's choice
        assert (enc.options["deadline"], enc.options["cpu-used"]) == (deadline, speed)
        assert enc.options["crf"] == "24" and enc.options["row-mt"] == "1"
        # the real-time mode says it looks at no later frames; deadline good keeps libvpx's own
        extra = {k: enc.options.get(k) for k in ("lag-in-frames", "tile-columns")}
        assert extra == ({"lag-in-frames": "0", "tile-columns": "2"} if deadline == "realtime"
                         else {"lag-in-frames": None, "tile-columns": None})


def test_run_video_writes_vp9_alpha_at_the_fast_default_and_preset_good_at_deadline_good(
        tmp_path, capfd, monkeypatch):
    import streamer.sinks.video_file as video_file
    chosen = []

    def spy(*args, **kw):
        chosen.append(real(*args, **kw))
        return chosen[-1]

    real = video_file.choose_encoder
    monkeypatch.setattr(video_file, "choose_encoder", spy)
    src = make_clip(tmp_path / "in.mp4", n=6)
    for name, args in (("fast.webm", []), ("good.webm", ["--preset", "good"]),
                       ("slow.mkv", ["--preset", "slow", "--crf", "20"])):
        rc, log = run(capfd, src, "-o", tmp_path / name, "--background", "transparent",
                      "--size", SIZE, "--faces", "off", "--device", "cpu", *args)
        assert rc == 0, log
        with av.open(str(tmp_path / name)) as c:
            st = c.streams.video[0]
            assert st.codec_context.name == "vp9" and st.metadata.get("alpha_mode") == "1"
            dec = av.CodecContext.create("libvpx-vp9", "r")  # the decoder that reads VP9 alpha
            frames = [f for p in c.demux(st) for f in dec.decode(p if p.size else None)]
        assert len(frames) == 6 and all(f.format.name == "yuva420p" for f in frames)
    fast, good, slow = (c.options for c in chosen)
    assert (fast["deadline"], fast["cpu-used"], fast["crf"]) == ("realtime", "8", "24")
    assert (good["deadline"], good["cpu-used"], good["crf"]) == ("good", "3", "24")
    assert (slow["deadline"], slow["cpu-used"], slow["crf"]) == ("good", "2", "20")


def test_an_unknown_vp9_preset_is_one_line_naming_the_presets(tmp_path, capfd):
    src = make_clip(tmp_path / "in.mp4", n=2)
    rc, log = run(capfd, src, "-o", tmp_path / "out.webm", "--size", SIZE, "--faces", "off",
                  "--device", "cpu", "--preset", "fastest")
    assert rc != 0
    one_error_line(log, "unknown preset 'fastest' for libvpx-vp9; choose realtime, ultrafast")
    assert not (tmp_path / "out.webm").exists()

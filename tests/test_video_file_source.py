"""Reading what users bring (streamer/sources/video_file.py and display_matrix.py, through
run_video): side data that crashed the decoder (ICC profiles, EXIF), display matrices read
without PyAV's side-data objects, random bytes, AVI files once refused as damaged, and files
that end early or are damaged in the middle, each made on the fly (tests/awkward_media.py)."""
from __future__ import annotations

import av
import numpy as np
import pytest

from awkward_media import clip, damaged, decoded, mjpeg_avi, picture, png_with_icc, remux_to_avi
from video_cli import SIZE, one_error_line, run, run_video_process


@pytest.fixture(autouse=True)
def _models_env(models_dir, monkeypatch):
    monkeypatch.setenv("TOONSTREAM_MODELS", str(models_dir))


# --- side data: ICC profiles, EXIF, display matrices ----------------------------------------


def test_png_with_an_icc_profile_read_as_a_video_converts_without_crashing(tmp_path):
    # No extension: run_video takes it down the video path, which read frame.side_data and
    # died with a segfault (exit -11/139) on the ICC profile's entry.
    src = tmp_path / "photo"
    src.write_bytes(png_with_icc(picture(0)))
    res = run_video_process(src, "-o", tmp_path / "out.mp4", "--size", SIZE, "--faces", "off")
    assert res.returncode == 0, (res.returncode, res.stderr)
    assert len(decoded(tmp_path / "out.mp4")) == 1


def test_mjpeg_with_exif_side_data_converts(tmp_path, capfd):
    # FFmpeg 8's MJPEG decoder attaches the EXIF block as side data of a type PyAV does not
    # know (31): "ValueError: 31 is not a valid Type" before the fix.
    src = mjpeg_avi(tmp_path / "cam.avi", n=5)
    rc, log = run(capfd, src, "-o", tmp_path / "out.mp4", "--size", SIZE, "--faces", "off")
    assert rc == 0, log
    assert len(decoded(tmp_path / "out.mp4")) == 5


@pytest.mark.parametrize("hflip, vflip", [(True, False), (False, True)])
def test_a_mirrored_display_matrix_is_still_applied(tmp_path, capfd, hflip, vflip):
    # The matrix is now read without PyAV's side-data objects; flips must survive that.
    src = clip(tmp_path / "m.mp4", n=2, hflip=hflip, vflip=vflip)
    rc, log = run(capfd, src, "-o", tmp_path / "out.mp4", "--size", SIZE, "--faces", "off")
    assert rc == 0, log
    assert "mirrored" in log if hflip else "flipped vertically" in log
    out = decoded(tmp_path / "out.mp4")[0].astype(np.int16)
    # The white block is top-left in the coded picture: a player shows it mirrored.
    h, w = out.shape[:2]
    corner = (slice(0, h // 4), slice(w - w // 4, w)) if hflip else \
        (slice(h - h // 4, h), slice(0, w // 4))
    other = (slice(0, h // 4), slice(0, w // 4))
    assert out[corner].mean() > out[other].mean() + 40


def test_run_video_refuses_a_random_file_as_not_a_video(tmp_path, capfd):
    src = tmp_path / "data.mp4"
    src.write_bytes(np.random.default_rng(2).integers(0, 256, 100_000, np.uint8).tobytes())
    rc, log = run(capfd, src, "-o", tmp_path / "out.mp4", "--size", SIZE)
    assert rc == 1
    one_error_line(log, "not a video")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.mp4"]


# --- AVI files -------------------------------------------------------------------------------


def test_a_remuxed_avi_is_not_refused_as_truncated(tmp_path, capfd):
    # AVI's header counts ticks of its time base (300 here), not packets (12): the old
    # truncation check compared the two and refused a valid file.
    src = remux_to_avi(clip(tmp_path / "c.mp4", n=12), tmp_path / "c.avi")
    with av.open(str(src)) as c:
        assert c.streams.video[0].frames != 12  # the count that misled the check
    rc, log = run(capfd, src, "-o", tmp_path / "out.mp4", "--size", SIZE, "--faces", "off")
    assert rc == 0, log
    assert len(decoded(tmp_path / "out.mp4")) == 12


def test_a_one_frame_mjpeg_avi_converts(tmp_path, capfd):
    src = mjpeg_avi(tmp_path / "one.avi", n=1, exif=False)
    rc, log = run(capfd, src, "-o", tmp_path / "out.mp4", "--size", SIZE, "--faces", "off")
    assert rc == 0, log
    assert len(decoded(tmp_path / "out.mp4")) == 1


# --- files that end early or are damaged in the middle -------------------------------------


def test_a_truncated_mkv_is_converted_with_a_warning_that_counts_the_frames(tmp_path, capfd):
    src = damaged(tmp_path, ".mkv", "truncated")
    rc, log = run(capfd, src, "-o", tmp_path / "out.mkv", "--size", SIZE, "--faces", "off")
    assert rc == 0, log
    frames = len(decoded(tmp_path / "out.mkv"))
    assert 0 < frames < 91
    warnings = [ln for ln in log.splitlines() if ln.startswith("warning: ")]
    assert len(warnings) == 1 and "ends early" in warnings[0], log
    assert f"{frames} frames written" in warnings[0]


def test_damage_in_the_middle_of_an_mp4_is_decoded_past_and_reported(tmp_path, capfd):
    # Before: "damaged or truncated after 29 frames", nothing written. ffmpeg decodes past
    # the damage; so does run_video now, and it says how much was lost.
    src = damaged(tmp_path, ".mp4", "damaged")
    rc, log = run(capfd, src, "-o", tmp_path / "out.mp4", "--size", SIZE, "--faces", "off")
    assert rc == 0, log
    frames = len(decoded(tmp_path / "out.mp4"))
    assert 60 < frames < 91
    warnings = [ln for ln in log.splitlines() if ln.startswith("warning: ")]
    assert len(warnings) == 1 and "damaged" in warnings[0] and "could not be decoded" in \
        warnings[0], log
    assert f"{frames} frames written" in warnings[0]


def test_damage_in_the_middle_of_an_mkv_is_reported_as_a_gap(tmp_path, capfd):
    # Matroska resyncs past a damaged cluster without an error: frames simply go missing.
    src = damaged(tmp_path, ".mkv", "damaged")
    rc, log = run(capfd, src, "-o", tmp_path / "out.mkv", "--size", SIZE, "--faces", "off")
    assert rc == 0, log
    frames = len(decoded(tmp_path / "out.mkv"))
    assert 0 < frames < 91
    warnings = [ln for ln in log.splitlines() if ln.startswith("warning: ")]
    assert len(warnings) == 1 and "gap" in warnings[0], log
    assert f"{frames} frames written" in warnings[0]


@pytest.mark.parametrize("suffix", [".mp4", ".mkv", ".avi"])
def test_a_whole_file_gets_no_warning(tmp_path, capfd, suffix):
    src = clip(tmp_path / f"whole{suffix}", n=30)
    rc, log = run(capfd, src, "-o", tmp_path / "out.mp4", "--size", SIZE, "--faces", "off")
    assert rc == 0 and "warning" not in log, log

"""The lines run_video prints for files it could not convert (streamer/video/failures.py),
without Ray; tests/test_ray.py checks that a Ray run prints the same ones.

Issue 23.9: a folder's bad file read `failed: b.mp4: b.mp4: not a video` (the name twice),
and a bad file among several inputs stopped the ones after it."""
from __future__ import annotations

from pathlib import Path

import pytest

from awkward_media import clip, decoded
from video_cli import SIZE, run

NOT_A_VIDEO = "not a video file FFmpeg can read (Invalid data found when processing input)"


@pytest.fixture(autouse=True)
def _models_env(models_dir, monkeypatch):
    monkeypatch.setenv("TOONSTREAM_MODELS", str(models_dir))


def test_a_folders_bad_file_is_named_once_by_its_path_in_the_folder(tmp_path, capfd):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    clip(src / "a.mp4", n=3)
    (src / "b.mp4").write_text("not a video\n" * 50)
    (src / "sub" / "c.mp4").write_text("nor this\n" * 50)
    rc, log = run(capfd, src, "-o", tmp_path / "out", "--size", SIZE, "--faces", "off")
    assert rc == 1, log
    assert [ln for ln in log.splitlines() if ln.startswith("failed: ")] == [
        f"failed: b.mp4: {NOT_A_VIDEO}", f"failed: sub/c.mp4: {NOT_A_VIDEO}"], log
    assert log.rstrip().splitlines()[-1] == ("error: 2 of 3 files could not be converted "
                                              "(each is listed above as 'failed:')")


def test_a_bad_file_among_several_inputs_does_not_stop_the_others(tmp_path, capfd):
    # as a folder's files (and as on Ray): each input is tried, each failure is a line,
    # and the count comes last
    a = clip(tmp_path / "a.mp4", n=3)
    bad = tmp_path / "bad.mp4"
    bad.write_text("not a video\n" * 50)
    c = clip(tmp_path / "c.mp4", n=4)
    out = tmp_path / "out"
    rc, log = run(capfd, a, bad, c, "-o", out, "--size", SIZE, "--faces", "off")
    assert rc == 1, log
    assert [ln for ln in log.splitlines() if ln.startswith(("failed: ", "error: "))] == [
        f"failed: {bad}: {NOT_A_VIDEO}",
        "error: 1 of 3 files could not be converted (each is listed above as 'failed:')"], log
    assert sorted(p.name for p in out.iterdir()) == ["a.mp4", "c.mp4"]
    assert len(decoded(out / "c.mp4")) == 4


def test_a_message_loses_only_a_leading_name_of_its_own_file():
    from streamer.video.failures import failed_line, own_message

    src = Path("clips/sub/b.mp4")
    assert own_message(src, "b.mp4: not a video") == "not a video"
    assert own_message(src, "clips/sub/b.mp4: not a video") == "not a video"
    assert own_message(src, "encoder 'x' cannot start; b.mp4: kept") == (
        "encoder 'x' cannot start; b.mp4: kept")
    assert own_message(src, "b.mp4x: other\nfile") == "b.mp4x: other file"  # one line
    assert failed_line("sub/b.mp4", "not a video") == "failed: sub/b.mp4: not a video"


def test_only_a_files_own_errors_let_a_folder_go_on():
    from streamer.pipeline.core import PipelineError
    from streamer.sinks.video_file import OutputError
    from streamer.sources.video_file import MediaError
    from streamer.video.failures import own_failure

    bad = MediaError("b.mp4: not a video")
    assert own_failure(bad) is bad
    full = OutputError("disk full")
    assert own_failure(PipelineError("sink", full)) is full
    assert own_failure(PipelineError("toon", RuntimeError("engine crashed"))) is None
    assert own_failure(RuntimeError("model missing")) is None

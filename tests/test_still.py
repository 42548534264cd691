"""Stills through run_video with faces off: the official full-frame flow, pixel for pixel
(within 1). With faces on see test_faces_cli.py."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from streamer.video.app import main

from awkward_media import png_with_icc, rgba_picture
from video_cli import SIZE, one_error_line, run

STYLES = ("anime", "3d", "handdrawn", "sketch", "artstyle", "sd-design", "sd-illustration")
IMAGES = ("astronaut", "event", "luciano", "tears")


@pytest.fixture(autouse=True)
def _models_env(models_dir, monkeypatch):
    monkeypatch.setenv("TOONSTREAM_MODELS", str(models_dir))


@pytest.mark.slow
@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("name", IMAGES)
def test_still_through_the_cli_matches_the_official_full_frame_flow_within_1(
        golden_dir, tmp_path, capfd, style, name):
    # python run_video.py photo.png -o out.png --style STYLE --faces off, default device
    dst = tmp_path / "out.png"
    rc = main([str(golden_dir / "flow" / f"{name}.png"), "-o", str(dst), "--style", style,
               "--faces", "off"])
    _, err = capfd.readouterr()
    assert rc == 0, err
    assert "engine: " in err
    got = cv2.imread(str(dst)).astype(np.int16)
    want = cv2.imread(str(golden_dir / "flow" / f"{name}__{style}.png")).astype(np.int16)
    assert got.shape == want.shape
    assert int(np.abs(got - want).max()) <= 1


def test_jpeg_in_webp_out_keeps_the_size_and_leaves_no_temporary_file(golden_dir, tmp_path,
                                                                      capfd):
    src = tmp_path / "photo.jpg"
    cv2.imwrite(str(src), cv2.imread(str(golden_dir / "flow" / "luciano.png")))
    dst = tmp_path / "photo_anime.webp"
    rc = main([str(src), "-o", str(dst), "--size", "128", "--device", "cpu"])
    assert rc == 0, capfd.readouterr().err
    out = cv2.imread(str(dst))
    assert out.shape == (400, 400, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photo.jpg", "photo_anime.webp"]


def test_a_large_still_is_reduced_to_the_working_size_and_resized_back(golden_dir, tmp_path,
                                                                       capfd):
    src = golden_dir / "flow" / "astronaut.png"
    dst = tmp_path / "out.png"
    rc = main([str(src), "-o", str(dst), "--size", "96", "--device", "cpu"])
    assert rc == 0, capfd.readouterr().err
    out = cv2.imread(str(dst))
    assert out.shape == (512, 512, 3)
    # A stylised picture, not a copy of the input.
    assert np.abs(out.astype(int) - cv2.imread(str(src)).astype(int)).mean() > 5


def test_default_output_name_is_next_to_the_input_with_the_style(golden_dir, tmp_path, capfd):
    src = tmp_path / "me.png"
    src.write_bytes((golden_dir / "flow" / "luciano.png").read_bytes())
    rc = main([str(src), "--style", "sketch", "--size", "64", "--device", "cpu"])
    assert rc == 0, capfd.readouterr().err
    assert (tmp_path / "me_sketch.png").is_file()


@pytest.mark.parametrize("case, words", [
    ("corrupt", "not an image"),
    ("video output", "needs an image output"),
    ("exists", "exists; add -y"),
])
def test_still_errors_are_one_line_and_leave_nothing_behind(golden_dir, tmp_path, capfd, case,
                                                            words):
    src = tmp_path / "in.png"
    src.write_bytes((golden_dir / "flow" / "luciano.png").read_bytes())
    dst = tmp_path / "out.png"
    if case == "corrupt":
        src.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 100)
    elif case == "video output":
        dst = tmp_path / "out.mp4"
    else:
        dst.write_bytes(b"keep me")
    rc = main([str(src), "-o", str(dst), "--size", "64", "--device", "cpu"])
    err = capfd.readouterr().err
    assert rc != 0
    errors = [ln for ln in err.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1 and words in errors[0], err
    assert "Traceback" not in err
    expected = {"in.png"} | ({"out.png"} if case == "exists" else set())
    assert {p.name for p in tmp_path.iterdir()} == expected


# --- transparency and libpng's own warnings (tests/awkward_media.py) -------------------------


@pytest.mark.parametrize("suffix", [".png", ".webp"])
def test_an_rgba_image_keeps_its_alpha_channel_in_png_and_webp(tmp_path, capfd, suffix):
    src = tmp_path / "cutout.png"
    rgba = rgba_picture()
    cv2.imwrite(str(src), rgba)
    dst = tmp_path / f"out{suffix}"
    rc, log = run(capfd, src, "-o", dst, "--size", SIZE, "--faces", "off")
    assert rc == 0, log
    out = cv2.imread(str(dst), cv2.IMREAD_UNCHANGED)
    assert out.shape == (48, 64, 4)
    if suffix == ".png":
        assert np.array_equal(out[..., 3], rgba[..., 3])
        # the colour is the model's result for the picture as the official code reads it
        cv2.imwrite(str(tmp_path / "opaque.png"), rgba[..., :3])
        rc, log = run(capfd, tmp_path / "opaque.png", "-o", tmp_path / "opaque_out.png",
                      "--size", SIZE, "--faces", "off")
        assert rc == 0, log
        assert np.array_equal(out[..., :3], cv2.imread(str(tmp_path / "opaque_out.png")))
    else:  # lossy WebP: the alpha plane is kept losslessly by default, allow a level
        assert np.abs(out[..., 3].astype(int) - rgba[..., 3]).max() <= 1


def test_an_rgba_image_written_as_jpeg_says_its_transparency_was_dropped(tmp_path, capfd):
    src = tmp_path / "cutout.png"
    cv2.imwrite(str(src), rgba_picture())
    rc, log = run(capfd, src, "-o", tmp_path / "out.jpg", "--size", SIZE, "--faces", "off")
    assert rc == 0, log
    notes = [ln for ln in log.splitlines() if ln.startswith("note: ")]
    assert len(notes) == 1 and "transparency" in notes[0] and "dropped" in notes[0], log


def test_a_grey_png_with_a_colour_profile_prints_no_libpng_warning(tmp_path, capfd):
    src = tmp_path / "grey.png"
    grey = (np.arange(48 * 64) % 256).reshape(48, 64).astype(np.uint8)
    src.write_bytes(png_with_icc(grey))
    rc, log = run(capfd, src, "-o", tmp_path / "out.png", "--size", SIZE, "--faces", "off")
    assert rc == 0, log
    assert "libpng" not in log, log
    assert [ln.split(":")[0] for ln in log.splitlines()] == ["engine", "done"], log


# --- outputs of the wrong kind (issue 23, item 17) ------------------------------------------

def test_a_still_to_a_frame_pattern_is_refused_and_writes_nothing(tmp_path, capfd):
    # the folder exists, so nothing else stops it: it used to write a file named %05d.png
    src = tmp_path / "me.png"
    cv2.imwrite(str(src), cv2.resize(rgba_picture()[..., :3], (64, 48)))
    out = tmp_path / "frames"
    out.mkdir()
    rc, log = run(capfd, src, "-o", out / "%05d.png", "--size", SIZE, "--faces", "off")
    assert rc != 0
    one_error_line(log, f"-o {out / '%05d.png'}: a frame pattern is for a video's PNG "
                        f"sequence; a still is one picture, e.g. -o {out / 'me.png'}")
    assert list(out.iterdir()) == []


def test_a_video_to_one_image_name_suggests_the_png_sequence(tmp_path, capfd):
    from web.media import make_clip

    clip = tmp_path / "clip.mp4"
    make_clip(clip, seconds=0.3, fps=10, size=(64, 48), audio=False)
    out = tmp_path / "frames"
    out.mkdir()
    for name in ("frame.png", "frame.jpg"):
        rc, log = run(capfd, clip, "-o", out / name, "--size", SIZE, "--faces", "off")
        assert rc != 0
        one_error_line(log, f"-o {out / name}: a video has many frames, not one picture: -o "
                            f"{out / '%05d.png'} writes a PNG sequence")
    assert list(out.iterdir()) == []
    # the form it names works (into a folder of its own: an existing one needs -y)
    seq = tmp_path / "seq"
    rc, log = run(capfd, clip, "-o", seq / "%05d.png", "--size", SIZE, "--faces", "off")
    assert rc == 0, log
    assert sorted(p.name for p in seq.iterdir()) == ["00001.png", "00002.png", "00003.png"]


# --- TIFF keeps alpha; refusals before the model (issue 23, item 12) ------------------------


@pytest.mark.parametrize("suffix", [".tif", ".tiff"])
def test_an_rgba_image_keeps_its_alpha_channel_in_tiff(tmp_path, capfd, suffix):
    # the README says TIFF keeps alpha; it was refused after the model had run
    src = tmp_path / "cutout.png"
    rgba = rgba_picture()
    cv2.imwrite(str(src), rgba)
    dst = tmp_path / f"out{suffix}"
    rc, log = run(capfd, src, "-o", dst, "--size", SIZE, "--faces", "off")
    assert rc == 0, log
    out = cv2.imread(str(dst), cv2.IMREAD_UNCHANGED)
    assert out.shape == (48, 64, 4)
    assert np.array_equal(out[..., 3], rgba[..., 3])  # lossless, as PNG
    rc, log = run(capfd, src, "-o", tmp_path / "out.png", "--size", SIZE, "--faces", "off")
    assert rc == 0, log
    assert np.array_equal(out, cv2.imread(str(tmp_path / "out.png"), cv2.IMREAD_UNCHANGED))


def test_a_still_too_large_for_its_format_is_refused_before_the_model_runs(tmp_path, capfd):
    # WebP stops at 16383 pixels a side: the encoder failed after the model had run
    src = tmp_path / "panorama.png"
    cv2.imwrite(str(src), np.full((20, 16400, 3), 128, np.uint8))
    rc, log = run(capfd, src, "-o", tmp_path / "out.webp", "--size", SIZE, "--faces", "off")
    one_error_line(log, "out.webp: the image is 16400x20, and .webp holds at most 16383 pixels "
                        "a side; use .png or .tif")
    assert rc != 0 and "engine:" not in log
    assert sorted(p.name for p in tmp_path.iterdir()) == ["panorama.png"]


def test_the_ray_plan_refuses_outputs_of_the_wrong_kind_as_the_single_machine_run(tmp_path):
    # run_video --ray maps every input to its output with targets.all_targets, before Ray
    from streamer.sinks.video_file import OutputError
    from streamer.video.targets import all_targets

    still = tmp_path / "me.png"
    cv2.imwrite(str(still), np.zeros((8, 8, 3), np.uint8))
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"")  # only its name counts here
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(OutputError, match="a still is one picture"):
        all_targets([still], out / "%05d.png", "anime")
    with pytest.raises(OutputError, match="%05d.png writes a PNG sequence"):
        all_targets([clip], out / "frame.png", "anime")
    assert all_targets([clip], out / "%05d.png", "anime") == [(clip, out / "%05d.png")]

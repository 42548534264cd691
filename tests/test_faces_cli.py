"""Faces through the entry points as users meet them: run_video's stills match the official
compound algorithm with faces on by default, the face options are honoured, a missing
detector is a clear error (or a note with `auto`), clips keep their faces frame after frame,
and the live path pastes heads cut from the output-size frame."""
from __future__ import annotations

import json
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from streamer.config import ConfigError, LiveSettings, VideoSettings, build_settings
from streamer.live import app as live_app
from streamer.live.toon import LiveToon, working_size
from streamer.video.app import main
from streamer.toon.engine import EngineSettings
from streamer.toon.faces.compose import load_head_mask
from streamer.toon.faces.flow import FaceAwareFlow
from streamer.toon.styles import StyleFlows
from streamer.toon.flow import FullFrameFlow
from streamer.models import open_store

from video_cli import run

COMPOUND_STYLES = ("anime", "3d", "sketch")


@pytest.fixture(autouse=True)
def _models_env(models_dir, monkeypatch):
    monkeypatch.setenv("TOONSTREAM_MODELS", str(models_dir))


def _diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a.astype(np.int16) - b.astype(np.int16))


def _convert(src: Path, dst: Path, capfd, *extra: str) -> tuple[int, str]:
    rc = main([str(src), "-o", str(dst), *extra])
    return rc, capfd.readouterr().err


# --- stills: the official compound result -----------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("style", COMPOUND_STYLES)
@pytest.mark.parametrize("name", ["astronaut", "luciano", "tears"])
def test_still_with_faces_on_by_default_matches_the_official_compound_result(
        golden_dir, tmp_path, capfd, style, name):
    # python run_video.py photo.png -o out.png --style STYLE: the detector is installed, so
    # faces are on and the one face of each portrait is pasted the official way.
    dst = tmp_path / "out.png"
    rc, err = _convert(golden_dir / "flow" / f"{name}.png", dst, capfd, "--style", style)
    assert rc == 0, err
    assert "faces on" in err and "1 face(s) pasted" in err
    d = _diff(cv2.imread(str(dst)), cv2.imread(str(golden_dir / "compound" / f"{name}__{style}.png")))
    assert d.mean() < 0.05 and d.max() <= 1, (d.mean(), d.max())


def test_small_faces_are_skipped_like_the_official_code_unless_min_face_is_lowered(
        golden_dir, tmp_path, capfd):
    src = golden_dir / "flow" / "event.png"
    ref = cv2.imread(str(golden_dir / "compound" / "event__anime.png"))  # all 5 faces pasted
    # The official 60 px rule keeps one of the five faces of the event frame ...
    rc, err = _convert(src, tmp_path / "a.png", capfd)
    assert rc == 0 and "1 face(s) pasted" in err, err
    assert _diff(cv2.imread(str(tmp_path / "a.png")), ref).max() > 8
    # ... --min-face 0 pastes all five: the compound reference, within 1.
    rc, err = _convert(src, tmp_path / "b.png", capfd, "--min-face", "0")
    assert rc == 0 and "5 face(s) pasted" in err, err
    d = _diff(cv2.imread(str(tmp_path / "b.png")), ref)
    assert d.mean() < 0.05 and d.max() <= 1
    # ... and --max-faces caps them, largest first.
    stats = tmp_path / "s.json"
    rc, err = _convert(src, tmp_path / "c.png", capfd, "--min-face", "0", "--max-faces", "2",
                       "--stats-json", str(stats))
    assert rc == 0, err
    data = json.loads(stats.read_text())
    assert data["items"][0]["faces"]["faces"] == 2
    assert data["settings"]["max_faces"] == 2 and data["settings"]["faces"] == "auto"


def test_faces_off_gives_the_official_full_frame_flow(golden_dir, tmp_path, capfd):
    rc, err = _convert(golden_dir / "flow" / "luciano.png", tmp_path / "o.png", capfd,
                       "--faces", "off")
    assert rc == 0 and "faces off" in err and "pasted" not in err, err
    d = _diff(cv2.imread(str(tmp_path / "o.png")),
              cv2.imread(str(golden_dir / "flow" / "luciano__anime.png")))
    assert d.max() <= 1


# --- the detector missing -------------------------------------------------------------------

@pytest.fixture
def store_without_detector(models_dir, tmp_path) -> Path:
    root = tmp_path / "store"
    (root / "dctnet").mkdir(parents=True)
    for name in ("cartoon_anime_bg.pb", "alpha.jpg"):
        (root / "dctnet" / name).symlink_to(models_dir / "dctnet" / name)
    return root


def test_faces_on_without_the_detector_is_one_line_naming_the_fetch_command(
        store_without_detector, golden_dir, tmp_path, capfd):
    dst = tmp_path / "out.png"
    rc, err = _convert(golden_dir / "flow" / "luciano.png", dst, capfd, "--faces", "on",
                       "--models", str(store_without_detector))
    assert rc == 1
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert "face/yunet.onnx" in err and "python -m streamer.models fetch face" in err
    assert not dst.exists() and not list(tmp_path.glob(".out*"))


def test_faces_auto_without_the_detector_notes_it_and_runs_the_full_frame_flow(
        store_without_detector, golden_dir, tmp_path, capfd):
    dst = tmp_path / "out.png"
    rc, err = _convert(golden_dir / "flow" / "luciano.png", dst, capfd,
                       "--models", str(store_without_detector))
    assert rc == 0, err
    assert "note: faces off: the face detector is not installed" in err
    assert _diff(cv2.imread(str(dst)), cv2.imread(str(golden_dir / "flow" / "luciano__anime.png"))).max() <= 1


# --- settings ---------------------------------------------------------------------------------

def test_yaml_on_and_off_are_read_as_face_modes(tmp_path):
    preset = tmp_path / "p.yaml"
    preset.write_text("faces: on\nmax-faces: 3\nsmooth-cutoff: 1\n")
    s = build_settings(VideoSettings, str(preset))
    assert (s.faces, s.max_faces, s.smooth_cutoff) == ("on", 3, 1.0)
    preset.write_text("faces: off\n")
    assert build_settings(LiveSettings, str(preset)).faces == "off"
    preset.write_text("faces: sometimes\n")
    with pytest.raises(ConfigError, match="faces must be auto, on or off"):
        build_settings(VideoSettings, str(preset))
    preset.write_text("fade: soon\n")
    with pytest.raises(ConfigError, match="fade must be a number"):
        build_settings(VideoSettings, str(preset))


def test_faces_default_on_everywhere_including_the_cpu_live_preset():
    assert build_settings(VideoSettings).faces == "auto"
    assert build_settings(LiveSettings).faces == "auto"
    assert build_settings(LiveSettings, "live-720p").faces == "auto"
    # on a CPU the face-first scheduler gives the background what the heads leave
    cpu = build_settings(LiveSettings, "live-cpu")
    assert cpu.faces == "auto" and cpu.schedule == "face-first" and cpu.work_auto


def test_tracking_settings_reach_the_tracker():
    s = build_settings(VideoSettings, None, {"detect_every": 3, "smooth_cutoff": 0.8,
                                             "smooth_beta": 2.0, "fade": 0.5, "max_faces": 4,
                                             "min_face": 30})
    t = s.tracker_settings()
    assert (t.detect_every, t.min_cutoff, t.beta, t.fade_s, t.max_faces, t.min_face) == \
        (3, 0.8, 2.0, 0.5, 4, 30)
    assert t.propagate and t.smooth
    official = build_settings(VideoSettings, None, {"tracking": False}).tracker_settings()
    assert official.detect_every == 1 and not official.propagate and not official.smooth
    assert official.fade_s == 0


@pytest.mark.parametrize("argv, words", [
    (["--detect-every", "0"], "--detect-every: must be a whole number from 1"),
    (["--max-faces", "0"], "--max-faces: must be a whole number from 1"),
    (["--min-face", "-1"], "--min-face: must be a whole number from 0"),
    (["--smooth-cutoff", "0"], "--smooth-cutoff: must be a number above 0"),
])
def test_bad_face_options_are_one_line_errors(golden_dir, tmp_path, capfd, argv, words):
    dst = tmp_path / "o.png"
    rc, err = _convert(golden_dir / "flow" / "luciano.png", dst, capfd, *argv)
    assert rc == 2 and err.count("\n") == 1 and words in err, err  # usage: exit 2
    assert not dst.exists()


# --- clips ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def event_clip(media_dir, tmp_path_factory) -> Path:
    """The first 12 frames of the event clip (one face over the official size limit)."""
    out = tmp_path_factory.mktemp("clip") / "event12.mp4"
    with av.open(str(media_dir / "event_640x480.mp4")) as src, av.open(str(out), "w") as dst:
        v = dst.add_stream("libx264", rate=src.streams.video[0].average_rate)
        v.width, v.height, v.pix_fmt = 640, 480, "yuv420p"
        for i, frame in enumerate(src.decode(video=0)):
            if i == 12:
                break
            for packet in v.encode(av.VideoFrame.from_ndarray(frame.to_ndarray(format="bgr24"),
                                                              format="bgr24")):
                dst.mux(packet)
        for packet in v.encode():
            dst.mux(packet)
    return out


@pytest.mark.parametrize("tracking", [[], ["--no-tracking"]])
def test_a_clip_keeps_its_face_in_every_frame(event_clip, tmp_path, capfd, tracking):
    dst = tmp_path / "out.mp4"
    stats = tmp_path / "s.json"
    rc, err = _convert(event_clip, dst, capfd, "--size", "240", "--stats-json", str(stats),
                       *tracking)
    assert rc == 0, err
    data = json.loads(stats.read_text())
    item = data["items"][0]
    assert item["frames"] == 12 and item["faces"]["faces"] == 12
    assert item["faces"]["head_s"] > 0 and item["faces"]["face_path_s"] > 0
    assert data["settings"]["tracking"] is (not tracking)
    with av.open(str(dst)) as c:
        assert sum(1 for _ in c.decode(video=0)) == 12


# --- live ----------------------------------------------------------------------------------

def test_live_heads_are_cut_from_and_pasted_at_the_output_size(models_dir, golden_dir):
    """The background runs at a small working size and is enlarged; the head is cut from the
    output-size frame, so inside the head mask the live result is the full-size one."""
    store = open_store(models_dir)
    settings = EngineSettings(device="cpu", precision="exact")
    full = StyleFlows(store, settings, faces="on").flow("anime", ring=2)
    live_flow = FaceAwareFlow(full.bg.engine, full.head_engine, store.file_path("yunet.onnx"),
                              store.file_path("alpha.jpg"), short_side=144, ring=2)
    img = cv2.imread(str(golden_dir / "flow" / "luciano.png"))
    h, w = img.shape[:2]
    work = working_size(w, h, 144)
    toon = LiveToon(lambda style: live_flow, "anime", work, (w, h), ring=2)
    got = toon([img], [0.0])[0]
    want = full([img], [0.0])[0]
    assert toon.faces_pasted == 1 and len(full.last_faces[0]) == 1
    face = full.last_faces[0][0]
    mask = cv2.warpAffine(load_head_mask(store.file_path("alpha.jpg")), face.m_inv, (w, h))
    inside, outside = mask >= 0.999, mask == 0
    assert inside.sum() > 5000
    assert _diff(got, want)[inside].max() <= 1
    # Outside the head the live result is the enlarged small background, not the full one.
    plain = LiveToon(lambda style: FullFrameFlow(full.bg.engine, 144, 2), "anime", work,
                     (w, h), ring=2)([img], [0.0])[0]
    assert _diff(got, plain)[outside].max() == 0
    assert _diff(got, want)[outside].mean() > 2


def _live(models_dir, source: Path, stats: Path, *extra: str) -> tuple[int, list[str], dict]:
    lines: list[str] = []
    rc = live_app.main(["--models", str(models_dir), "--config", "live-cpu", "--source",
                        str(source), "--work", "64", "--sink", "null", "--status-every", "0",
                        "--no-commands", "--stats-json", str(stats), *extra],
                       log=lines.append)
    return rc, lines, json.loads(stats.read_text()) if stats.exists() else {}


def test_run_stream_pastes_faces_when_on_and_not_when_off(models_dir, event_clip, tmp_path):
    rc, lines, data = _live(models_dir, event_clip, tmp_path / "on.json", "--faces", "on")
    assert rc == 0, lines
    assert any("faces on" in line for line in lines), lines
    assert data["frames_out"] > 0 and data["faces_pasted"] >= 1
    rc, lines, data = _live(models_dir, event_clip, tmp_path / "off.json", "--faces", "off")
    assert rc == 0, lines
    assert any("; faces off" in line for line in lines), lines
    assert data["faces_pasted"] == 0


def test_a_stream_that_changes_size_starts_its_face_tracks_again(models_dir, golden_dir):
    flow = StyleFlows(open_store(models_dir), EngineSettings(device="cpu", precision="exact"),
                      faces="on").flow("anime", ring=2)
    img = cv2.imread(str(golden_dir / "flow" / "luciano.png"))
    small = cv2.resize(img, (img.shape[1] * 3 // 4, img.shape[0] * 3 // 4),
                       interpolation=cv2.INTER_AREA)
    for i, frame in enumerate([img, img, small, small, img]):
        out = flow([frame], [i / 30])[0]
        assert out.shape == frame.shape
        assert len(flow.last_faces[0]) == 1


# --- inputs over 640 px: the official compound result -----------------------------------------


def official_compound(img: np.ndarray, engine, yunet: Path, alpha: Path) -> np.ndarray:
    """The official compound algorithm (golden/compound/README.md) with YuNet's points: the
    short side reduced to 720, faces detected on that working image, bg model, heads warped,
    stylised and blended there, then the result resized back."""
    from streamer.toon.faces.align import similarity_transform, warp_crop
    from streamer.toon.faces.compose import paste_head
    from streamer.toon.flow import work_size

    h, w = img.shape[:2]
    wh, ww = work_size(h, w)
    work = img if (wh, ww) == (h, w) else cv2.resize(img, (ww, wh), interpolation=cv2.INTER_AREA)
    det = cv2.FaceDetectorYN.create(str(yunet), "", (ww, wh), 0.6, 0.3, 100)
    _, faces = det.detect(work)
    faces = faces[np.argsort(-(faces[:, 2] * faces[:, 3]), kind="stable")]
    faces = [f for f in faces if (f[2:4] > 60).any()][:10]  # the official size rule
    assert faces, "the test portrait must show a face"
    out = FullFrameFlow(engine)([work])[0].copy()
    mask = load_head_mask(alpha)
    for f in faces:
        m, m_inv = similarity_transform(f[4:14].reshape(5, 2).astype(np.float64))
        head = engine.run(warp_crop(work, m)[None])[0]
        paste_head(out, head, m_inv, mask)
    return out if (wh, ww) == (h, w) else cv2.resize(out, (w, h))


@pytest.mark.slow
@pytest.mark.parametrize("side", [720, 960])
def test_a_portrait_over_640_px_matches_the_official_compound_result(
        tmp_path, capfd, models_dir, golden_dir, side):
    # 720: the detector used to see a 640 px copy (points off by up to 7 px, heads off by
    # up to 139 levels); 960: larger than the official working size as well.
    from streamer.toon.engine import create_engine

    img = cv2.resize(cv2.imread(str(golden_dir / "flow" / "luciano.png")), (side, side),
                     interpolation=cv2.INTER_CUBIC)
    src = tmp_path / "portrait.png"
    cv2.imwrite(str(src), img)
    rc, log = run(capfd, src, "-o", tmp_path / "out.png", "--device", "cpu")
    assert rc == 0, log
    store = open_store(models_dir)
    engine = create_engine(lambda p: store.onnx_model_path("anime", "bg", p),
                           EngineSettings(device="cpu", precision="exact"))
    ref = official_compound(img, engine, models_dir / "face" / "yunet.onnx",
                            models_dir / "dctnet" / "alpha.jpg")
    out = cv2.imread(str(tmp_path / "out.png"))
    d = np.abs(out.astype(np.int16) - ref)
    assert d.max() <= 1 and d.mean() < 0.05, (d.max(), d.mean())
    assert "1 face(s) pasted" in log and "detection on the official working image" in log

"""The temporal step: flicker goes, nothing trails, cuts and new faces start fresh, and the
live and offline paths give the same frames (streamer/toon/temporal.py)."""
from __future__ import annotations

import av
import cv2
import numpy as np
import pytest

from streamer.config import ConfigError, VideoSettings, build_settings
from streamer.live.toon import LiveToon, style_factory
from streamer.models import open_store
from streamer.report import Log
from streamer.toon.engine import EngineSettings
from streamer.toon.faces.flow import FaceAwareFlow
from streamer.toon.flow import FullFrameFlow
from streamer.toon.styles import StyleFlows
from streamer.toon.motion import DIS_PRESETS, Motion, dis_flow, remap_maps, warp
from streamer.toon.temporal import FrameTemporal, HeadTemporal, TemporalFlow, TemporalSettings
from streamer.video.app import main as run_video
from streamer.video.convert import Job


def _diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-pixel max |difference| over the channels."""
    return np.abs(a.astype(np.int16) - b.astype(np.int16)).max(axis=-1)


@pytest.fixture(scope="module")
def flows(models_dir) -> StyleFlows:
    return StyleFlows(open_store(models_dir), EngineSettings(device="cpu"), faces="off",
                      temporal=TemporalSettings())


def _moving_object_clip(n: int = 9, cut: int = 5, h: int = 96, w: int = 160, step: int = 24,
                        size: int = 28):
    """A static textured background, a striped square crossing it `step` px a frame (faster
    than the flow can follow), and at frame `cut` a new shot (another background)."""
    def background(seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        return cv2.resize(rng.integers(0, 255, (12, 20, 3), dtype=np.uint8), (w, h),
                          interpolation=cv2.INTER_CUBIC)

    shots = background(1), background(2)
    obj = np.empty((size, size, 3), np.uint8)
    obj[:] = (40, 40, 230)
    obj[::4] = (250, 250, 60)
    frames, masks = [], []
    for t in range(n):
        frame = shots[t >= cut].copy()
        x = 4 + step * (t if t < cut else t - cut)
        mask = np.zeros((h, w), bool)
        frame[30:30 + size, x:x + size] = obj
        mask[30:30 + size, x:x + size] = True
        frames.append(frame)
        masks.append(mask)
    return frames, masks


def test_no_trails_fresh_pixels_and_the_frame_after_a_cut_are_the_models_own(flows):
    frames, masks = _moving_object_clip()
    per_frame = flows.flow("anime", ring=2, temporal=False)
    steady = flows.flow("anime", ring=2)
    assert isinstance(steady, TemporalFlow) and isinstance(per_frame, FullFrameFlow)
    per, out = [], []
    for frame in frames:
        per.append(per_frame([frame])[0].copy())
        out.append(steady([frame])[0].copy())
    assert _diff(out[0], per[0]).max() == 0  # a first frame has nothing to blend
    for t in range(1, len(frames)):
        d = _diff(out[t], per[t])
        if t == 5:  # the first frame of the new shot: nothing of the old one
            assert d.max() <= 1, t
            continue
        # Pixels the object newly covers, and background it uncovers: new content, drawn
        # as the model drew it (a trail would show the old content there).
        fresh = masks[t] ^ masks[t - 1]
        assert fresh.sum() > 100
        assert d[fresh].max() <= 1, (t, d[fresh].max())
    # ...while it did steady the rest: the model redraws the whole still background a little
    # as the object moves (its receptive field is large); the step holds it.
    far = np.zeros(frames[0].shape[:2], bool)
    far[72:] = True  # rows the object never reaches
    change_per = np.mean([_diff(per[t], per[t - 1])[far].mean() for t in (2, 3, 4, 7, 8)])
    change_out = np.mean([_diff(out[t], out[t - 1])[far].mean() for t in (2, 3, 4, 7, 8)])
    assert change_out < 0.7 * change_per, (change_out, change_per)


def test_a_still_scene_with_noisy_output_comes_out_steadier():
    # Any stylizer's per-frame output on a still scene: the same picture with small
    # per-frame noise. The temporal step needs nothing but the frames and outputs.
    rng = np.random.default_rng(7)
    frame = cv2.resize(rng.integers(0, 255, (9, 16, 3), dtype=np.uint8), (128, 72),
                       interpolation=cv2.INTER_CUBIC)
    clean = cv2.GaussianBlur(frame, (5, 5), 0)
    step = FrameTemporal(TemporalSettings())
    noisy, out = [], []
    for _ in range(12):
        p = np.clip(clean + rng.normal(0, 3, clean.shape), 0, 255).astype(np.uint8)
        noisy.append(p.copy())
        step([frame], [p])
        out.append(p)

    def flicker(seq):
        return np.mean([np.abs(seq[t].astype(float) - seq[t - 1]).mean()
                        for t in range(4, len(seq))])

    assert flicker(out) < 0.6 * flicker(noisy), (flicker(out), flicker(noisy))
    # steadier AND closer to the noise-free picture, not just smoothed towards something else
    assert np.abs(out[-1].astype(float) - clean).mean() < np.abs(noisy[-1].astype(float) - clean).mean()


def test_strength_zero_changes_nothing():
    rng = np.random.default_rng(1)
    frame = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
    step = FrameTemporal(TemporalSettings(strength=0.0))
    for _ in range(3):
        p = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
        q = p.copy()
        step([frame], [q])
        assert np.array_equal(p, q)


def test_the_shared_warp_carries_an_image_along_the_motion():
    # The helper the live path's background reuse can share: flow once, warp anything.
    rng = np.random.default_rng(2)
    big = cv2.resize(rng.integers(0, 255, (20, 30, 3), dtype=np.uint8), (330, 220),
                     interpolation=cv2.INTER_CUBIC)
    prev, cur = big[10:190, 10:330], big[10:190, 4:324]  # the content moves 6 px right
    motion = Motion(side=160)
    assert motion.update(prev) is None  # a first frame
    step = motion.update(cur)
    maps, ok = remap_maps(step, cur.shape[:2])
    carried = warp(prev, maps)
    inner = (slice(20, -20), slice(20, -20))
    assert ok[inner].mean() > 0.9
    # the warp explains most of the change (the flow runs on a 160x90 copy)
    assert _diff(carried, cur)[inner].mean() < 0.3 * _diff(prev, cur)[inner].mean()


def _shifted(img: np.ndarray, dx: float) -> np.ndarray:
    """`img` moved `dx` px to the right (bilinear, edges replicated)."""
    m = np.float32([[1, 0, dx], [0, 1, 0]])
    return cv2.warpAffine(img, m, (img.shape[1], img.shape[0]), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)


def test_a_head_is_steadied_along_its_own_motion_and_a_mouth_that_opens_is_drawn_fresh():
    """Head crops whose content moves inside the crop (a face turning: 2 px a frame), with a
    stand-in head model that redraws them with a little noise each frame: the step holds
    the redrawn texture along the crop's own motion (no frame flow is given: only whether
    to carry on), and where the content changes (a dark mouth opening at frame 5) the head
    is the model's own drawing, no trail of the closed mouth."""
    rng = np.random.default_rng(5)
    face = cv2.resize(rng.integers(40, 215, (18, 18, 3), dtype=np.uint8), (320, 288),
                      interpolation=cv2.INTER_CUBIC)
    step = HeadTemporal(TemporalSettings())
    mouth = (slice(190, 222), slice(110, 180))
    clean, raw, out = [], [], []
    for t in range(9):
        crop = np.ascontiguousarray(_shifted(face, 2.0 * t)[:, 16:304])
        if t >= 5:
            crop[mouth] = (30, 20, 60)
        drawn = cv2.GaussianBlur(crop, (5, 5), 0)  # what a flicker-free model would draw
        head = np.clip(drawn + rng.normal(0, 4, drawn.shape), 0, 255).astype(np.uint8)
        raw.append(head.copy())
        step([7], [crop], [head], [t > 0])
        clean.append(drawn)
        out.append(head)
    assert np.array_equal(out[0], raw[0])  # a first frame has nothing to blend
    # where the mouth opened: the model's drawing as it is
    assert _diff(out[5], raw[5])[mouth].max() <= 1
    inner = (slice(20, -20), slice(20, -20))

    def error(seq):
        return np.mean([np.abs(seq[t].astype(float) - clean[t])[inner].mean()
                        for t in (2, 3, 4, 7, 8)])
    # steadier, and closer to the noise-free drawing, although the face moves in the crop
    assert error(out) < 0.7 * error(raw), (error(out), error(raw))
    assert step.blended > 0


def test_a_head_starts_fresh_when_told_and_a_new_track_starts_fresh():
    rng = np.random.default_rng(6)
    crop = cv2.resize(rng.integers(0, 255, (9, 9, 3), dtype=np.uint8), (288, 288),
                      interpolation=cv2.INTER_CUBIC)
    step = HeadTemporal(TemporalSettings())
    first = rng.integers(0, 255, (288, 288, 3), dtype=np.uint8)
    step([1], [crop], [first.copy()], [True])
    for tid, go_on in ((1, False), (2, True)):  # a cut; another face
        head = rng.integers(0, 255, (288, 288, 3), dtype=np.uint8)
        kept = head.copy()
        step([tid], [crop], [head], [go_on])
        assert np.array_equal(head, kept)


def test_the_flow_presets_and_their_checks():
    assert {"fast", "fine", "medium"} <= set(DIS_PRESETS)
    assert dis_flow("fine").getFinestScale() == dis_flow("fast").getFinestScale() - 1
    with pytest.raises(ValueError, match="flow preset"):
        TemporalSettings(flow_preset="slow")
    with pytest.raises(ValueError, match="flow preset"):
        TemporalSettings(head_flow_preset="slow")
    with pytest.raises(ValueError, match="at least 16"):
        TemporalSettings(head_flow_side=8)


def _face_clip(path, luciano: np.ndarray, n: int = 6, w: int = 320, h: int = 240) -> None:
    """A head and shoulders drifting 2 px a frame over a plain wall, as an H.264 file."""
    face = cv2.resize(luciano, (200, 200), interpolation=cv2.INTER_AREA)
    with av.open(str(path), "w") as dst:
        v = dst.add_stream("libx264", rate=24)
        v.width, v.height, v.pix_fmt = w, h, "yuv420p"
        for t in range(n):
            frame = np.full((h, w, 3), (200, 210, 190), np.uint8)
            frame[20:220, 40 + 2 * t:240 + 2 * t] = face
            for packet in v.encode(av.VideoFrame.from_ndarray(frame, format="bgr24")):
                dst.mux(packet)
        for packet in v.encode():
            dst.mux(packet)


def test_live_and_offline_give_the_same_frames(models_dir, media_dir, tmp_path):
    clip = tmp_path / "face.mp4"
    _face_clip(clip, cv2.imread(str(media_dir / "luciano.png")))
    with av.open(str(clip)) as c:
        decoded = [(f.to_ndarray(format="bgr24"), float(f.time)) for f in c.decode(video=0)]
    settings = build_settings(VideoSettings, None, {"models": str(models_dir), "device": "cpu",
                                                    "faces": "on"})
    assert settings.temporal == "on"  # the default
    shared = StyleFlows.from_settings(settings)
    # run_video's path: the job's stylise callable, fed in order as its toon stage feeds it
    offline = Job(settings, Log(), flows=shared).stylise(ring=2, fps=24.0)
    assert isinstance(offline, FaceAwareFlow) and offline.frame_temporal is not None
    # run_stream's path at the same working and output size, warmed up as the app does
    live = LiveToon(style_factory(shared, (320, 240), 24.0), "anime", (320, 240), (320, 240),
                    ring=2)
    live.warm_up()
    faces = 0
    for img, t in decoded:
        a = offline([img], [t])[0].copy()
        b = live([img], [t])[0].copy()
        faces += len(offline.last_faces[0])
        assert _diff(a, b).max() <= 1
    assert faces == len(decoded)  # the heads (and their temporal step) ran on every frame
    assert offline.head_temporal.blended > 0 and offline.frame_temporal.blended > 0


def test_a_new_face_is_pasted_as_the_model_drew_it(models_dir, media_dir):
    # Frames 0-2 a plain wall, then a face walks in: its first frame gets no old head.
    store = open_store(models_dir)
    flows = StyleFlows(store, EngineSettings(device="cpu"), faces="on",
                       temporal=TemporalSettings())
    face = cv2.resize(cv2.imread(str(media_dir / "luciano.png")), (160, 160),
                      interpolation=cv2.INTER_AREA)
    frames = []
    for t in range(5):
        frame = np.full((240, 320, 3), (200, 210, 190), np.uint8)
        if t >= 3:
            frame[40:200, 80 + 2 * t:240 + 2 * t] = face
        frames.append(frame)
    plain = flows.flow("anime", ring=2, temporal=False)
    steady = flows.flow("anime", ring=2)
    for t, frame in enumerate(frames):
        a = plain([frame], [t / 24])[0].copy()
        b = steady([frame], [t / 24])[0].copy()
        if t == 3:
            assert steady.last_faces[0], "the face was found"
            region = np.zeros(frame.shape[:2], bool)
            region[40:200, 86:246] = True
            assert _diff(a, b)[region].max() <= 1


@pytest.mark.parametrize("argv, words", [
    (["--temporal-strength", "2"], "--temporal-strength: must be a number from 0 to 1"),
    (["--temporal-strength", "-0.5"], "--temporal-strength: must be a number from 0 to 1"),
])
def test_bad_temporal_options_are_one_line_errors(models_dir, golden_dir, tmp_path, capfd,
                                                  argv, words):
    dst = tmp_path / "o.png"
    rc = run_video([str(golden_dir / "flow" / "luciano.png"), "-o", str(dst), "--models",
                    str(models_dir), *argv])
    err = capfd.readouterr().err
    # a value out of the option's range is a usage error: exit 2 (README, exit codes)
    assert rc == 2 and err.count("\n") == 1 and words in err, err
    assert not dst.exists()


def test_temporal_settings_reach_the_flows(models_dir, tmp_path):
    s = build_settings(VideoSettings, None, {"temporal_strength": 0.4, "models": str(models_dir)})
    assert s.temporal_settings().strength == 0.4
    assert build_settings(VideoSettings, None, {"temporal": "off"}).temporal_settings() is None
    preset = tmp_path / "p.yaml"
    preset.write_text("temporal: off\n")  # YAML reads off as a boolean: taken as the word
    assert build_settings(VideoSettings, str(preset)).temporal == "off"
    with pytest.raises(ConfigError, match="temporal must be on or off"):
        build_settings(VideoSettings, None, {"temporal": "maybe"})
    flows = StyleFlows.from_settings(build_settings(
        VideoSettings, None, {"models": str(models_dir), "device": "cpu", "faces": "off",
                              "temporal_strength": 0.4}))
    flow = flows.flow("anime", ring=1)
    assert isinstance(flow, TemporalFlow) and flow.temporal.settings.strength == 0.4
    assert isinstance(flows.flow("anime", ring=1, temporal=False), FullFrameFlow)


def test_the_web_pages_steady_switch_reaches_the_webcam_and_video_flows(models_dir):
    pytest.importorskip("gradio")
    from streamer.web.service import ToonService

    service = ToonService(models=str(models_dir), device="cpu",
                          face_options={"temporal_strength": 0.5})
    try:
        assert service.temporal_default  # on, as run_video
        frame = np.full((120, 160, 3), 200, np.uint8)
        service.webcam(frame, "anime", faces=False, session="a")
        assert service._live["a"][1].current.temporal.settings.strength == 0.5
        service.webcam(frame, "anime", faces=False, session="b", temporal=False)
        assert isinstance(service._live["b"][1].current, FullFrameFlow)
        assert service.settings("anime", False, temporal=False).temporal == "off"
        assert service.settings("anime", False).temporal == "on"
    finally:
        service.close()

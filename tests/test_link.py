"""The toon chain's link contract (streamer/toon/link.py): every link answers reset, warm-up,
timings, its face layer and what it needs, whatever wraps it; the face count survives every
background treatment."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from streamer.models import Store
from streamer.toon.background import BackgroundFlow, parse_background
from streamer.toon.engine import EngineSettings
from streamer.toon.faces.flow import FaceAwareFlow
from streamer.toon.flow import FullFrameFlow
from streamer.toon.link import Link, Timings, WrappingLink
from streamer.toon.styles import StyleFlows
from streamer.toon.temporal import TemporalFlow, TemporalSettings

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def flows(models_dir) -> StyleFlows:
    return StyleFlows(Store(models_dir), EngineSettings(device="cpu"), faces="on",
                      temporal=TemporalSettings())


@pytest.fixture(scope="module")
def closeup(media_dir) -> list[np.ndarray]:
    """Four frames of the film clip's close-up (one face, well over the 60 px minimum)."""
    av = pytest.importorskip("av")
    frames = []
    with av.open(str(media_dir / "tears_640x360.mp4")) as c:
        for i, f in enumerate(c.decode(video=0)):
            if i >= 70:
                break
            if i >= 66:
                frames.append(f.to_ndarray(format="bgr24"))
    return frames


class Doubling(Link):
    """A stand-in first link: counts frames and resets into its own timings."""

    def __init__(self) -> None:
        super().__init__()
        self.resets = 0

    def __call__(self, images, times=None):
        self.timings.frames += len(images)
        return [np.ascontiguousarray(img) for img in images]

    def reset(self) -> None:
        self.resets += 1


class Plus(WrappingLink):
    def __call__(self, images, times=None):
        return self.inner(images, times)


def test_the_defaults_say_a_link_has_no_faces_needs_nothing_and_keeps_its_own_timings():
    link = Doubling()
    assert link.face_layer is None
    assert not link.needs_mask and not link.needs_motion
    assert isinstance(link.timings, Timings)
    link.warm_up(32, 16)  # runs once on a blank frame, then forgets it
    assert link.timings.frames == 1 and link.resets == 1


def test_a_wrapping_link_answers_for_the_chain_below_it():
    inner = Doubling()
    outer = Plus(Plus(inner))
    assert outer.timings is inner.timings
    outer([np.zeros((8, 8, 3), np.uint8)] * 3)
    assert outer.timings.frames == 3
    outer.reset()
    assert inner.resets == 1
    outer.warm_up(8, 8)
    assert inner.resets == 2 and inner.timings.frames == 4


@pytest.mark.parametrize("faces", [False, True])
@pytest.mark.parametrize("temporal", [False, True])
@pytest.mark.parametrize("background", ["keep", "blur", "transparent"])
def test_every_chain_the_composition_layer_builds_answers_the_contract(flows, faces, temporal,
                                                                      background):
    chain = flows.flow("anime", faces=faces, temporal=temporal,
                       background=parse_background(background))
    assert isinstance(chain, Link)
    assert isinstance(chain.face_layer, FaceAwareFlow) == faces
    assert chain.needs_mask == (background != "keep")
    assert chain.needs_motion == temporal
    if background != "keep":
        assert isinstance(chain, BackgroundFlow)
        assert chain.timings is chain.inner.timings
    elif faces:
        assert chain.face_layer is chain
    else:
        assert isinstance(chain, TemporalFlow if temporal else FullFrameFlow)


def test_warm_up_leaves_no_trace_in_the_temporal_step_or_the_tracks(flows, closeup):
    """A warmed-up chain gives the first frame exactly what a fresh chain gives it."""
    small = [np.ascontiguousarray(f[::2, ::2]) for f in closeup[:2]]
    fresh = flows.flow("anime", faces=True, temporal=True, background=parse_background("blur"))
    want = [np.array(img) for img in fresh(small[:1], [0.0])]
    warmed = flows.flow("anime", faces=True, temporal=True, background=parse_background("blur"))
    warmed.warm_up(320, 180)
    got = warmed(small[:1], [0.0])
    np.testing.assert_array_equal(got[0], want[0])


def test_timings_count_the_treatment_and_the_faces_through_the_background_link(flows, closeup):
    chain = flows.flow("anime", faces=True, temporal=False, background=parse_background("blur"))
    chain(closeup[:2], [0.0, 1 / 24])
    t = chain.timings
    assert t is chain.face_layer.timings
    assert t.frames == 2 and t.faces >= 2
    assert t.treatment_s > 0 and t.bg_s > 0 and t.head_s > 0


def _clip(path: Path, frames: list[np.ndarray]) -> Path:
    import av

    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=24)
        s.width, s.height, s.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        for img in frames:
            for packet in s.encode(av.VideoFrame.from_ndarray(img, format="bgr24")):
                c.mux(packet)
        for packet in s.encode():
            c.mux(packet)
    return path


def test_run_video_counts_the_same_faces_with_every_background(closeup, tmp_path):
    clip = _clip(tmp_path / "closeup.mp4", closeup)
    counts = {}
    for background in ("keep", "blur", "color:#00ff00"):
        stats = tmp_path / f"{background[:4]}.json"
        res = subprocess.run([sys.executable, str(ROOT / "run_video.py"), str(clip), "-o",
                              str(tmp_path / f"{background[:4]}.mp4"), "--background",
                              background, "--faces", "on", "--stats-json", str(stats), "-y"],
                             cwd=ROOT, capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, res.stderr
        assert "face(s) pasted" in res.stdout + res.stderr
        counts[background] = json.loads(stats.read_text())["items"][0]["faces"]["faces"]
    assert counts["keep"] >= len(closeup)
    assert counts["blur"] == counts["keep"] == counts["color:#00ff00"]

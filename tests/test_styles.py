"""The composition layer: one place turns settings into a style's stylise callable for every
app, and engines are started once and shared."""
from __future__ import annotations

import pytest

from streamer.config import LiveSettings, VideoSettings
from streamer.models import UnknownModel, open_store
from streamer.toon.engine import EngineSettings
from streamer.toon.faces.flow import FaceAwareFlow
from streamer.toon.flow import FullFrameFlow
from streamer.toon.styles import StyleFlows


@pytest.fixture(scope="module")
def flows(models_dir) -> StyleFlows:
    return StyleFlows(open_store(models_dir), EngineSettings(device="cpu"), faces="auto")


def test_faces_on_and_off_share_the_styles_engine(flows):
    on = flows.flow("anime", faces=True, ring=1)
    off = flows.flow("anime", faces=False, ring=1)
    assert isinstance(on, FaceAwareFlow) and isinstance(off, FullFrameFlow)
    assert on.bg.engine is off.engine is flows.engine("anime")
    # the store holds one set of weights for anime: the head runs on the same engine
    assert on.head_engine is flows.engine("anime")


def test_every_flow_is_new_but_engines_are_started_once(flows):
    a, b = flows.flow("3d", ring=1), flows.flow("3d", ring=1)
    assert a is not b and a.bg.engine is b.bg.engine  # tracks never carry over
    assert flows.started("handdrawn") is None  # nothing starts before it is asked for


def test_an_unknown_style_lists_the_styles(flows):
    with pytest.raises(UnknownModel, match="anime"):
        flows.engine("pixar")


def test_the_apps_settings_flow_into_the_tracker(models_dir):
    video = VideoSettings(models=str(models_dir), device="cpu", detect_every=3,
                          smooth_cutoff=0.7, faces="on")
    live = LiveSettings(models=str(models_dir), device="cpu", tracking=False, faces="on")
    vf = StyleFlows.from_settings(video).flow("anime", ring=1)
    lf = StyleFlows.from_settings(live).flow("anime", ring=1)
    assert vf.tracker.settings.detect_every == 3 and vf.tracker.settings.min_cutoff == 0.7
    assert lf.tracker.settings.detect_every == 1 and not lf.tracker.settings.smooth


def test_the_web_pages_webcam_follows_the_tracker_options(models_dir):
    pytest.importorskip("gradio")
    import numpy as np

    from streamer.web.service import ToonService

    # webcam precision exact, as the page's: auto gives the webcam the measured fastest
    # candidate's engines of its own (tests/test_web.py)
    service = ToonService(models=str(models_dir), device="cpu", webcam_precision="exact",
                          face_options={"detect_every": 2, "smooth_beta": 1.5})
    try:
        frame = np.full((120, 160, 3), 200, np.uint8)
        service.webcam(frame, "anime", faces=True, session="s")
        toon = service._live["s"][1]
        settings = toon.current.tracker.settings
        assert settings.detect_every == 2 and settings.beta == 1.5
        # at one precision, photos, videos and the webcam share the page's one engine per style
        assert toon.current.bg.engine is service.flows.engine("anime")
    finally:
        service.close()

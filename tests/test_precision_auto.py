"""`--precision auto` (live/precision.py): the candidates this machine and store have are
timed side by side on the real model and checked on a real face; the fastest that keeps the
face wins, a re-measure moves only for a clear gain, and a move rebuilds the style on the
new engines without stopping the stream.

No test asserts a wall-clock time: they check that the choice agrees with what was measured."""
from __future__ import annotations

import json
import threading

import numpy as np
import pytest

from streamer.live import app
from streamer.live.precision import (FACE_SSIM, SWITCH_GAIN, Measured, PrecisionChooser,
                                     engine_shapes, int8_unavailable, pick, ssim)
from streamer.live.switch import StyleSwitcher
from streamer.models import Store
from streamer.toon.engine import EngineSettings
from streamer.toon.styles import StyleFlows


def _m(label: str, head_ms: float, bg_ms: float, face: float = 0.99) -> Measured:
    return Measured(label, label, head_ms / 1e3, {144: bg_ms / 1e3, 288: 4 * bg_ms / 1e3}, face)


# --- the rule -------------------------------------------------------------------------------

def test_the_fastest_candidate_that_keeps_the_face_is_chosen():
    label, why = pick([_m("fast", 22, 10), _m("int8", 14, 8), _m("mobile", 5, 2)])
    assert label == "mobile" and "the fastest" in why


def test_a_faster_candidate_below_the_face_bound_is_never_chosen():
    label, why = pick([_m("fast", 22, 10), _m("int8", 14, 8, face=FACE_SSIM - 0.01)])
    assert label == "fast" and "int8 below the face bound" in why


def test_int8_slower_than_bf16_loses_to_it():  # the AMX case of the issue: int8 at 4x
    assert pick([_m("fast", 22, 10), _m("int8", 90, 40)])[0] == "fast"


def test_a_remeasure_moves_only_for_a_clear_gain():
    current = [_m("fast", 22, 10), _m("int8", 22 * SWITCH_GAIN + 1, 10 * SWITCH_GAIN + 1)]
    assert pick(current, current="fast")[0] == "fast"  # a little faster: stay
    much = [_m("fast", 22, 10), _m("int8", 11, 5)]
    assert pick(much, current="fast")[0] == "int8"


def test_without_faces_the_head_does_not_count():
    fast = Measured("fast", "bf16", 0.050, {144: 0.010}, 1.0, with_head=False)
    int8 = Measured("int8", "int8", 0.010, {144: 0.020}, 1.0, with_head=False)
    assert pick([fast, int8])[0] == "fast"


def test_ssim_is_one_for_the_same_image_and_falls_with_noise():
    rng = np.random.default_rng(0)
    ramp = np.linspace(40, 220, 64)
    img = np.repeat((ramp[:, None] + ramp[None, :] / 4)[..., None], 3, axis=2).astype(np.uint8)
    noisy = np.clip(img.astype(int) + rng.integers(-40, 41, img.shape), 0, 255).astype(np.uint8)
    assert ssim(img, img) == pytest.approx(1.0)
    assert ssim(img, noisy) < 0.9


# --- the real model ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def int8_store(models_dir, media_dir, tmp_path_factory):
    """A writable store over the shared weights with anime's int8 models built."""
    pytest.importorskip("nncf")
    pytest.importorskip("openvino")
    root = tmp_path_factory.mktemp("store")
    for sub in ("dctnet", "face"):
        if (models_dir / sub).is_dir():
            (root / sub).symlink_to(models_dir / sub)
    store = Store(root)
    store.calibration = str(media_dir / "tears_640x360.mp4")
    store.notify = lambda line: None
    for part in ("bg", "h"):
        store.onnx_model_path("anime", part, "int8")
    return store


def _flows(store, device: str = "openvino") -> StyleFlows:
    return StyleFlows(store, EngineSettings(device=device, precision="fast"), faces="on")


def test_auto_times_fast_and_the_built_int8_and_takes_the_faster_that_keeps_the_face(int8_store):
    lines: list[str] = []
    chooser = PrecisionChooser(_flows(int8_store), "anime",
                               lambda: engine_shapes((640, 360), (144, 288)),
                               int8_unavailable("openvino"), lines.append)
    measured = {m.label: m for m in chooser.choice.measured}
    assert set(measured) == {"fast", "int8"}
    assert measured["int8"].precision.startswith("int8")
    for m in measured.values():
        assert m.head_s > 0 and set(m.bg_s) == {144, 288} and m.bg_s[288] > m.bg_s[144]
    # fast is fp32 or bf16: the exact face within bf16's rounding
    assert measured["fast"].face_ssim > 0.97
    ok = [m for m in measured.values() if m.face_ssim >= FACE_SSIM]
    assert chooser.choice.label == min(ok, key=Measured.frame_s).label
    assert chooser.current.describe("anime") != "not started"  # its engines are kept
    assert any(line.startswith("precision auto: ") and "int8" in line for line in lines)
    # Measured again on engines of their own while the current ones keep running.
    before, old = chooser.current, chooser.choice.label
    before_engine = before.head_engine("anime")
    moved = chooser.remeasure("anime")
    assert {m.label for m in chooser.choice.measured} == {"fast", "int8"}
    if moved:  # the new choice's engines are the ones just measured, not the running ones
        assert chooser.choice.history[-1]["from"] == old and chooser.current is not before
    else:
        assert chooser.current is before and before.head_engine("anime") is before_engine
    # A style whose int8 model is not built runs on fast whatever the choice.
    chooser.choice.label = "int8"
    assert chooser.flows_for("3d") is dict(chooser.pool)["fast"]
    assert chooser.flows_for("anime") is dict(chooser.pool)["int8"]


def test_an_unbuilt_int8_is_left_out_with_the_command_that_builds_it(models_dir):
    pytest.importorskip("openvino")
    lines: list[str] = []
    chooser = PrecisionChooser(_flows(Store(models_dir)), "sketch",
                               lambda: engine_shapes((320, 180), (64,)), None, lines.append)
    assert [m.label for m in chooser.choice.measured] == ["fast"]
    assert any("int8 left out: not built for sketch" in line
               and "python -m streamer.models path sketch --precision int8" in line
               for line in lines), lines


def test_run_stream_auto_reports_what_it_measured_and_chose(int8_store, tmp_path):
    stats = tmp_path / "stats.json"
    lines: list[str] = []
    rc = app.main(["--models", str(int8_store.root), "--config", "live-cpu", "--synthetic",
                   "--camera-size", "320x180", "--sink", "null", "--seconds", "1.5",
                   "--no-commands", "--status-every", "0.5", "--stats-json", str(stats)],
                  log=lines.append)
    assert rc == 0, lines
    auto = json.loads(stats.read_text())["precision_auto"]
    assert {m["candidate"] for m in auto["measured"]} == {"fast", "int8"}
    assert auto["chosen"] in ("fast", "int8")
    assert all(m["head_ms"] > 0 and m["face_ssim"] > 0 for m in auto["measured"])
    status = [line for line in lines if line.startswith("[")]
    assert status and all(f"auto: {auto['chosen']}" in line for line in status), status


def test_offline_conversion_refuses_auto_in_one_line():
    from streamer.config import ConfigError, VideoSettings, build_settings
    with pytest.raises(ConfigError, match="precision auto is for live streams"):
        build_settings(VideoSettings, None, {"precision": "auto"})


# --- a move rebuilds the style without stopping ------------------------------------------------

class _Chain:
    face_layer = None

    def __init__(self, tag: str):
        self.tag = tag

    def warm_up(self, w: int, h: int) -> None:
        pass


def test_a_rebuild_swaps_in_the_current_style_built_again_and_drops_the_old_chains():
    built: list[str] = []
    engines = {"now": "fast"}

    def factory(style: str) -> _Chain:
        built.append(f"{style}/{engines['now']}")
        return _Chain(built[-1])

    events: list[str] = []
    sw = StyleSwitcher(factory, "anime", factory("anime"), lambda c: None, on_event=events.append)
    sw.switch("3d")
    assert sw.wait_idle(10) and sw.active.tag == "3d/fast"
    engines["now"] = "int8"
    sw.rebuild()
    assert sw.wait_idle(10)
    assert sw.style == "3d" and sw.active.tag == "3d/int8"
    assert any("3d rebuilt on the new engines" in e for e in events)
    assert [s["to"] for s in sw.switches] == ["3d"]  # a rebuild is not a style switch
    sw.switch("anime")  # the old anime chain was dropped: built again on int8
    assert sw.wait_idle(10) and sw.active.tag == "anime/int8"


def test_a_working_size_change_measures_again_off_the_toon_thread(models_dir):
    from streamer.live.toon import LiveToon

    seen: list[str] = []
    moved = threading.Event()

    class Chooser:
        class choice:  # noqa: N801 - the attribute the toon reads
            label = "fast"

        def remeasure(self, style: str) -> bool:
            seen.append(threading.current_thread().name)
            moved.set()
            return True

    toon = LiveToon(lambda style: _Chain(style), "anime", (64, 36), (64, 36),
                    precision=Chooser())
    rebuilt = []
    toon.styles.rebuild = lambda: rebuilt.append(True)
    toon._resize._ready = (96, 54)  # what WorkSizeChange hands over when a size is warm
    toon._apply_resize()
    assert moved.wait(10)
    toon.settle()
    assert seen == ["toonstream-precision"] and rebuilt == [True]
    toon._resize._ready = (64, 36)  # a second change soon after: not measured again
    toon._apply_resize()
    toon.settle()
    assert seen == ["toonstream-precision"]

"""The composition layer: settings in, a style's per-frame stylise callable out.

run_video, run_stream, the web page and the benchmarks all ask this one place for a style's
flow, so they all build it the same way: the official full-frame flow, or with faces on the
face-aware flow (background model, tracked heads through the head model). Engines are
started once per (style, part) and shared: between the flows of one style (every file of a
folder, every browser session of the web page), between faces on and off, and between a
style's background and head when the store holds one set of weights for both.

Nothing here reads arguments or prints on its own: the apps parse and report; a `log`
callable receives the one note this layer has to say (faces off because the detector is
missing).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from streamer.models import ModelNotInstalled, Store, UnknownModel, open_store

from .background import Background, BackgroundFlow, parse_background
from .engine import Engine, EngineSettings, create_engine
from .faces.flow import FaceAwareFlow, describe_detection
from .faces.track import TrackerSettings
from .flow import OFFICIAL_SHORT_SIDE, FullFrameFlow
from .segment import PersonSegmenter, SegRunner
from .link import Link
from .temporal import TemporalFlow, TemporalSettings

FACE_FILES = ("yunet.onnx", "alpha.jpg")  # the detector and the soft head mask
FETCH_FACES = "python -m streamer.models fetch face mask"


def blend_needs_mobile(style: str) -> UnknownModel:
    return UnknownModel(f"--style {style}: blending styles needs the light network (add "
                        f"--net mobile); an official model holds one style")


@dataclass(frozen=True)
class FaceFiles:
    detector: Path
    head_mask: Path


def face_files(store: Store, mode: str = "on") -> FaceFiles | None:
    """The face files for a faces setting: None when `mode` is "off", or "auto" and either
    is missing; with "on" a missing file raises the store's ModelNotInstalled, which names
    the fetch command."""
    if mode == "off":
        return None
    try:
        return FaceFiles(*(store.file_path(name) for name in FACE_FILES))
    except ModelNotInstalled:
        if mode == "auto":
            return None
        raise


class StyleFlows:
    """Stylise callables for any style of one model store and one set of engine and face
    settings; see the module docstring.

    `faces`: "auto" | "on" | "off" (FaceSettings.faces); `tracker`: the face tracker's
    settings; `temporal`: the temporal step's settings (None: off). Thread-safe: the live
    path builds a new style's flow in a loader thread while
    the toon thread runs the current one."""

    def __init__(self, store: Store, engine: EngineSettings, *, faces: str = "auto",
                 tracker: TrackerSettings = TrackerSettings(), detect_side: int | None = 640,
                 temporal: TemporalSettings | None = None,
                 log: Callable[[str], None] | None = None,
                 background: Background | str = "keep", seg_model: str = "auto",
                 net: str = "official"):
        self.store = store
        self.net = net  # "official" or "mobile" (the light network, engine_mobile.py)
        self._students: dict[str, object] = {}  # light network name -> StudentSession
        self.engine_settings = engine
        self.faces_mode = faces
        self.tracker = tracker
        self.detect_side = detect_side
        self.temporal = temporal
        self._log = log
        self._engines: dict[tuple[str, str], Engine] = {}
        self._files: FaceFiles | None = None
        self._files_known = False
        self._lock = threading.Lock()  # engine bookkeeping only, never held while running
        self.background = (background if isinstance(background, Background)
                           else parse_background(background))
        self.seg_model = seg_model
        self._seg: dict[str, SegRunner] = {}

    @classmethod
    def from_settings(cls, settings, log: Callable[[str], None] | None = None,
                      store: Store | None = None) -> StyleFlows:
        """From an app's settings (VideoSettings, LiveSettings: models, device, precision,
        threads, the face and the temporal settings, and the network: official or mobile)."""
        # precision auto (live): the candidates are variants of this one (live/precision.py)
        precision = "fast" if settings.precision == "auto" else settings.precision
        return cls(store if store is not None else open_store(settings.models),
                   EngineSettings(device=settings.device, precision=precision,
                                  threads=settings.threads),
                   faces=settings.faces, tracker=settings.tracker_settings(),
                   temporal=settings.temporal_settings(), log=log,
                   background=settings.background_spec(), seg_model=settings.seg_model,
                   net=getattr(settings, "net", "official"))

    # --- what is installed --------------------------------------------------------------

    @property
    def styles(self) -> tuple[str, ...]:
        """Every style: the catalog's, then the store's personal styles."""
        if self.net == "mobile":
            return self.mobile_styles()
        return self.store.styles

    def mobile_styles(self) -> tuple[str, ...]:
        """The styles the installed light networks hold, in the catalog's order."""
        from streamer.models.mobile.store import students

        held = {s for styles in students(self.store).held().values() for s in styles}
        return tuple(s for s in self.store.catalog.styles if s in held)

    def installed_styles(self) -> list[str]:
        if self.net == "mobile":
            return list(self.mobile_styles())
        return [s for s in self.styles if self.store.source_for(s, "bg") is not None]

    def check_style(self, style: str) -> None:
        """UnknownModel (listing the styles) for a name that is no style of the store."""
        if self.net == "mobile":
            return self._check_mobile(style)
        if "+" in style:
            raise blend_needs_mobile(style)
        self.store.check_style(style)

    def _check_mobile(self, style: str) -> None:
        """--net mobile: a style or blend (parse_blend) of official styles that an installed
        light network holds; else StudentMissing naming the distill command."""
        from streamer.models.mobile.store import students
        from streamer.models.mobile.student import StudentError, parse_blend

        try:
            mix = parse_blend(style)
        except StudentError as exc:
            raise UnknownModel(str(exc)) from None
        for s in mix:
            self.store.catalog.style(s)  # an unknown name lists the styles
        students(self.store).holding(list(mix))

    def face_files(self, faces: bool | None = None) -> FaceFiles | None:
        """The face files when faces are on: `faces` True/False overrides the setting for
        one flow (the web page's switch); None follows it."""
        if faces is not None:
            return face_files(self.store, "on" if faces else "off")
        if not self._files_known:
            self._files = face_files(self.store, self.faces_mode)
            self._files_known = True
            if self._files is None and self.faces_mode == "auto" and self._log is not None:
                self._log(f"note: faces off: the face detector is not installed (run "
                          f"`{FETCH_FACES}` to turn faces on)")
        return self._files

    # --- engines ------------------------------------------------------------------------

    def engine(self, style: str) -> Engine:
        """The style's whole-frame engine, started on first use."""
        return self._engine(style, "bg")

    def head_engine(self, style: str) -> Engine:
        """The style's head engine: its whole-frame engine itself when the store holds no
        separate head weights (the official files hold the same weights for most styles)."""
        if self.net == "mobile":  # the light network's head codes (its bg ones without)
            return self._engine(style, "h")
        if self.store.source_for(style, "h") is None:
            return self.engine(style)
        return self._engine(style, "h")

    def _engine(self, style: str, part: str) -> Engine:
        key = (style, part)
        engine = self._engines.get(key)
        if engine is None and self.net == "mobile":
            engine = self._mobile_engine(style, part)
            with self._lock:
                engine = self._engines.setdefault(key, engine)
        if engine is None:
            if "+" in style:
                raise blend_needs_mobile(style)
            self.check_style(style)
            # Started outside the lock: a model build or compile takes seconds, and the
            # toon thread may need another style's engine meanwhile.
            engine = create_engine(lambda p: self.store.onnx_model_path(style, part, p),
                                   self.engine_settings,
                                   weights=lambda: self.store.weights(style, part))
            with self._lock:
                engine = self._engines.setdefault(key, engine)
        return engine

    def _mobile_engine(self, style: str, part: str) -> Engine:
        """A view with the style's (or blend's) code on the session of the installed light
        network that holds it; sessions are shared, so a new style or blend never rebuilds."""
        from streamer.models.mobile.store import students
        from streamer.models.mobile.student import parse_blend

        from .engine_mobile import StudentSession

        mix = parse_blend(style)
        shelf = students(self.store)
        name = shelf.holding(list(mix))
        session = self._students.get(name)
        if session is None:
            student, _ = shelf.load(name)
            session = StudentSession(student, lambda p: shelf.onnx(name, p),
                                     self.engine_settings)
            with self._lock:
                session = self._students.setdefault(name, session)
        return session.view(mix, part)

    def seg_runner(self, variant: str = "general") -> SegRunner:
        """The person segmentation model `variant` (general, landscape) on the engine's
        backend, started on first use and shared by every stream."""
        runner = self._seg.get(variant)
        if runner is None:
            path = self.store.seg_model_path(variant)
            h, w = (144, 256) if variant == "landscape" else (256, 256)
            runner = SegRunner(path, h, w, self.engine_settings)
            with self._lock:
                runner = self._seg.setdefault(variant, runner)
        return runner

    def segmenter(self) -> PersonSegmenter:
        """A new person segmenter for one stream (it keeps the previous mask)."""
        if self.seg_model != "auto":
            return PersonSegmenter(self.seg_runner(self.seg_model), model=self.seg_model)
        return PersonSegmenter(self.seg_runner, model="auto")

    def adopt(self, style: str, engine: Engine) -> None:
        """Use an engine started elsewhere as `style`'s whole-frame engine (benchmarks that
        time the bare engine first)."""
        with self._lock:
            self._engines[(style, "bg")] = engine

    def started(self, style: str) -> Engine | None:
        """The style's whole-frame engine if it has started, else None."""
        return self._engines.get((style, "bg"))

    # --- flows --------------------------------------------------------------------------

    def flow(self, style: str, *, short_side: int = OFFICIAL_SHORT_SIDE, ring: int = 4,
             fps: float = 30.0, faces: bool | None = None, official: bool = False,
             background: Background | None = None, temporal: bool | None = None
             ) -> Link:
        """A new stylise chain for one stream (face tracks, the temporal step's state and
        the previous mask never carry from one stream to the next): FaceAwareFlow when faces
        are on, else the official FullFrameFlow, each with the temporal step when it is on,
        then the background treatment unless it is `keep` (it composites the steadied
        cartoon). `ring`: output buffers kept (see toon.stage.ring_size); `official`:
        compose faces exactly as the official compound code (see FaceAwareFlow), for exact
        offline runs; `faces`, `temporal`, `background` override the settings for this
        flow (the web page's switches)."""
        bg = self.engine(style)
        files = self.face_files(faces)
        steady = self.temporal_settings(temporal)
        if files is None:
            flow: Link = FullFrameFlow(bg, short_side=short_side, ring=ring)
            if steady is not None:
                flow = TemporalFlow(flow, steady)
        else:
            head = self.head_engine(style)
            side = head.head_side  # a light network's heads: drawn smaller
            if steady is not None and side and side < steady.head_flow_side:
                # The heads' own flow sees them at the size their model draws them: the
                # detail it steadies is no finer there, and on a 288 crop DIS took a third
                # of the live toon thread with the light network (README, Mobile-DCTNet).
                steady = replace(steady, head_flow_side=side)
            flow = FaceAwareFlow(bg, head, files.detector, files.head_mask,
                                 tracker=self.tracker, detect_side=self.detect_side,
                                 short_side=short_side, ring=ring, fps=fps, official=official,
                                 temporal=steady)
        background = background if background is not None else self.background
        if not background.needs_mask:
            return flow
        return BackgroundFlow(flow, self.segmenter(), background, ring=ring)

    def temporal_settings(self, temporal: bool | None = None) -> TemporalSettings | None:
        """The temporal step's settings for one flow (None: off); `temporal` True/False
        overrides the setting (on uses its strength, or the default one)."""
        if temporal is None:
            return self.temporal
        if not temporal:
            return None
        return self.temporal if self.temporal is not None else TemporalSettings()

    # --- what runs, in words --------------------------------------------------------------

    def describe_net(self) -> str:
        """Which network runs, for the apps' "what runs" line."""
        return ("network mobile (the light network)" if self.net == "mobile"
                else "network official")

    def describe(self, style: str) -> str:
        engine = self.started(style)
        return engine.describe() if engine is not None else "not started"

    def describe_background(self, background: Background | None = None) -> str:
        background = background if background is not None else self.background
        if not background.needs_mask:
            return "background kept"
        started = ", ".join(f"{v} {r.describe()}" for v, r in self._seg.items())
        return f"background {background} (person mask: selfie segmentation {self.seg_model}" + \
            (f", {started})" if started else ")")

    def describe_temporal(self, temporal: bool | None = None) -> str:
        st = self.temporal_settings(temporal)
        return "temporal off" if st is None else f"temporal on (strength {st.strength:g})"

    def describe_faces(self, faces: bool | None = None, official: bool = False) -> str:
        if self.face_files(faces) is None:
            if faces is None and self.faces_mode == "auto":
                return f"faces off (the face detector is not installed: `{FETCH_FACES}`)"
            return "faces off"
        t = self.tracker
        where = describe_detection(official, self.detect_side)
        if t.detect_every <= 1 and not t.smooth:
            return f"faces on (per-frame detection, official; up to {t.max_faces}), {where}"
        return (f"faces on (detect every {t.detect_every} frames, tracked and smoothed; "
                f"up to {t.max_faces}), {where}")


def flows_variant(flows: StyleFlows, *, precision: str | None = None, net: str | None = None
                  ) -> StyleFlows:
    """The same store, faces, tracker, temporal step and background with another engine
    precision or network, and engines of its own (none started): the candidates that
    `--precision auto` measures (streamer/live/precision.py)."""
    other = StyleFlows(flows.store, replace(flows.engine_settings,
                                            precision=precision or flows.engine_settings.precision),
                       faces=flows.faces_mode, tracker=flows.tracker,
                       detect_side=flows.detect_side, temporal=flows.temporal, log=flows._log,
                       background=flows.background, seg_model=flows.seg_model,
                       net=net or flows.net)
    other._files, other._files_known = flows._files, flows._files_known
    other._seg = flows._seg  # the person mask does not depend on the toon precision
    return other

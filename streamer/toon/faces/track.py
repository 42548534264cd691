"""Faces over time: tracks with stable ids, steady transforms, fades in and out.

Per frame the tracker returns, for every face to paste, its crop transform and an opacity.

- Detection (YuNet) runs every `detect_every` frames, and at once when a track cannot be
  followed or the shot changes. In between, each track is carried by sparse optical flow:
  pyramidal Lucas-Kanade on corner points inside the face plus the five landmarks, checked
  forward-backward, with one similarity fitted to the survivors (RANSAC). Holding the last
  landmarks instead would leave the head behind a moving face for up to `detect_every`
  frames; a similarity fitted to a dozen points is also steadier than five re-detected
  landmarks.
- Detections are matched to tracks greedily by box IoU (the track's box carried by the flow),
  so ids survive between detections; a track missed by more than `max_missed` detections in
  a row, or lost by the flow and not found again, fades out.
- The crop transform is smoothed with a One-Euro filter (Casiez et al., CHI 2012), on the
  frame-pixel positions of the crop's centre and half-width vector: the transform is linear
  in those, so the filtered one is still a similarity, and all four values share one unit.
  The filter's speed is measured in crop sizes per second, so the defaults hold for any face
  size and frame size. The filter is motion-compensated: before each update its state is
  carried by the same flow similarity that carried the track, so it smooths only what the
  image motion does not explain (detector noise, slow drift) and never lags a moving face.
  On the two test clips this keeps the transform's frame-to-frame wobble to about a sixth of
  per-frame detection's, where a plain One-Euro filter strong enough for that trails a
  moving face by many pixels.
- A new face fades in and a lost one fades out over `fade_s` seconds (the paste mask is
  multiplied by the track's opacity). On the first frame and after a scene cut faces appear
  at once and the old ones vanish at once: a face from the previous shot must not linger.

`TrackerSettings.official()` gives the official per-frame behaviour (detect every frame,
nothing carried, smoothed or faded), for comparison.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from ..motion import CUT_THRESHOLD, SceneCut
from .align import CROP_SIZE, invert_affine, similarity_transform
from .detect import OFFICIAL_MAX_FACES, OFFICIAL_MIN_FACE, FaceDetector

_HALF = CROP_SIZE / 2.0


@dataclass(frozen=True)
class TrackerSettings:
    detect_every: int = 5          # frames between detections (1: every frame)
    propagate: bool = True         # carry tracks between detections with optical flow
    smooth: bool = True            # One-Euro filter on the crop transform
    min_cutoff: float = 0.3        # Hz, the cutoff when the face is still
    beta: float = 0.5              # cutoff gain per (crop size / s) of speed
    d_cutoff: float = 1.0          # Hz, for the speed estimate
    fade_s: float = 0.2            # seconds to fade a face in or out (0: no fades)
    max_missed: int = 1            # detections a track may miss before it fades out
    iou_match: float = 0.3         # box IoU for a detection to continue a track
    max_faces: int = OFFICIAL_MAX_FACES
    min_face: float = OFFICIAL_MIN_FACE  # px, in the official working size (see min_face_scale)
    keep_face_ratio: float = 0.8   # a tracked face is kept down to this part of min_face
    cut_threshold: float = CUT_THRESHOLD  # see toon.motion.SceneCut

    def __post_init__(self) -> None:
        if self.detect_every < 1:
            raise ValueError("detect_every must be at least 1")
        if self.min_cutoff <= 0 or self.beta < 0 or self.d_cutoff <= 0:
            raise ValueError("One-Euro needs min_cutoff > 0, d_cutoff > 0 and beta >= 0")
        if self.fade_s < 0 or self.max_missed < 0 or self.max_faces < 0:
            raise ValueError("fade_s, max_missed and max_faces must not be negative")

    @classmethod
    def official(cls, **overrides) -> "TrackerSettings":
        """The official code's behaviour: detect every frame, no tracking, smoothing, fades."""
        return replace(cls(detect_every=1, propagate=False, smooth=False, fade_s=0.0,
                           max_missed=0, keep_face_ratio=1.0), **overrides)


class OneEuroFilter:
    """One-Euro low-pass filter over a vector, with one adaptive cutoff for all of it.

    `cutoff = min_cutoff + beta * speed`, where speed is the norm of the (low-passed)
    derivative divided by `scale`: slow motion is smoothed hard (no jitter), fast motion
    follows with little lag. Time is in seconds.
    """

    def __init__(self, min_cutoff: float = 1.0, beta: float = 0.0, d_cutoff: float = 1.0):
        self.min_cutoff, self.beta, self.d_cutoff = min_cutoff, beta, d_cutoff
        self.reset()

    def reset(self) -> None:
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None
        self._t = 0.0

    @staticmethod
    def _alpha(dt: float, cutoff: float) -> float:
        tau = 1.0 / (2.0 * math.pi * cutoff)
        return dt / (dt + tau)

    def move(self, fn) -> None:
        """Carry the filter's state along a known motion (`fn` maps a state vector to the
        moved one, e.g. the image motion between frames measured by optical flow), so the
        filter smooths what the motion does not explain instead of lagging behind it."""
        if self._x is not None:
            self._x = np.asarray(fn(self._x), np.float64)

    def __call__(self, x, t: float, scale: float = 1.0) -> np.ndarray:
        x = np.asarray(x, np.float64)
        if self._x is None:
            self._x, self._dx, self._t = x.copy(), np.zeros_like(x), t
            return x.copy()
        dt = t - self._t
        if dt <= 0:  # a repeated timestamp: nothing new to learn
            return self._x.copy()
        self._t = t
        dx = (x - self._x) / dt
        self._dx += self._alpha(dt, self.d_cutoff) * (dx - self._dx)
        speed = float(np.linalg.norm(self._dx)) / max(scale, 1e-9)
        cutoff = self.min_cutoff + self.beta * speed
        self._x += self._alpha(dt, cutoff) * (x - self._x)
        return self._x.copy()


def transform_params(m_inv: np.ndarray) -> np.ndarray:
    """[cx, cy, ux, uy]: frame position of the crop centre and of the crop's half-width
    vector, for a crop -> image similarity. Linear in the transform."""
    m = np.asarray(m_inv, np.float64)
    c = m @ np.array([_HALF, _HALF, 1.0])
    u = m[:, 0] * _HALF
    return np.array([c[0], c[1], u[0], u[1]])


def params_transform(p: np.ndarray) -> np.ndarray:
    """The crop -> image similarity (2x3) for `transform_params` values."""
    cx, cy, ux, uy = p
    a, c = ux / _HALF, uy / _HALF  # first column; a similarity's second is (-c, a)
    b, d = -c, a
    return np.array([[a, b, cx - _HALF * (a + b)], [c, d, cy - _HALF * (c + d)]])


def move_params(s: np.ndarray, p: np.ndarray) -> np.ndarray:
    """`transform_params` of `s o T` for the T of `p`: the crop carried by the image
    similarity `s` (2x3)."""
    c = s[:, :2] @ p[:2] + s[:, 2]
    u = s[:, :2] @ p[2:]
    return np.array([c[0], c[1], u[0], u[1]])


def crop_size_px(p: np.ndarray) -> float:
    """The crop's side in frame pixels."""
    return 2.0 * math.hypot(p[2], p[3])


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    ax1, ay1, aw, ah = a
    bx1, by1, bw, bh = b
    iw = min(ax1 + aw, bx1 + bw) - max(ax1, bx1)
    ih = min(ay1 + ah, by1 + bh) - max(ay1, by1)
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    return inter / (aw * ah + bw * bh - inter)


@dataclass
class FaceTrack:
    id: int
    box: np.ndarray         # [4] x, y, w, h, frame px (raw: detected or carried)
    landmarks: np.ndarray   # [5, 2] frame px (raw)
    score: float
    filter: OneEuroFilter
    params: np.ndarray = field(default_factory=lambda: np.zeros(4))  # smoothed transform
    alpha: float = 0.0      # paste opacity
    fading_out: bool = False
    missed: int = 0
    age: int = 0            # frames since the track started
    points: np.ndarray | None = None  # [k, 2] flow points in detector pixels
    fit: tuple | None = None  # (M, M_inv) of the raw landmarks on the latest frame
    motion: np.ndarray | None = None  # 2x3 image similarity since the previous frame (flow)


@dataclass
class FaceRender:
    """One face to paste on one frame."""

    track_id: int
    m: np.ndarray       # 2x3 image -> crop
    m_inv: np.ndarray   # 2x3 crop -> image
    alpha: float        # opacity in 0..1
    size: float         # box area, for the paste order (largest first)
    landmarks: np.ndarray  # [5, 2] the raw landmarks this transform was smoothed from
    box: np.ndarray | None = None  # [4] x, y, w, h: the raw face box (detected or carried)


class FaceTracker:
    """Detect, follow and smooth faces over an ordered sequence of frames.

    `update(frame, t)` takes the frames in order (t in seconds) and returns the faces to
    paste, largest first. `min_face_scale` converts frame pixels into the pixels `min_face`
    is measured in (the official working size: short side at most 720).
    """

    _LK = dict(winSize=(21, 21), maxLevel=3,
               criteria=(cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 20, 0.03))

    def __init__(self, detector: FaceDetector, settings: TrackerSettings = TrackerSettings()):
        self.detector = detector
        self.settings = settings
        self.tracks: list[FaceTrack] = []
        self.frames = 0
        self.detections = 0  # detector runs so far
        self.scene = SceneCut(settings.cut_threshold)
        self._next_id = 1
        self._since_detect = 0
        self._prev_gray: np.ndarray | None = None
        self._last_t: float | None = None
        self._gray_bufs: list[np.ndarray | None] = [None, None]
        self._gray_turn = 0
        self._frame_hw: tuple[int, ...] | None = None

    @property
    def cuts(self) -> int:
        """Scene cuts seen so far."""
        return self.scene.cuts

    def reset(self) -> None:
        self.tracks = []
        self._prev_gray = None
        self.scene.reset()
        self._last_t = None
        self._since_detect = 0
        self.frames = 0

    # -- per frame ---------------------------------------------------------------------

    def update(self, frame: np.ndarray, t: float, min_face_scale: float = 1.0) -> list[FaceRender]:
        st = self.settings
        if self._frame_hw != frame.shape[:2]:
            # A stream that changes size: the tracks and the previous grey frame no longer
            # fit, so start again as on a first frame.
            self.reset()
            self._frame_hw = frame.shape[:2]
        small, scale = self.detector.downscale(frame)
        first = self.frames == 0
        self.frames += 1
        gray = self._gray_of(small) if st.propagate else None
        cut = self.scene.update(gray if gray is not None else small)
        if cut:
            self.tracks = []  # no fade across a cut: the old shot's faces go at once
        lost = False
        if st.propagate and self.tracks and self._prev_gray is not None:
            lost = self._propagate(self._prev_gray, gray, scale)
        self._prev_gray = gray

        instant = first or cut
        if not st.propagate or first or cut or lost or self._since_detect + 1 >= st.detect_every:
            self._detect(small, scale, gray, min_face_scale, instant)
        else:
            self._since_detect += 1
        return self._render(t, instant)

    def _gray_of(self, small: np.ndarray) -> np.ndarray:
        """The grey image for the flow, in one of two buffers: the previous frame's grey
        stays valid for one more frame, which is all the flow needs."""
        self._gray_turn ^= 1
        buf = self._gray_bufs[self._gray_turn]
        if buf is None or buf.shape != small.shape[:2]:
            buf = self._gray_bufs[self._gray_turn] = np.empty(small.shape[:2], np.uint8)
        return cv2.cvtColor(small, cv2.COLOR_BGR2GRAY, dst=buf)

    def _propagate(self, prev: np.ndarray, cur: np.ndarray, scale: float) -> bool:
        """Carry every track by the flow; True when one of them could not be followed."""
        tracks = [tr for tr in self.tracks if tr.points is not None]
        lost = len(tracks) < len(self.tracks)
        if not tracks:
            return lost
        counts = [len(tr.points) for tr in tracks]
        p0 = np.concatenate([tr.points for tr in tracks]).astype(np.float32).reshape(-1, 1, 2)
        p1, ok1, _ = cv2.calcOpticalFlowPyrLK(prev, cur, p0, None, **self._LK)
        back, ok2, _ = cv2.calcOpticalFlowPyrLK(cur, prev, p1, None, **self._LK)
        fb = np.linalg.norm((back - p0).reshape(-1, 2), axis=1)
        good = (ok1.ravel() == 1) & (ok2.ravel() == 1) & (fb < 1.0)
        p0, p1 = p0.reshape(-1, 2), p1.reshape(-1, 2)
        start = 0
        for tr, n in zip(tracks, counts):
            sl = slice(start, start + n)
            start += n
            g = good[sl]
            if g.sum() < 4:
                tr.points = None
                lost = True
                continue
            a, inl = cv2.estimateAffinePartial2D(p0[sl][g], p1[sl][g], method=cv2.RANSAC,
                                                 ransacReprojThreshold=1.0, maxIters=200)
            if a is None or inl is None or inl.sum() < 4:
                tr.points = None
                lost = True
                continue
            keep = np.flatnonzero(g)[inl.ravel() == 1]
            tr.points = p1[sl][keep]
            # The similarity found at detector scale, applied in frame pixels.
            m = a.astype(np.float64)
            m[:, 2] /= scale
            tr.landmarks = tr.landmarks @ m[:, :2].T + m[:, 2]
            tr.motion = m
            corners = np.array([tr.box[:2], tr.box[:2] + tr.box[2:]])
            c = corners @ m[:, :2].T + m[:, 2]
            s = math.hypot(m[0, 0], m[1, 0])
            centre = c.mean(axis=0)
            wh = tr.box[2:] * s
            tr.box = np.array([*(centre - wh / 2), *wh])
        return lost

    def _seed_points(self, tr: FaceTrack, gray: np.ndarray | None, scale: float) -> None:
        if gray is None:
            return
        x, y, w, h = tr.box * scale
        lm = tr.landmarks * scale
        mask = np.zeros_like(gray)
        x0, y0 = max(0, int(x)), max(0, int(y))
        x1, y1 = min(gray.shape[1], int(x + w + 1)), min(gray.shape[0], int(y + h + 1))
        if x1 - x0 < 4 or y1 - y0 < 4:
            tr.points = None
            return
        mask[y0:y1, x0:x1] = 255
        pts = cv2.goodFeaturesToTrack(gray, 24, 0.01, max(2.0, min(w, h) / 8), mask=mask)
        pts = pts.reshape(-1, 2) if pts is not None else np.zeros((0, 2), np.float32)
        tr.points = np.concatenate([lm.astype(np.float32), pts.astype(np.float32)])

    def _detect(self, small: np.ndarray, scale: float, gray: np.ndarray | None,
                min_face_scale: float, instant: bool) -> None:
        st = self.settings
        self.detections += 1
        self._since_detect = 0
        dets = self.detector.detect_scaled(small, scale)
        # Faces down to keep_face_ratio * min_face may continue a track (hysteresis, so a
        # face near the limit does not blink); only faces over min_face start one.
        keep_min = st.min_face * (st.keep_face_ratio if self.tracks else 1.0)
        dets = dets.select(max_faces=max(st.max_faces, len(self.tracks)) * 2, min_face=keep_min,
                           scale=min_face_scale)
        pairs = sorted(((box_iou(tr.box, dets.boxes[j]), i, j)
                        for i, tr in enumerate(self.tracks) for j in range(len(dets))),
                       reverse=True)
        used_t: set[int] = set()
        used_d: set[int] = set()
        for iou, i, j in pairs:
            if iou < st.iou_match or i in used_t or j in used_d:
                continue
            used_t.add(i)
            used_d.add(j)
            tr = self.tracks[i]
            tr.box, tr.landmarks, tr.score = dets.boxes[j].copy(), dets.landmarks[j].copy(), float(dets.scores[j])
            tr.missed = 0
            tr.fading_out = False
            self._seed_points(tr, gray, scale)
        for i, tr in enumerate(self.tracks):
            if i not in used_t:
                tr.missed += 1
                if tr.missed > st.max_missed or (st.propagate and tr.points is None):
                    tr.fading_out = True
        live = sum(not tr.fading_out for tr in self.tracks)
        for j in range(len(dets)):  # largest first
            if j in used_d or live >= st.max_faces:
                continue
            if not (dets.boxes[j, 2:4] * min_face_scale > st.min_face).any():
                continue
            tr = FaceTrack(self._next_id, dets.boxes[j].copy(), dets.landmarks[j].copy(),
                           float(dets.scores[j]),
                           OneEuroFilter(st.min_cutoff, st.beta, st.d_cutoff),
                           alpha=1.0 if instant or st.fade_s == 0 else 0.0)
            self._next_id += 1
            self._seed_points(tr, gray, scale)
            self.tracks.append(tr)
            live += 1

    def _render(self, t: float, instant: bool) -> list[FaceRender]:
        st = self.settings
        dt = 0.0 if self._last_t is None else max(0.0, t - self._last_t)
        self._last_t = t
        out: list[FaceRender] = []
        survivors: list[FaceTrack] = []
        for tr in self.tracks:
            tr.age += 1
            tr.fit = similarity_transform(tr.landmarks)
            raw = transform_params(tr.fit[1])
            if st.smooth:
                if tr.motion is not None:  # smooth around the content's own motion
                    motion = tr.motion
                    tr.filter.move(lambda p: move_params(motion, p))
                tr.params = tr.filter(raw, t, crop_size_px(raw))
            else:
                tr.params = raw
            tr.motion = None
            if st.fade_s > 0 and not instant:
                step = dt / st.fade_s
                a = tr.alpha + (-step if tr.fading_out else step)
                # Snap the ends: timestamps in float seconds leave 1e-16 crumbs.
                tr.alpha = 0.0 if a < 1e-6 else 1.0 if a > 1.0 - 1e-6 else a
            else:
                tr.alpha = 0.0 if tr.fading_out else 1.0
            if tr.fading_out and tr.alpha <= 0.0:
                continue
            survivors.append(tr)
        self.tracks = survivors
        # At most max_faces pasted: the followed ones before the fading ones, larger first.
        chosen = sorted(survivors, key=lambda tr: (tr.fading_out, -tr.box[2] * tr.box[3]))
        for tr in chosen[:st.max_faces]:
            if tr.alpha <= 0.0:
                continue
            if st.smooth:
                m_inv = params_transform(tr.params)
                m = invert_affine(m_inv)
            else:  # exactly the official fit
                m, m_inv = tr.fit
            out.append(FaceRender(tr.id, m, m_inv, tr.alpha,
                                  float(tr.box[2] * tr.box[3]), tr.landmarks.copy(),
                                  tr.box.copy()))
        out.sort(key=lambda f: -f.size)
        return out

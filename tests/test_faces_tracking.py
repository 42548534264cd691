"""Faces over time without the models: One-Euro smoothing, fades, ids, limits, carrying."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from streamer.toon.faces.align import REFERENCE_POINTS, similarity_transform
from streamer.toon.faces.detect import Detections
from streamer.toon.faces.track import (FaceTracker, OneEuroFilter, TrackerSettings,
                                       params_transform, transform_params)

FPS = 25.0


def _face(cx: float, cy: float, w: float, h: float | None = None):
    """A box and five plausible landmarks for a face centred at (cx, cy)."""
    h = w * 1.25 if h is None else h
    box = np.array([cx - w / 2, cy - h / 2, w, h])
    ref = (REFERENCE_POINTS - REFERENCE_POINTS.mean(0)) / 70.0  # about +-1 around the centre
    lms = np.array([cx, cy]) + ref * np.array([w / 2.2, h / 2.6])
    return box, lms


class ScriptedDetector:
    """Stands in for FaceDetector: returns the faces scripted for each detector call."""

    def __init__(self, script):
        self.script = script  # frame index -> list of (cx, cy, w[, h])
        self.frame = 0
        self.calls = 0

    def downscale(self, frame):
        return frame, 1.0

    def detect_scaled(self, small, scale):
        self.calls += 1
        faces = [_face(*f) for f in self.script(self.frame)]
        if not faces:
            return Detections.empty()
        boxes = np.array([b for b, _ in faces])
        order = np.argsort(-(boxes[:, 2] * boxes[:, 3]), kind="stable")
        return Detections(boxes, np.array([l for _, l in faces]), np.full(len(faces), 0.9)).take(order)


def _run(script, settings: TrackerSettings, n: int, frames=None):
    det = ScriptedDetector(script)
    tracker = FaceTracker(det, settings)
    grey = np.full((240, 320, 3), 128, np.uint8)
    out = []
    for i in range(n):
        det.frame = i
        out.append(tracker.update(grey if frames is None else frames[i], i / FPS))
    return out, det, tracker


def test_one_euro_filter_reduces_jitter_of_a_noisy_steady_signal():
    rng = np.random.default_rng(0)
    truth = np.array([320.0, 180.0, 60.0, 5.0])
    f = OneEuroFilter(min_cutoff=0.5, beta=1.0)
    raw, smooth = [], []
    for i in range(150):
        x = truth + rng.normal(0, 2.0, 4)
        raw.append(x)
        smooth.append(f(x, i / FPS, scale=200.0))
    raw, smooth = np.array(raw[25:]), np.array(smooth[25:])
    step_raw = np.abs(np.diff(raw, axis=0)).mean()
    step_smooth = np.abs(np.diff(smooth, axis=0)).mean()
    assert step_smooth < 0.2 * step_raw
    assert np.abs(smooth - truth).mean() < 0.5 * np.abs(raw - truth).mean()


def test_one_euro_filter_follows_a_step_within_half_a_second():
    f = OneEuroFilter(min_cutoff=0.5, beta=1.0)
    out = [f(np.array([0.0 if i < 25 else 50.0]), i / FPS, scale=200.0)[0] for i in range(60)]
    assert out[24] == 0.0
    assert 0.0 < out[25] < 50.0          # smoothed, not a jump...
    assert out[25 + 12] > 47.5          # ...but within 5% after half a second
    assert out[-1] == pytest.approx(50.0, abs=0.5)


def test_transform_parameters_round_trip_to_the_same_similarity():
    _, m_inv = similarity_transform(_face(200, 150, 80)[1])
    np.testing.assert_allclose(params_transform(transform_params(m_inv)), m_inv, atol=1e-9)


def test_new_face_fades_in_and_lost_face_fades_out():
    settings = TrackerSettings(detect_every=1, propagate=False, fade_s=0.2, max_missed=1)
    out, _, _ = _run(lambda i: [(160, 120, 80)] if 3 <= i < 13 else [], settings, 22)
    alpha = [faces[0].alpha if faces else 0.0 for faces in out]
    np.testing.assert_allclose(alpha[3:9], [0.2, 0.4, 0.6, 0.8, 1.0, 1.0], atol=1e-9)
    # Missed once (max_missed=1): still shown; then a ramp down over fade_s, then gone.
    np.testing.assert_allclose(alpha[12:19], [1.0, 1.0, 0.8, 0.6, 0.4, 0.2, 0.0], atol=1e-9)
    assert all(not faces for faces in out[18:])


def test_face_on_the_first_frame_and_after_a_cut_appears_at_once_and_old_faces_vanish():
    settings = TrackerSettings(detect_every=1, propagate=False, fade_s=0.2)
    dark = np.full((240, 320, 3), 20, np.uint8)
    light = np.full((240, 320, 3), 230, np.uint8)
    frames = [dark] * 4 + [light] * 3
    script = lambda i: [(100, 100, 80)] if i < 4 else [(220, 120, 90)]  # noqa: E731
    out, _, tracker = _run(script, settings, 7, frames)
    assert out[0][0].alpha == 1.0
    assert tracker.cuts == 1
    assert len(out[4]) == 1 and out[4][0].alpha == 1.0 and out[4][0].track_id != out[3][0].track_id


def test_tracking_keeps_ids_of_two_faces_whose_sizes_cross():
    # Face A shrinks, face B grows: the detector's largest-first order swaps mid-way.
    script = lambda i: [(80 + 2 * i, 120, 100 - 2 * i), (240 - 2 * i, 120, 70 + 2 * i)]  # noqa: E731
    settings = TrackerSettings(detect_every=1, propagate=False, smooth=False, fade_s=0.0)
    out, _, _ = _run(script, settings, 16)
    first = {f.track_id for f in out[0]}
    assert all({f.track_id for f in faces} == first for faces in out)
    for i, faces in enumerate(out):
        a = min(faces, key=lambda f: abs(f.landmarks[:, 0].mean() - (80 + 2 * i)))
        assert a.track_id == out[0][0].track_id  # face A keeps its id
    # Paste order follows size: the larger face is first in every frame.
    assert all(faces[0].size >= faces[1].size for faces in out)


def test_detections_honour_max_faces_and_the_official_min_face_rule():
    boxes = np.array([[0, 0, 100, 120], [0, 0, 50, 70], [0, 0, 50, 60], [0, 0, 61, 40],
                      [0, 0, 90, 90]], float)
    order = np.argsort(-(boxes[:, 2] * boxes[:, 3]), kind="stable")
    dets = Detections(boxes, np.zeros((5, 5, 2)), np.ones(5)).take(order)
    kept = dets.select(max_faces=10, min_face=60)
    # 60 px or less in BOTH sides is skipped; one side over 60 keeps the face.
    assert sorted(map(tuple, kept.boxes[:, 2:].tolist())) == [(50, 70), (61, 40), (90, 90), (100, 120)]
    assert kept.select(max_faces=2).boxes[:, 2].tolist() == [100, 90]  # the largest two
    assert len(dets.select(min_face=50, scale=0.5)) == 1  # measured in working-size pixels


def test_tracker_pastes_at_most_max_faces_largest_first_and_skips_small_faces():
    script = lambda i: [(40, 60, 70), (120, 60, 90), (200, 60, 50), (280, 60, 80)]  # noqa: E731
    out, _, _ = _run(script, TrackerSettings(max_faces=2, fade_s=0.0, propagate=False), 3)
    assert [round(np.sqrt(f.size / 1.25)) for f in out[-1]] == [90, 80]
    square = lambda i: [(40, 60, 70, 70), (120, 60, 90, 90), (200, 60, 50, 50), (280, 60, 80, 80)]  # noqa: E731
    out, _, _ = _run(square, TrackerSettings(min_face=75, fade_s=0.0, propagate=False), 3)
    assert [round(np.sqrt(f.size)) for f in out[-1]] == [90, 80]


def test_tracker_detects_every_k_frames_and_carries_faces_with_the_flow_in_between():
    rng = np.random.default_rng(1)
    texture = np.repeat(rng.integers(0, 256, (300, 400, 1), np.uint8), 3, axis=2)
    texture = cv2.GaussianBlur(texture, (5, 5), 1.0)
    n, k = 11, 5
    frames = [np.ascontiguousarray(texture[30:270, 40 - 2 * i:360 - 2 * i]) for i in range(n)]
    # The scene moves 2 px right per frame; the detector sees that too.
    script = lambda i: [(160 + 2 * i, 120, 90)]  # noqa: E731
    settings = TrackerSettings(detect_every=k, smooth=False, fade_s=0.0)
    out, det, tracker = _run(script, settings, n, frames)
    assert det.calls == 3  # frames 0, 5, 10
    assert tracker.detections == 3
    for i, faces in enumerate(out):
        assert len(faces) == 1 and faces[0].track_id == out[0][0].track_id
        want = _face(160 + 2 * i, 120, 90)[1]
        assert np.abs(faces[0].landmarks - want).max() < 0.5, i


def test_settings_reject_nonsense():
    with pytest.raises(ValueError):
        TrackerSettings(detect_every=0)
    with pytest.raises(ValueError):
        TrackerSettings(min_cutoff=0)
    assert TrackerSettings.official().detect_every == 1


def test_smoothing_removes_detector_noise_but_follows_a_moving_face_without_lag():
    rng = np.random.default_rng(2)
    texture = cv2.GaussianBlur(np.repeat(rng.integers(0, 256, (300, 500, 1), np.uint8), 3, axis=2),
                               (5, 5), 1.0)
    n = 40
    frames = [np.ascontiguousarray(texture[30:270, 120 - 3 * i:440 - 3 * i]) for i in range(n)]
    noise = rng.normal(0, 2.0, (n, 2))
    # The face moves 3 px right per frame with the scene; each detection is off by ~2 px.
    script = lambda i: [(160 + 3 * i + noise[i, 0], 120 + noise[i, 1], 90)]  # noqa: E731

    def centres(settings):
        out, _, _ = _run(script, settings, n, frames)
        return np.array([transform_params(f[0].m_inv)[:2] for f in out])

    truth = centres(TrackerSettings(detect_every=1, propagate=False, smooth=False))
    truth -= np.stack([noise[:, 0], noise[:, 1]], axis=1)  # what a noiseless detector gives
    raw = centres(TrackerSettings(detect_every=1, propagate=False, smooth=False))
    ours = centres(TrackerSettings(detect_every=5, fade_s=0.0))
    jitter = lambda c: np.abs(np.diff(c[10:], 2, axis=0)).mean()  # noqa: E731
    assert jitter(ours) < 0.1 * jitter(raw)
    # Following the motion: no lag behind a face that keeps moving (a One-Euro filter on
    # the position alone trails this face by ~10 px).
    assert np.abs(ours[10:, 0] - truth[10:, 0]).mean() < 1.5


def _reference_blend(out, head, m_inv, mask, alpha):
    """The official blend over the whole frame, float32, truncated (DCT-Net cartoonize.py)."""
    h, w = out.shape[:2]
    head_w = cv2.warpAffine(head, m_inv, (w, h), borderValue=(0, 0, 0)).astype(np.float32)
    m = cv2.warpAffine(mask, m_inv, (w, h))[:, :, None] * np.float32(alpha)
    return np.clip(m * head_w + (1 - m) * out.astype(np.float32), 0, 255).astype(np.uint8)


def test_paste_matches_the_whole_frame_blend_and_reuses_its_buffers_once_warm():
    from streamer.toon.faces.compose import PasteScratch, paste_head
    rng = np.random.default_rng(3)
    frame = rng.integers(0, 256, (360, 640, 3), dtype=np.uint8)
    head = rng.integers(0, 256, (288, 288, 3), dtype=np.uint8)
    yy, xx = np.mgrid[0:288, 0:288]
    mask = np.clip(1.2 - np.hypot(yy - 144, xx - 144) / 120, 0, 1).astype(np.float32)
    scratch = PasteScratch()
    for k, (scale, cx, cy, alpha) in enumerate([(0.8, 300, 180, 1.0), (0.5, 100, 90, 0.6),
                                                 (0.7, 620, 350, 1.0)]):  # the last one clipped
        a = scale * np.cos(0.2 * k)
        b = scale * np.sin(0.2 * k)
        m_inv = np.array([[a, -b, cx - 144 * (a - b)], [b, a, cy - 144 * (a + b)]])
        out = frame.copy()
        paste_head(out, head, m_inv, mask, alpha, scratch)
        want = _reference_blend(frame, head, m_inv, mask, alpha)
        assert np.abs(out.astype(np.int16) - want).max() <= 1
        if k == 0:
            warm = scratch.allocations
    assert scratch.allocations == warm  # smaller faces reuse the first face's buffers


def test_paste_is_bit_identical_to_the_official_float32_formula_on_its_region():
    """paste_head computes on OpenCV kernels and three-channel views for speed
    (bench/second_core.py); every value must stay the official float32 product and sum."""
    from streamer.toon.faces.compose import PasteScratch, paste_head, paste_roi
    rng = np.random.default_rng(11)
    mask = rng.random((288, 288)).astype(np.float32)
    scratch = PasteScratch()
    for k in range(12):
        frame = rng.integers(0, 256, (720, 1280, 3), dtype=np.uint8)
        head = rng.integers(0, 256, (288, 288, 3), dtype=np.uint8)
        s, r = rng.uniform(0.3, 2.6), rng.uniform(-0.6, 0.6)
        m_inv = np.array([[s * np.cos(r), -s * np.sin(r), rng.uniform(-300, 1200)],
                          [s * np.sin(r), s * np.cos(r), rng.uniform(-300, 700)]])
        alpha = (1.0, 0.37, 0.8)[k % 3]
        out = frame.copy()
        paste_head(out, head, m_inv, mask, alpha, scratch)
        want = frame.copy()
        roi = paste_roi(m_inv, frame.shape[:2])
        if roi is not None:
            x0, y0, x1, y1 = roi
            shifted = m_inv.copy()
            shifted[:, 2] -= (x0, y0)
            size = (x1 - x0, y1 - y0)
            head_w = cv2.warpAffine(head, shifted, size, borderValue=(0, 0, 0))
            m = cv2.warpAffine(mask, shifted, size)[:, :, None] * np.float32(alpha)
            dst = want[y0:y1, x0:x1]
            dst[...] = np.clip(m * head_w + (np.float32(1) - m) * dst, 0, 255)
        assert np.array_equal(out, want), k


def test_head_batches_meet_few_shapes_on_engines_that_compile_per_shape():
    from streamer.toon.faces.flow import head_batches
    assert head_batches(1) == [(0, 1)]
    assert head_batches(3) == [(0, 2), (2, 3)]
    assert head_batches(8) == [(0, 8)]
    assert head_batches(13) == [(0, 8), (8, 12), (12, 13)]
    sizes = {stop - start for n in range(1, 41) for start, stop in head_batches(n)}
    assert sizes == {1, 2, 4, 8}

"""The second core in the live path with faces on: what may run beside what.

    python -m bench.second_core --source CLIP [--models DIR] [--precision fast|int8]
                                [--style anime] [--frames 150] [--camera-size 1280x720]

Three measurements, each side by side in one run on this machine (the CPU is printed):

1. **Beside a model run.** The head model alone, and with the paste-back looping on a
   second thread (median ms and ratio). On a machine whose runtime spreads one inference
   over all its cores, anything beside the model stalls it: this is why the live path
   overlaps nothing with the heads.
2. **The paste-back.** `paste_head` (OpenCV kernels on three-channel views) against the
   official formula written with numpy broadcasting (what paste_head was), on a close-up
   face in a 720p frame: median ms, ratio, and whether the results are bit-identical.
3. **Tracking beside the background half.** Two live toon callables (face-first schedule,
   144p background, as the live-cpu preset on a slow CPU) fed the same clip frames in
   turns, one tracking faces on a second thread while its background half runs
   (live/side.py), one after it: median ms per call and ratio.

A clip with a face is needed (`python -m bench.closeup` makes a 30 fps close-up).
"""
from __future__ import annotations

import argparse
import os
import statistics
import threading
import time

import cv2
import numpy as np

from bench.cpu import cpu_name
from bench.live_compare import load_clip
from streamer.live.app import LiveSettings
from streamer.live.schedule import FaceFirstScheduler, ScheduleSettings
from streamer.live.toon import LiveToon, style_factory, working_size
from streamer.toon.faces.align import CROP_SIZE
from streamer.toon.faces.compose import PasteScratch, load_head_mask, paste_roi, paste_head
from streamer.toon.styles import StyleFlows


def median_ms(times: list[float]) -> float:
    return round(statistics.median(times) * 1000, 2)


def paste_numpy(out: np.ndarray, head: np.ndarray, m_inv: np.ndarray, mask: np.ndarray) -> None:
    """The official blend as numpy broadcasting writes it (one-channel mask, uint8 operands):
    the baseline of measurement 2."""
    x0, y0, x1, y1 = paste_roi(m_inv, out.shape[:2], head.shape[0])
    shifted = np.array(m_inv, np.float64, copy=True)
    shifted[0, 2] -= x0
    shifted[1, 2] -= y0
    w, h = x1 - x0, y1 - y0
    head_w = cv2.warpAffine(head, shifted, (w, h), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
    m = cv2.warpAffine(mask, shifted, (w, h), flags=cv2.INTER_LINEAR,
                       borderMode=cv2.BORDER_CONSTANT, borderValue=0)[:, :, None]
    dst = out[y0:y1, x0:x1]
    res = m * head_w + (np.float32(1.0) - m) * dst
    np.clip(res, 0, 255, out=res)
    dst[...] = res


def close_up(frame_wh: tuple[int, int]) -> np.ndarray:
    """crop -> frame transform of a face filling most of the frame's height."""
    w, h = frame_wh
    s = 0.85 * h / CROP_SIZE
    return np.array([[s, 0, (w - s * CROP_SIZE) / 2], [0, s, 0.05 * h]], np.float64)


def beside_model(head_engine, frame_wh: tuple[int, int], mask: np.ndarray, runs: int) -> dict:
    crop = np.full((1, CROP_SIZE, CROP_SIZE, 3), 180, np.uint8)
    frame = np.full((frame_wh[1], frame_wh[0], 3), 90, np.uint8)
    head = np.full((CROP_SIZE, CROP_SIZE, 3), 200, np.uint8)
    m_inv, scratch = close_up(frame_wh), PasteScratch()
    head_engine.run(crop)
    stop = threading.Event()

    def side() -> None:
        while not stop.is_set():
            paste_head(frame, head, m_inv, mask, 1.0, scratch)

    alone, beside = [], []
    for _ in range(runs):  # in turns, so a change in the machine's load hits both
        t = time.perf_counter()
        head_engine.run(crop)
        alone.append(time.perf_counter() - t)
        stop.clear()
        th = threading.Thread(target=side, daemon=True)
        th.start()
        time.sleep(0.002)
        t = time.perf_counter()
        head_engine.run(crop)
        beside.append(time.perf_counter() - t)
        stop.set()
        th.join()
    a, b = median_ms(alone), median_ms(beside)
    return {"head_alone_ms": a, "head_beside_paste_ms": b, "ratio": round(b / a, 2)}


def paste_speed(frame_wh: tuple[int, int], mask: np.ndarray, runs: int) -> dict:
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (frame_wh[1], frame_wh[0], 3), dtype=np.uint8)
    head = rng.integers(0, 256, (CROP_SIZE, CROP_SIZE, 3), dtype=np.uint8)
    m_inv, scratch = close_up(frame_wh), PasteScratch()
    a, b = frame.copy(), frame.copy()
    paste_head(a, head, m_inv, mask, 1.0, scratch)
    paste_numpy(b, head, m_inv, mask)
    same = bool(np.array_equal(a, b))
    new, old = [], []
    for _ in range(runs):
        t = time.perf_counter()
        paste_head(a, head, m_inv, mask, 1.0, scratch)
        new.append(time.perf_counter() - t)
        t = time.perf_counter()
        paste_numpy(b, head, m_inv, mask)
        old.append(time.perf_counter() - t)
    x0, y0, x1, y1 = paste_roi(m_inv, frame.shape[:2])
    return {"roi": f"{x1 - x0}x{y1 - y0}", "numpy_broadcast_ms": median_ms(old),
            "paste_head_ms": median_ms(new), "ratio": round(median_ms(new) / median_ms(old), 2),
            "bit_identical": same}


def tracking_beside(flows: StyleFlows, style: str, clip: list[np.ndarray],
                    cam_wh: tuple[int, int], frames: int) -> dict:
    work_wh = working_size(*cam_wh, 144)
    toons = {}
    for overlap in (True, False):
        sched = FaceFirstScheduler(ScheduleSettings(fps=30.0, auto_size=False), work_short=144)
        sched.set_aspect(*cam_wh)
        toon = LiveToon(style_factory(flows, work_wh, 30.0), style, work_wh, cam_wh,
                        schedule=sched, overlap=overlap)
        toon.warm_up()
        toons[overlap] = toon
    times: dict[bool, list[float]] = {True: [], False: []}
    cam = np.empty((cam_wh[1], cam_wh[0], 3), np.uint8)
    for i in range(frames):
        cv2.resize(clip[i % len(clip)], cam_wh, dst=cam, interpolation=cv2.INTER_LINEAR)
        order = (True, False) if i % 2 == 0 else (False, True)
        for overlap in order:
            t = time.perf_counter()
            toons[overlap]([cam], [i / 30.0])
            times[overlap].append(time.perf_counter() - t)
    skip = min(10, frames // 4)  # faces fade in and the scheduler settles first
    on, off = median_ms(times[True][skip:]), median_ms(times[False][skip:])
    return {"overlap_on_ms": on, "overlap_off_ms": off, "ratio": round(on / off, 3),
            "bg_runs": {"on": toons[True].schedule.stats()["bg_runs"],
                        "off": toons[False].schedule.stats()["bg_runs"]},
            "faces_pasted": {"on": toons[True].faces_pasted, "off": toons[False].faces_pasted}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default=os.environ.get("TOONSTREAM_MODELS"))
    p.add_argument("--source", required=True, help="a clip with a face")
    p.add_argument("--style", default="anime")
    p.add_argument("--precision", default="fast", choices=["fast", "int8", "exact"])
    p.add_argument("--frames", type=int, default=150)
    p.add_argument("--runs", type=int, default=15)
    p.add_argument("--camera-size", default="1280x720")
    a = p.parse_args(argv)
    cam_wh = tuple(int(v) for v in a.camera_size.lower().split("x"))
    print(f"second core: {cpu_name()}, {os.cpu_count()} cores; {a.style} at {a.precision}; "
          f"{a.source} as a {cam_wh[0]}x{cam_wh[1]} camera", flush=True)
    s = LiveSettings(models=a.models, style=a.style, precision=a.precision, faces="on",
                     sinks=("null",))
    flows = StyleFlows.from_settings(s, log=lambda line: None)
    mask = load_head_mask(flows.face_files().head_mask)
    r1 = beside_model(flows.head_engine(a.style), cam_wh, mask, a.runs)
    print(f"1. head model alone {r1['head_alone_ms']} ms, with the paste looping beside it "
          f"{r1['head_beside_paste_ms']} ms: {r1['ratio']}x", flush=True)
    r2 = paste_speed(cam_wh, mask, a.runs * 2)
    print(f"2. paste-back of a {r2['roi']} close-up: numpy broadcasting "
          f"{r2['numpy_broadcast_ms']} ms, paste_head {r2['paste_head_ms']} ms: "
          f"{r2['ratio']}x; bit-identical: {r2['bit_identical']}", flush=True)
    r3 = tracking_beside(flows, a.style, load_clip(a.source), cam_wh, a.frames)
    print(f"3. live call, {a.frames} frames in turns: tracking beside the background half "
          f"{r3['overlap_on_ms']} ms, after it {r3['overlap_off_ms']} ms: {r3['ratio']}x "
          f"(background runs {r3['bg_runs']}, faces pasted {r3['faces_pasted']})", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The second core in the live path with faces on: what may run beside what.

    python -m bench.second_core [--models DIR] [--precision fast|int8]
                                [--style anime] [--runs 15] [--camera-size 1280x720]

Three measurements, each side by side in one run on this machine (the CPU is printed):

1. **Beside a model run.** The head model alone, and with the paste-back looping on a
   second thread (median ms and ratio). On a machine whose runtime spreads one inference
   over all its cores, anything beside the model stalls it: this is why the live path
   overlaps nothing with the heads.
2. **The paste-back.** `paste_head` (OpenCV kernels on three-channel views) against the
   official formula written with numpy broadcasting (what paste_head was), on a close-up
   face in a 720p frame: median ms, ratio, and whether the results are bit-identical.
3. **One thread against all.** The head model with the runtime on one thread and on all
   (median ms and ratio): how much of the second core a model run already takes.

Tried and measured, not kept (commit 03b8612): tracking the faces on a second thread while
the background half runs. Two live toon callables fed the same close-up frames in turns
(face-first, 144p background, int8 heads): 0.98-1.01x the time per call, because the
tracking and the warps are OpenCV kernels that already run on both cores, and the numpy
and Python glue between them holds the GIL.

"""
from __future__ import annotations

import argparse
import os
import statistics
import threading
import time
from dataclasses import replace

import cv2
import numpy as np

from bench.cpu import cpu_name
from streamer.live.app import LiveSettings
from streamer.toon.faces.align import CROP_SIZE
from streamer.toon.faces.compose import PasteScratch, load_head_mask, paste_head, paste_roi
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


def thread_scaling(settings: LiveSettings, style: str, runs: int) -> dict:
    crop = np.full((1, CROP_SIZE, CROP_SIZE, 3), 180, np.uint8)
    engines = {n: StyleFlows.from_settings(replace(settings, threads=n),
                                           log=lambda line: None).head_engine(style)
               for n in (1, os.cpu_count() or 1)}
    times: dict[int, list[float]] = {n: [] for n in engines}
    for e in engines.values():
        e.run(crop)
    for _ in range(runs):
        for n, e in engines.items():
            t = time.perf_counter()
            e.run(crop)
            times[n].append(time.perf_counter() - t)
    one, full = (median_ms(times[n]) for n in engines)
    return {"one_thread_ms": one, "all_threads_ms": full, "ratio": round(full / one, 2)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default=os.environ.get("TOONSTREAM_MODELS"))
    p.add_argument("--style", default="anime")
    p.add_argument("--precision", default="fast", choices=["fast", "int8", "exact"])
    p.add_argument("--runs", type=int, default=15)
    p.add_argument("--camera-size", default="1280x720")
    a = p.parse_args(argv)
    cam_wh = tuple(int(v) for v in a.camera_size.lower().split("x"))
    print(f"second core: {cpu_name()}, {os.cpu_count()} cores; {a.style} at {a.precision}; "
          f"a close-up face in a {cam_wh[0]}x{cam_wh[1]} frame", flush=True)
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
    r3 = thread_scaling(s, a.style, a.runs)
    print(f"3. head model on one thread {r3['one_thread_ms']} ms, on {os.cpu_count()} "
          f"{r3['all_threads_ms']} ms: {r3['ratio']}x", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

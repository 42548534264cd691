"""Live path benchmark: the paced synthetic camera through the whole live path (working-size
resize, model, upscale to the output size, fan-out sink) to the null sink.

    python -m bench.live [--models DIR] [--seconds 60] [--work 144,224] [--fps 30]
                         [--camera-size 1280x720] [--device auto] [--precision fast]
                         [--faces off|on] [--source CLIP] [--background keep,transparent]
                         [--net official|mobile]

`--background keep,transparent` runs each working size once per background: with a mask
the table adds the segmentation cost (model and smoothing, on the camera frame) as a
fraction of the background model's time at the working size, bare (both timed outside the
pipeline, interleaved) and inside the run, and the edge refinement and compositing at the
output size. The goal: segmentation at most 10% of the background model's time.

`--faces on --source ../shared/media/tears_640x360.mp4` measures the face-aware live path on
a real clip played at its own rate (the synthetic camera has no faces).

For each working size it prints capture-to-sink latency p50 / p95, output fps and drops,
next to the bare per-frame model time measured in the same run (the same stylise callable
on one working-size frame, outside the pipeline: median of runs before and after the live
run), and the process's resident memory at the start and end of the run. The goal is
p95 <= model time + 1.5 frame intervals, flat memory, and on a 2-core CPU with the
live-cpu preset at least 20 fps out.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np

from bench.memory import rss_mb, run_with_memory
from bench.cpu import cpu_name
from streamer.config import LiveSettings, parse_size
from streamer.models.catalog import load_catalog
from streamer.toon.background import parse_background
from streamer.live.session import LiveSession
from streamer.toon.styles import StyleFlows
from streamer.live.toon import LiveToon, style_factory, working_size
from streamer.sinks.null import NullSink
from streamer.sources.synthetic import SyntheticSource
from streamer.toon.stage import ring_size

STYLES = load_catalog().styles  # the official seven, from the catalog


def bare_model_ms(stylise, w: int, h: int, runs: int, img: np.ndarray | None = None
                  ) -> list[float]:
    img = SyntheticSource(w, h, 30.0).render(0) if img is None else img
    stylise([img])  # warm
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        stylise([img])
        times.append((time.perf_counter() - t) * 1000)
    return times


def _first_frame(clip: str) -> np.ndarray:
    import av
    with av.open(clip) as c:
        return next(c.decode(video=0)).to_ndarray(format="bgr24")


def bare_seg_ms(seg, img: np.ndarray, runs: int) -> list[float]:
    """The segmentation step alone (model on the camera frame, smoothing), ms per frame."""
    seg.step([img])  # warm
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        seg.step([img])
        times.append((time.perf_counter() - t) * 1000)
    return times


def run_one(settings: LiveSettings, cam_w: int, cam_h: int, fps: float, work, seconds: float,
            runs: int, clip: str | None = None, background: str = "keep") -> dict:
    work_wh = working_size(cam_w, cam_h, work)
    flows = StyleFlows.from_settings(settings)
    bg = parse_background(background)
    seg = flows.segmenter() if bg.needs_mask else None
    toon = LiveToon(style_factory(flows, work_wh, fps), settings.style, work_wh, (cam_w, cam_h),
                    ring=ring_size(1, 1), background=bg, segmenter=seg)
    toon.warm_up()
    if clip is None:
        bare, img = toon.current, None
    else:
        # With a real clip the bare figure is the whole toon call on its first frame (at the
        # working size, enlarged, heads pasted at the output size): faces are in it.
        img = _first_frame(clip)
        bare = lambda imgs: toon(imgs, [time.monotonic()])  # noqa: E731
    model_before = bare_model_ms(bare,
                                 *work_wh, runs, img)
    cam_img = img if img is not None else SyntheticSource(cam_w, cam_h, 30.0).render(0)
    seg_bare: list[float] = []
    if seg is not None:
        # A separate segmenter: the live one's previous mask stays the stream's own.
        seg_bare = bare_seg_ms(flows.segmenter(), cam_img, runs)
    rss_start = rss_mb()
    if clip is None:
        src = SyntheticSource(cam_w, cam_h, fps, seconds=seconds)
    else:
        from streamer.sources.playback import PlaybackSource
        src = PlaybackSource(clip, loop=True)
        fps = src.fps
        threading.Timer(seconds, src.stop).start()
    session = LiveSession(src, [NullSink()], toon, styles=STYLES, status_every=0,
                          log=lambda line: None)
    calls_before = toon.calls
    result, rss_settled, rss_end = run_with_memory(session, seconds)
    # The toon thread's busy share: its stylise calls (background model, heads, paste, the
    # temporal step) over the run's wall time; the frame resizes and a mask are not in it.
    calls = toon.calls - calls_before
    busy = sum(list(toon.model_s)[-calls:]) / result["seconds"] if calls else 0.0
    model_after = bare_model_ms(bare,
                                *work_wh, runs, img)
    if seg is not None:
        seg_bare += bare_seg_ms(flows.segmenter(), cam_img, runs)
    model_ms = statistics.median(model_before + model_after)
    seg_ms = statistics.median(seg_bare) if seg_bare else None
    interval_ms = 1000 / fps
    lat = result["latency_ms"]
    return {
        "work": f"{work_wh[0]}x{work_wh[1]}", "output": f"{cam_w}x{cam_h}",
        "engine": flows.describe(settings.style),
        "model_ms": round(model_ms, 1),
        "model_ms_before_after": [round(statistics.median(model_before), 1),
                                  round(statistics.median(model_after), 1)],
        "model_ms_in_pipeline": result["model_ms_median"],
        "p50_ms": lat["p50"], "p95_ms": lat["p95"], "p99_ms": lat["p99"],
        "goal_p95_ms": round(model_ms + 1.5 * interval_ms, 1),
        "p95_over_goal": round(lat["p95"] / (model_ms + 1.5 * interval_ms), 2),
        "fps_in": result["fps_in"], "fps_out": result["fps_out"],
        "frames_in": result["frames_in"], "frames_out": result["frames_out"],
        "drops": result["drops"],
        "rss_mb_start": round(rss_start, 1),
        "rss_mb_settled": round(rss_settled, 1) if rss_settled is not None else None,
        "rss_mb_end": round(rss_end, 1),
        "seconds": result["seconds"],
        "toon_busy": round(busy, 3),
        "faces_pasted": result["faces_pasted"],
        "faces": flows.describe_faces(),
        "background": str(bg),
        "seg_ms": None if seg_ms is None else round(seg_ms, 2),
        "seg_over_model": None if seg_ms is None else round(seg_ms / model_ms, 3),
        "seg_ms_in_pipeline": result["seg_ms_median"],
        "seg_over_model_in_pipeline": (None if not result["seg_ms_median"] else
                                       round(result["seg_ms_median"] /
                                             result["model_ms_median"], 3)),
        "background_ms_in_pipeline": result["background_ms_median"],
        "seg_model": ", ".join(f"{v}: {r.describe()}" for v, r in flows._seg.items()),
        "temporal": flows.describe_temporal(),
        "temporal_ms": _temporal_ms(toon.current),
    }


def _temporal_ms(chain) -> float | None:
    """The temporal step's own time per frame over the whole run (flow, warps, blends;
    heads included), from the chain's timings, or None when it is off."""
    timings = chain.timings
    if not chain.needs_motion or not timings.frames:
        return None
    return round(1000 * timings.temporal_s / timings.frames, 2)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default=None, help="model store (default $TOONSTREAM_MODELS)")
    p.add_argument("--seconds", type=float, default=60.0, help="per working size (60)")
    p.add_argument("--work", default="144,224",
                   help="working sizes: short sides or WxH, comma-separated (144,224)")
    p.add_argument("--fps", type=float, default=30.0)
    p.add_argument("--camera-size", default="1280x720")
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="fast")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--style", default="anime")
    p.add_argument("--net", default="official", choices=("official", "mobile"),
                   help="mobile: the installed light network that holds --style")
    p.add_argument("--runs", type=int, default=30, help="bare model runs before and after")
    p.add_argument("--faces", default="off", choices=("auto", "on", "off"),
                   help="face-aware flow (default off, as the live-cpu preset)")
    p.add_argument("--temporal", default="on", choices=("on", "off"),
                   help="the temporal step (default on)")
    p.add_argument("--source", metavar="CLIP",
                   help="play this video file, looped at its own rate, instead of the "
                        "synthetic camera (which has no faces); its size is the camera size")
    p.add_argument("--background", default="keep",
                   help="backgrounds to run, comma-separated (keep,transparent): with a mask "
                        "the segmentation cost is printed next to the model's")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    p.add_argument("--compare", action="store_true",
                   help="issue 13's side-by-side: faces off 144 bf16 / faces on 144 bf16 / "
                        "faces on int8 face-first auto, on --source played as a 1280x720 "
                        "camera at --rates (see bench/live_compare.py)")
    p.add_argument("--rates", default="own,30",
                   help="with --compare: camera rates, 'own' = the clip's (own,30)")
    p.add_argument("--variants", default="A,B,C",
                   help="with --compare: which of A, B, C to run (A,B,C)")
    p.add_argument("--load", type=int, default=0, metavar="N",
                   help="with --compare: N busy processes run beside the live path, a "
                        "reproducible stand-in for another program taking N cores (0)")
    a = p.parse_args(argv)
    backgrounds = [b.strip() for b in a.background.split(",") if b.strip()]
    for b in backgrounds:
        parse_background(b)
    if a.compare:
        return _compare(a)
    settings = LiveSettings(models=a.models, device=a.device, precision=a.precision,
                            threads=a.threads, style=a.style, sinks=("null",), faces=a.faces,
                            temporal=a.temporal, net=a.net)
    cam_w, cam_h = parse_size(a.camera_size, "camera-size")
    if a.source:
        cam_h, cam_w = _first_frame(a.source).shape[:2]
    works = [int(x) if x.strip().isdigit() else parse_size(x, "work")
             for x in a.work.split(",")]
    rss0 = rss_mb()
    camera = f"clip {a.source}" if a.source else "synthetic camera"
    print(f"live benchmark: {camera} {cam_w}x{cam_h} @ {a.fps:g} fps -> null sink, "
          f"{a.seconds:g} s per working size; {cpu_name()}, "
          f"{os.cpu_count()} cores; process RSS at start {rss0:.0f} MB", flush=True)
    rows = []
    for work in works:
        for background in backgrounds:
            r = run_one(settings, cam_w, cam_h, a.fps, work, a.seconds, a.runs, a.source,
                        background)
            rows.append(r)
            print(f"  {r['work']} {r['background']} done: {r['engine']}; {r['faces']}, "
                  f"{r['faces_pasted']} pasted" + (f"; mask {r['seg_model']}"
                                                   if r["seg_model"] else "")
                  + f"; toon thread {100 * r['toon_busy']:.0f}% busy"
                  + f"; {r['temporal']}"
                  + (f": {r['temporal_ms']} ms/frame = "
                     f"{100 * r['temporal_ms'] / r['model_ms']:.1f}% of the bare stylise "
                     f"call, {100 * r['temporal_ms'] / (r['model_ms_in_pipeline'] or r['model_ms']):.1f}% "
                     f"of its median in the run (goal <= 10%; both include the step)"
                     if r["temporal_ms"] else ""), flush=True)
    hdr = (f"{'work':>8} {'backgr.':>11} {'model ms':>8} {'in run':>6} {'p50 ms':>7} "
           f"{'p95 ms':>7} {'goal p95':>8} {'p95/goal':>8} {'fps out':>7} "
           f"{'drops toon/sink/src':>19} {'RSS MB start/5s/end':>20} {'seg ms':>6} "
           f"{'seg/model':>9} {'in run':>6} {'edges+comp ms':>13}")
    print(hdr)
    for r in rows:
        d = r["drops"]
        seg = ("" if r["seg_ms"] is None else
               f" {r['seg_ms']:6.2f} {r['seg_over_model']:9.3f} "
               f"{r['seg_over_model_in_pipeline'] or 0:6.3f} "
               f"{r['background_ms_in_pipeline'] or 0:13.2f}")
        print(f"{r['work']:>8} {r['background']:>11} {r['model_ms']:8.1f} "
              f"{r['model_ms_in_pipeline'] or 0:6.1f} "
              f"{r['p50_ms']:7.1f} {r['p95_ms']:7.1f} "
              f"{r['goal_p95_ms']:8.1f} {r['p95_over_goal']:8.2f} {r['fps_out']:7.1f} "
              f"{d['toon']:>9}/{d['sink']}/{d['source']:<5} "
              f"{r['rss_mb_start']:8.0f}/{r['rss_mb_settled'] or 0:.0f}/{r['rss_mb_end']:.0f}"
              + seg)
    if any(r["seg_ms"] is not None for r in rows):
        print("seg ms: the segmentation step alone (model on the camera frame and smoothing), "
              "median of runs before and after; seg/model: over the bare model ms (goal <= "
              "0.10), and 'in run' the same ratio inside the live run; edges+comp: guided "
              "refinement at the output size and the composite, per frame in the run")
    print("model ms: the bare stylise call at the working size (median of runs before and "
          "after the live run; 'in run': the same call's median inside the live run, which "
          "shows load from other processes); goal p95 = model + 1.5 frame intervals; RSS at the start of "
          "the run, 5 s in (buffers and allocator arenas filled), and at the end")
    if a.json:
        Path(a.json).write_text(json.dumps({"rss_mb_process_start": round(rss0, 1),
                                            "fps": a.fps, "seconds": a.seconds,
                                            "runs": rows}, indent=2) + "\n")
    return 0


def _compare(a) -> int:
    from bench.live_compare import compare

    if not a.source:
        raise SystemExit("--compare needs --source CLIP (a clip with a face)")
    import av
    with av.open(a.source) as c:
        own = float(c.streams.video[0].average_rate or 30)
    rates = [own if r.strip() == "own" else float(r) for r in a.rates.split(",")]
    base = LiveSettings(models=a.models, device=a.device, threads=a.threads, style=a.style,
                        sinks=("null",))
    cam = parse_size(a.camera_size, "camera-size")
    variants = [v.strip().upper() for v in a.variants.split(",") if v.strip()]
    print(f"live comparison: {a.source} as a {cam[0]}x{cam[1]} camera at "
          f"{', '.join(f'{r:g}' for r in rates)} fps, {a.seconds:g} s each, variants "
          f"{','.join(variants)}, {a.load} busy processes beside it; "
          f"{cpu_name()}, {os.cpu_count()} cores", flush=True)
    rows = compare(base, a.source, cam, a.seconds, rates, variants=variants, load=a.load,
                   log=lambda line: print(line, flush=True))
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

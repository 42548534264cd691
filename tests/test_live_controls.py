"""Live controls (stdin lines, preview keys) and the latency statistics."""
from __future__ import annotations

import io
import random
import time

import numpy as np

from streamer.live.controls import Command, StdinCommands, key_command, parse_line, step_style
from streamer.live.stats import LatencyHistogram, LiveStats, StatusReporter

STYLES = ("anime", "3d", "handdrawn", "sketch", "artstyle", "sd-design", "sd-illustration")


def test_stdin_lines_name_a_style_a_number_or_a_command():
    assert parse_line("style 3d\n", STYLES) == Command("style", "3d")
    assert parse_line("  Sketch ", STYLES) == Command("style", "sketch")
    assert parse_line("7", STYLES) == Command("style", "sd-illustration")
    assert parse_line("next", STYLES) == Command("next")
    assert parse_line("p", STYLES) == Command("prev")
    assert parse_line("quit", STYLES) == Command("quit")
    assert parse_line("q", STYLES) == Command("quit")
    assert parse_line("", STYLES) is None
    bad = parse_line("style cubist", STYLES)
    assert bad.action == "error" and "cubist" in bad.arg and "anime" in bad.arg
    assert parse_line("9", STYLES).action == "error"


def test_preview_keys():
    assert key_command(ord("1"), STYLES) == Command("style", "anime")
    assert key_command(ord("4"), STYLES) == Command("style", "sketch")
    assert key_command(ord("n"), STYLES) == Command("next")
    assert key_command(ord("p"), STYLES) == Command("prev")
    assert key_command(ord("q"), STYLES) == Command("quit")
    assert key_command(27, STYLES) == Command("quit")
    assert key_command(ord("8"), STYLES) is None
    assert key_command(None, STYLES) is None


def test_next_and_prev_wrap_around():
    assert step_style("sd-illustration", STYLES, 1) == "anime"
    assert step_style("anime", STYLES, -1) == "sd-illustration"


def test_stdin_reader_queues_commands_and_end_of_input_is_not_a_quit():
    reader = StdinCommands(STYLES, io.StringIO("3d\nbogus\n\nnext\n")).start()
    reader._thread.join(2)
    cmds = reader.pending()
    assert [c.action for c in cmds] == ["style", "error", "next"]
    assert reader.pending() == []


def test_histogram_percentiles_are_within_one_percent():
    rng = random.Random(1)
    values = [rng.lognormvariate(-3, 0.6) for _ in range(5000)]
    h = LatencyHistogram()
    for v in values:
        h.add(v)
    for q in (50, 95, 99):
        exact = float(np.percentile(values, q, method="inverted_cdf"))
        assert abs(h.percentile(q) - exact) <= 0.011 * exact
    assert h.count == 5000 and abs(h.mean - np.mean(values)) < 1e-9
    assert h.percentile(100) == max(values)


def test_histogram_memory_is_flat():
    h = LatencyHistogram()
    n = len(h.bins)
    for i in range(100_000):
        h.add((i % 1000) / 10000)
    assert len(h.bins) == n


def test_status_line_reports_fps_latency_drops_and_the_backend():
    stats = LiveStats()
    t0 = stats.started
    for i in range(30):
        stats.record_latency(0.040 + 0.001 * (i % 5), now=t0 + 1 + i / 30)
    reporter = StatusReporter(stats, frames_in=lambda: 60,
                              drops=lambda: {"source": 0, "toon": 30, "sink": 0},
                              describe=lambda: "style anime  openvino on openvino-cpu (bf16)",
                              every=2.0)
    assert reporter.tick(now=t0 + 1.0) is None  # not yet
    line = reporter.tick(now=t0 + 2.0)
    assert "in  30.0 fps" in line and "out  15.0 fps" in line
    assert "p50 42 ms p95 44 ms" in line
    assert "drops source 0 toon 30 sink 0" in line
    assert line.endswith("openvino on openvino-cpu (bf16)")
    # the next window counts only what happened since
    line2 = reporter.line(reporter.window(now=t0 + 4.0), now=t0 + 4.0)
    assert "drops source 0 toon 0 sink 0" in line2 and "p50 -" in line2
    assert time.monotonic() >= t0


def test_a_typed_blend_of_two_stream_styles_is_a_style_command():
    assert parse_line("anime+3d:0.3\n", STYLES) == Command("style", "anime+3d:0.3")
    assert parse_line("style 3d+sketch", STYLES) == Command("style", "3d+sketch")
    bad = parse_line("anime+nope:0.3", STYLES)
    assert bad.action == "error" and "'nope'" in bad.arg and "styles:" in bad.arg
    weight = parse_line("anime+3d:2", STYLES)
    assert weight.action == "error" and "A+B:T" in weight.arg

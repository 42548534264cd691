"""The live comparison's own controls (bench/live_compare.py): the busy-process load and the
choice of variants, which the README's under-load figures depend on."""
from __future__ import annotations

import multiprocessing

import pytest

from bench.live_compare import busy_load, compare
from streamer.config import LiveSettings


def test_busy_load_keeps_n_spinning_processes_for_the_block_only():
    with busy_load(2):
        running = multiprocessing.active_children()
        assert len(running) == 2
        assert all(p.is_alive() for p in running)
    assert all(not p.is_alive() for p in running)
    assert multiprocessing.active_children() == []


def test_busy_load_of_zero_starts_nothing():
    with busy_load(0):
        assert multiprocessing.active_children() == []


def test_compare_names_an_unknown_variant_before_reading_the_clip(tmp_path):
    with pytest.raises(SystemExit, match="unknown D; pick from A, B, C"):
        compare(LiveSettings(), str(tmp_path / "missing.mp4"), (1280, 720), 1.0, [24.0],
                variants=["C", "D"])

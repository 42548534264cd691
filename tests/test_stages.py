"""The lifecycle every source and sink keeps, and the one error root the apps report."""
from __future__ import annotations

import threading
import time
from fractions import Fraction

import numpy as np
import pytest

from streamer.errors import UserError
from streamer.frame import Frame, StreamInfo
from streamer.pipeline.core import Pipeline
from streamer.report import EXIT_ERROR, EXIT_INTERRUPTED, Log, run_main
from streamer.sinks.multi import MultiSink
from streamer.stages import Sink, Source
from streamer.toon.stage import ToonStage

TB = Fraction(1, 25)


class Endless(Source):
    """Frames until stopped; counts releases."""

    def __init__(self):
        self.info = StreamInfo(8, 8, TB, Fraction(25))
        self.released = 0

    def frames(self):
        i = 0
        while not self.stop_requested:
            yield Frame(i, i, TB, time.monotonic(), np.zeros((8, 8, 3), np.uint8))
            i += 1
            time.sleep(0.001)

    def _release(self):
        self.released += 1


class Counting(Sink):
    def __init__(self):
        self.written = self.finished = self.released = 0

    def write(self, frame):
        self.written += 1

    def finish(self):
        self.finished += 1

    def _release(self):
        self.released += 1


def test_close_releases_exactly_once_from_any_number_of_threads():
    sink = Counting()
    threads = [threading.Thread(target=sink.close) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    sink.close()
    assert sink.released == 1 and sink.closed


def test_a_context_manager_closes_the_stage_on_error():
    src = Endless()
    with pytest.raises(RuntimeError):
        with src:
            raise RuntimeError("boom")
    assert src.released == 1


def test_request_stop_stops_the_source_and_the_sink_finishes_normally():
    src, sink = Endless(), Counting()
    pipe = Pipeline(src, ToonStage(lambda imgs, times=None: imgs), sink, queue_size=2,
                    live=True)
    threading.Timer(0.2, pipe.request_stop).start()
    st = pipe.run()
    assert src.stop_requested and sink.finished == 1 and st.frames_out > 0


def test_multisink_finishes_and_closes_every_sink_even_when_one_fails():
    class Broken(Counting):
        def finish(self):
            raise OSError(28, "No space left on device")

    good, bad, last = Counting(), Broken(), Counting()
    multi = MultiSink([good, bad, last])
    with pytest.raises(OSError):
        multi.finish()
    multi.close()
    multi.close()
    assert good.finished == 1 and last.finished == 1
    assert (good.released, bad.released, last.released) == (1, 1, 1)
    assert multi.describe() == "sink, sink, sink"


def test_every_user_fixable_error_derives_from_the_one_root():
    from streamer.config import ConfigError
    from streamer.live.parts import LiveError
    from streamer.models import StoreError
    from streamer.models.dctnet.weights import ModelFormatError
    from streamer.sinks.network import StreamError
    from streamer.sinks.preview import PreviewError
    from streamer.sinks.video_file import OutputError
    from streamer.sinks.virtualcam import VirtualCameraError
    from streamer.sources.camera import CameraError
    from streamer.sources.video_file import MediaError
    from streamer.toon.engine import EngineUnavailable
    for cls in (ConfigError, LiveError, StoreError, ModelFormatError, StreamError,
                PreviewError, OutputError, VirtualCameraError, CameraError, MediaError,
                EngineUnavailable):
        assert issubclass(cls, UserError), cls
    # subclasses keep the bases callers may already catch
    assert issubclass(ConfigError, ValueError) and issubclass(EngineUnavailable, RuntimeError)


def test_run_main_reports_one_line_and_the_exit_status():
    lines: list[str] = []

    def user():
        raise UserError("the file is\nnot a video; give a video file")

    def bug():
        raise KeyError("x")

    def interrupted():
        raise KeyboardInterrupt

    assert run_main(user, lines.append) == EXIT_ERROR
    assert lines[-1] == "error: the file is not a video; give a video file"
    assert run_main(bug, lines.append) == EXIT_ERROR
    assert lines[-1] == "error: KeyError: 'x'"
    assert run_main(interrupted, lines.append, after_interrupt=": stopped") == EXIT_INTERRUPTED
    assert lines[-1] == "interrupted: stopped"


def test_log_writes_to_the_stderr_of_the_moment(capsys):
    Log()("hello")
    assert capsys.readouterr().err == "hello\n"

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


# --- stop signals: held back, once, and what an interrupt did to the output -----------------
# (issue 23 items 3 and 15; real signals to this process, so the handlers are put back)


@pytest.fixture
def stop_handlers():
    """Whatever the tests do to SIGINT, SIGTERM and SIGHUP is undone afterwards."""
    import signal
    signums = [s for s in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, s)]
    old = {s: signal.getsignal(getattr(signal, s)) for s in signums}
    signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    for s, handler in old.items():
        signal.signal(getattr(signal, s), handler)


def test_deferred_holds_a_signal_back_until_the_block_ends(stop_handlers):
    import os
    import signal

    from streamer.signals import Terminated, deferred, stop_signals
    reached = []
    with stop_signals(), pytest.raises(Terminated):
        with deferred():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.2)  # a signal that were not held would be raised in here
            reached.append("end of block")
    assert reached == ["end of block"]


def test_a_second_signal_while_stopping_cannot_cut_the_stop_short(stop_handlers):
    """SIGTERM stops the body; Ctrl+C during its cleanup is ignored, so the cleanup ends
    (threads joined, files removed), and the status is the first signal's."""
    import os
    import signal
    lines: list[str] = []
    cleaned = []

    def body():
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(10)
        finally:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.2)
            cleaned.append(True)

    assert run_main(body, lines.append, after_interrupt=": stopped") == 143
    assert cleaned and lines == ["interrupted by SIGTERM: stopped"]
    # the command is exiting: one more signal must not cut that short either
    assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN


def test_a_signal_the_process_was_started_ignoring_stays_ignored(stop_handlers):
    """`nohup run_video.py ...` ignores SIGHUP: closing the terminal must not stop it."""
    import signal

    from streamer.signals import stop_once, stop_signals
    if not hasattr(signal, "SIGHUP"):
        pytest.skip("no SIGHUP here")
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    with stop_signals():
        assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
    with stop_once():
        assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
        assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_IGN, signal.SIG_DFL)


def test_an_interrupt_says_what_became_of_the_output_being_written(tmp_path):
    from streamer.sinks.png_sequence import PngSequenceSink
    lines: list[str] = []
    frame = Frame(0, 0, TB, 0.0, np.zeros((8, 8, 3), np.uint8))

    def stopped_while_writing():
        with PngSequenceSink(tmp_path / "a" / "%05d.png") as sink:
            sink.write(frame)
            raise KeyboardInterrupt

    def stopped_after_the_rename():
        with PngSequenceSink(tmp_path / "b" / "%05d.png") as sink:
            sink.write(frame)
            sink.finish()
            raise KeyboardInterrupt

    assert run_main(stopped_while_writing, lines.append, ": stopped") == EXIT_INTERRUPTED
    assert lines[-1] == f"interrupted: stopped; the unfinished output {tmp_path / 'a'} was removed"
    assert run_main(stopped_after_the_rename, lines.append, ": stopped") == EXIT_INTERRUPTED
    assert lines[-1] == f"interrupted: stopped; {tmp_path / 'b'} was already complete and is kept"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]
    assert [p.name for p in (tmp_path / "b").iterdir()] == ["00001.png"]

"""Convert one chunk of a video (see chunks.py) into a video-only piece the joiner
concatenates.

The worker seeks to the chunk's warm-up keyframe, decodes and stylises every frame from
there, and writes only the chunk's own frames (`start <= pts < end`) with the same encoder
settings every chunk uses; the first written frame is the encoder's first, so each piece
starts with a keyframe. Frames go through the same sink as a single-machine run
(VideoFileSink, alpha included: with --background transparent the piece is encoded with the
output's alpha encoder, so the joined file keeps the alpha channel).

Pieces are MP4 files where MP4 can hold the stream: MP4 stores every packet's pts and dts
exactly (its track counts in the input's time base, or an exact multiple of it; Matroska
would round to milliseconds, and NUT drops the first packets' dts, which the joiner needs)
and holds the codec's global header, which the joiner checks is the same in every piece.
ProRes goes in MOV (the same exact timing), and VP9 with alpha in Matroska: its alpha plane
travels as Matroska block side data, which MP4 cannot carry, and its millisecond timestamps
are those of the WebM / Matroska output it is joined into anyway (VP9 does not reorder
frames, so pts and dts agree). A piece is written under a temporary name and renamed when
complete (VideoFileSink), so a worker killed mid-chunk leaves only a `.partial-*` file that
nothing reads.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from streamer.frame import Frame
from streamer.models.download import sha256_file
from streamer.pipeline.core import Pipeline, PipelineStats
from streamer.sinks.video_file import VideoFileSink
from streamer.sources.video_file import VideoFileSource
from streamer.stages import Sink
from streamer.toon.stage import ToonStage, ring_size

from .chunks import Chunk
from .convert import Job, engine_batch


def piece_suffix(codec: str, alpha: bool = False) -> str:
    """The container of a piece encoded with `codec` (see the module docstring)."""
    if codec == "prores_ks":
        return ".mov"
    if alpha and codec == "libvpx-vp9":
        return ".mkv"
    return ".mp4"


class ChunkSource(VideoFileSource):
    """A VideoFileSource that starts at a keyframe and ends before `end` (a pts)."""

    name = "video chunk"

    def __init__(self, path: Path, decode_from: int | None, end: int | None, *,
                 warm_from: int | None = None, threads: int = 1):
        self._seek_to = decode_from
        self._end = end
        self._from = warm_from  # earlier frames are decoded (to reach it) and dropped
        super().__init__(path, copy_audio=False, threads=threads)

    def _probe(self, copy_audio: bool) -> None:
        if self._seek_to is not None:
            v = self._video_stream()
            # backward: the keyframe at or before the pts (MP4 indexes samples by dts,
            # which is never after the keyframe's pts)
            self._container.seek(self._seek_to, stream=v, backward=True, any_frame=False)
        super()._probe(copy_audio)
        # The file's promised packet count is for the whole stream; a chunk reads part.
        self._expected_packets = 0

    def frames(self):
        for frame in super().frames():
            if self._end is not None and frame.pts is not None and frame.pts >= self._end:
                break  # the decoder delivers in presentation order: the rest are later
            if self._from is not None and frame.pts is not None and frame.pts < self._from:
                continue
            yield frame


class _ChunkSink(Sink):
    """Write the frames at or after `start`; the warm-up frames before it are dropped."""

    name = "video chunk"

    def __init__(self, inner: VideoFileSink, start: int):
        self.inner = inner
        self.start = start
        self.info = inner.info
        self.written = 0
        self.warmed = 0
        self.last_pts: int | None = None
        self.end_pts: int | None = None

    def write(self, frame: Frame) -> None:
        if frame.pts is not None and frame.pts < self.start:
            self.warmed += 1
            return
        self.inner.write(frame)
        self.written += 1
        self.last_pts = frame.pts

    def finish(self) -> None:
        if self.last_pts is not None:
            # where this piece's last frame ends; the last piece's is the video's end
            self.end_pts = self.last_pts + self.inner.final_duration()
        self.inner.finish()

    def describe(self) -> str:
        return self.inner.describe()

    def _release(self) -> None:
        self.inner.close()


@dataclass
class ChunkResult:
    index: int
    path: str
    frames: int
    warmup: int
    end_pts: int | None
    seconds: float
    sha256: str
    size: int
    busy_s: dict

    def to_dict(self) -> dict:
        return asdict(self)


def encode_chunk(src: Path, chunk: Chunk, piece: Path, job: Job, *, codec: str,
                 on_frames: Callable[[int], None] | None = None,
                 side_nice: int = 10, decode_threads: int = 1) -> ChunkResult:
    """Convert `chunk` of `src` into `piece` (a path with piece_suffix(codec, job.alpha),
    replaced if it exists).

    `codec`: the final output's encoder (every piece must use the same); `on_frames` gets
    the number of chunk frames written so far about every 0.2 s. Decoding and encoding run
    at a lower priority (`side_nice`), as in convert_video, so the engine's threads, sized
    to the worker's CPUs, keep the cores: the decoder on `decode_threads`, the encoder on
    its own choice of threads, as a single-machine run has it."""
    s = job.settings
    t0 = time.perf_counter()
    with ChunkSource(src, chunk.decode_from, chunk.end, warm_from=chunk.warm_from,
                     threads=decode_threads) as source:
        inner = VideoFileSink(piece, source.info, None, codec=codec or None,
                              crf=s.crf, preset=s.preset, overwrite=True,
                              open_in_writer=side_nice > 0, alpha=job.alpha)
        with _ChunkSink(inner, chunk.start) as sink:
            batch = engine_batch(s, job.engine())
            flow = job.stylise(ring_size(s.queue, batch), source.info.fps)
            pipe = Pipeline(source, ToonStage(flow, batch), sink, queue_size=s.queue,
                            side_nice=side_nice)

            def tick(_st: PipelineStats) -> None:
                if on_frames is not None:
                    on_frames(sink.written)

            st = pipe.run(on_tick=tick)
            if sink.written != chunk.frames:
                raise RuntimeError(f"chunk {chunk.index}: wrote {sink.written} frames, the "
                                   f"plan has {chunk.frames}")
            if on_frames is not None:
                on_frames(sink.written)
    return ChunkResult(chunk.index, str(piece), sink.written, sink.warmed, sink.end_pts,
                       time.perf_counter() - t0, sha256_file(piece), piece.stat().st_size,
                       {"decode": st.busy_s["source"], "toon": st.busy_s["toon"],
                        "encode": st.busy_s["sink"]})

"""Video packet timing for the file sink: each encoded packet gets its duration from the next
frame's pts, so the stream ends when the input's last frame ends, and packets are muxed one
late so the last can be stretched for MP4/MOV (which count a track's length from decode
timestamps: with reordered frames and a variable rate that total falls short)."""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction


@dataclass
class SinkStats:
    frames: int = 0
    video_packets: int = 0
    audio_packets: int = 0
    bytes: int = 0


class VideoPackets:
    """Times and muxes the video packets of one output stream."""

    def __init__(self, out, stats: SinkStats, time_base: Fraction, rate: Fraction | None,
                 *, mov: bool, cfr: bool):
        self._out = out
        self.stats = stats
        self.time_base = time_base
        self._rate = rate
        self._mov = mov
        self._cfr = cfr
        self._next_pts: dict[int, int] = {}  # frame pts -> the next frame's pts
        self._waiting: list = []  # packets whose frame has no successor yet
        self.last_pts: int | None = None
        self._last_duration: int | None = None
        self._last_interval: int | None = None
        self._first_pts: int | None = None
        self._first_dts: int | None = None
        self._held = None  # the last video packet, muxed one packet late (see finish)

    def frame(self, pts: int, duration: int | None) -> None:
        """A frame with this output pts (and input duration) goes to the encoder now."""
        if self.last_pts is not None:
            self._next_pts[self.last_pts] = pts
            self._last_interval = pts - self.last_pts
        else:
            self._first_pts = pts
        self.last_pts = pts
        self._last_duration = None if self._cfr else duration

    def mux(self, packets) -> None:
        """Mux the packets whose duration is known (their frame's successor was seen)."""
        if packets:
            self._waiting.extend(packets)
        if not self._waiting:
            return
        keep = []
        for p in self._waiting:
            nxt = self._next_pts.pop(p.pts, None)
            if nxt is None:
                keep.append(p)
                continue
            p.duration = nxt - p.pts
            self._mux_one(p)
        self._waiting = keep

    def _mux_one(self, p) -> None:
        if self._first_dts is None:
            self._first_dts = p.dts
        held, self._held = self._held, p
        if held is not None:
            self._write(held)

    def _write(self, p) -> None:
        self.stats.video_packets += 1
        self.stats.bytes += p.size
        self._out.mux(p)

    def final_duration(self) -> int:
        """How long the last frame shows: its own duration from the input, else the
        interval before it, else one frame at the average rate."""
        if self._last_duration:
            return self._last_duration
        if self._last_interval:
            return self._last_interval
        if self._rate:
            return max(1, round(1 / (self._rate * self.time_base)))
        return 1

    def finish(self, packets) -> None:
        """The encoder's last packets: mux everything, the last packet stretched for MP4/MOV
        to reach the last frame's end."""
        self._waiting.extend(packets)
        if self.last_pts is not None:
            self._next_pts[self.last_pts] = self.last_pts + self.final_duration()
        self.mux(None)
        held, self._held = self._held, None
        if held is None:
            return
        if self._mov and self._first_pts is not None and held.dts is not None:
            end = self.last_pts + self.final_duration()
            need = (end - self._first_pts) - (held.dts - self._first_dts)
            if need > (held.duration or 0):
                held.duration = need
        self._write(held)

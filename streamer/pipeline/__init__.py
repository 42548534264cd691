"""The frame pipeline: source -> toon -> sink on three threads (core), and the offline
conversion of files built on it (offline, the run_video.py command)."""
from .core import END, FrameQueue, Pipeline, PipelineError, PipelineStats, Stopped

__all__ = ["END", "FrameQueue", "Pipeline", "PipelineError", "PipelineStats", "Stopped"]

"""The generic frame pipeline: source -> toon -> sink on three threads joined by bounded
queues. It knows the stage protocols and `Frame`, nothing of files, cameras or models."""
from .core import END, FrameQueue, Pipeline, PipelineError, PipelineStats, Stopped

__all__ = ["END", "FrameQueue", "Pipeline", "PipelineError", "PipelineStats", "Stopped"]

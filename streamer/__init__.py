"""Toonstream: a real-time portrait cartoonizer (the layout: docs/ARCHITECTURE.md)."""
import sys as _sys

# OpenVINO's Python package reports usage to Google Analytics as soon as it is imported
# (openvino.tools.ovc -> openvino_telemetry), from a thread pool that forks a process per
# event. Forked from that worker thread, the child can hang for ever tearing down the main
# thread's PyAV state (seen in run_video's and the Ray tests), and a cartoonizer has no
# business on the network. With the package marked absent, OpenVINO and NNCF fall back on
# their own no-op stubs.
_sys.modules.setdefault("openvino_telemetry", None)

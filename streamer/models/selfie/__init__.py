"""MediaPipe selfie segmentation: its TFLite files read into one ONNX graph (graph.py)."""

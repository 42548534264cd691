"""MediaPipe selfie segmentation: its TFLite files read into one ONNX graph (graph.py).

The graph's input and output names live here so that users of the built model do not
import onnx (graph.py does, to build it)."""

INPUT_NAME = "frame_bgr"  # uint8 BGR [N, h, w, 3] at the model's input size
OUTPUT_NAME = "mask"  # float32 [N, h, w], person probability

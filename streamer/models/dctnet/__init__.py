"""DCT-Net as files: read and check the official weights (weights) and build the ONNX graph
every engine runs (onnx_graph)."""

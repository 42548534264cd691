"""Mobile-DCTNet: a light generator distilled from the official styles, one network for
several styles chosen by a style code (issue 26). See net.py for the layers, graph.py for
the ONNX graph the engines run, and store.py for the student file in the model store."""

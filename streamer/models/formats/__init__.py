"""Readers for the file formats model weights come in, without their frameworks: protobuf
wire format (protowire), TensorFlow GraphDef (graphdef) and FlatBuffers (flatbuf, TFLite)."""

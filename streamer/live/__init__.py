"""Live streaming (run_stream.py): camera -> toon -> virtual camera / preview / network."""

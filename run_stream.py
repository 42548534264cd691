#!/usr/bin/env python3
"""Cartoonize a camera live to a virtual camera, a preview or a network stream:
`python run_stream.py -h`."""
import sys

from streamer.live.app import main

if __name__ == "__main__":
    sys.exit(main())

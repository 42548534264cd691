#!/usr/bin/env python3
"""Cartoonize a video file, a still image, or a folder of them: `python run_video.py -h`."""
import sys

from streamer.video.app import main

if __name__ == "__main__":
    sys.exit(main())

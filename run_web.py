#!/usr/bin/env python3
"""A web page for photo, video and webcam cartoonization: `python run_web.py -h`."""
import sys

from streamer.web.cli import main

if __name__ == "__main__":
    sys.exit(main())

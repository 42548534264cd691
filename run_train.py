#!/usr/bin/env python3
"""Train a personal style from a few cartoon images and your photos: `python run_train.py -h`."""
import sys

from streamer.train.cli import main

if __name__ == "__main__":
    sys.exit(main())

"""`python -m streamer.models ...`"""
import sys

from .cli import main

sys.exit(main())

"""`python -m streamer.models distill STYLE [STYLE ...] --photos PATH [PATH ...]`: the
options and the command (models/cli.py adds the subcommand; torch is imported only when
it runs)."""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from streamer.options import ConfigError, Range


def add_distill_parser(sub, common: argparse.ArgumentParser) -> None:
    from streamer.models.mobile.net import Arch

    d = sub.add_parser("distill", parents=[common],
                       help="train a light network (Mobile-DCTNet) from official styles")
    d.add_argument("styles", nargs="+", metavar="STYLE", help="official styles it will hold")
    d.add_argument("--photos", required=True, nargs="+", metavar="PATH", type=Path,
                   help="folders, images or videos (a minute of your webcam is ideal)")
    d.add_argument("--name", default=None, help="the light network's name (default STYLE-STYLE)")
    d.add_argument("--arch", default=Arch().tag(), help=f"widths and blocks ({Arch().tag()})")
    # every number through the one range check (streamer/options.py): nan, inf, out of range
    # are refused by the parser, exit 2
    d.add_argument("--steps", type=Range(1, 10_000_000, integer=True).arg(), default=2000,
                   help="training steps (2000)")
    d.add_argument("--size", type=Range(16, 1024, integer=True).arg(), default=128,
                   help="training crop size in px, a multiple of 4 (128)")
    d.add_argument("--batch", type=Range(1, 1024, integer=True).arg(), default=4,
                   help="crops per step (4)")
    d.add_argument("--lr", type=Range(0, 1, above=True).arg(), default=2e-3)
    d.add_argument("--l1", type=Range(0, 1000).arg(), default=1.0, help="L1 weight (1)")
    d.add_argument("--perceptual", type=Range(0, 1000).arg(), default=1.0,
                   help="feature loss weight (1)")
    d.add_argument("--no-heads", action="store_true", help="no head part (faces)")
    d.add_argument("--video-frames", type=Range(1, 100_000, integer=True).arg(), default=60,
                   help="frames sampled per video (60)")
    d.add_argument("--preview-every", type=Range(0, 10_000_000, integer=True,
                                                 note="0: none").arg(), default=100)
    d.add_argument("--workdir", type=Path, default=None,
                   help="checkpoint, previews, loss curve (default toonstream-distill-NAME)")
    d.add_argument("--resume", action="store_true", help="continue from the checkpoint")
    d.add_argument("--seed", type=Range(0, 2**31 - 1, integer=True).arg(), default=0)
    d.add_argument("--no-progress", action="store_true")
    d.add_argument("-y", "--yes", action="store_true", help="replace a light network of that name")


def cmd_distill(store, args: argparse.Namespace) -> int:
    from .distill import DistillRequest, run_distill

    if args.size % 4:  # the ranges are checked by the parser; the model's strides need this
        raise ConfigError(f"--size must be a multiple of 4, got {args.size}")
    name = args.name or "-".join(args.styles)
    req = DistillRequest(
        styles=list(args.styles), photos=list(args.photos), name=name, arch=args.arch,
        steps=args.steps, size=args.size, batch=args.batch, lr=args.lr, l1=args.l1,
        perceptual=args.perceptual, heads=not args.no_heads, video_frames=args.video_frames,
        preview_every=args.preview_every,
        workdir=args.workdir or Path(f"toonstream-distill-{name}"), resume=args.resume,
        seed=args.seed, progress=not args.no_progress and sys.stderr.isatty(),
        overwrite=args.yes,
        command="python -m streamer.models " + shlex.join(sys.argv[2:] if len(sys.argv) > 2
                                                          else ["distill", *args.styles]))
    out = run_distill(store, req, lambda line: print(line, file=sys.stderr, flush=True))
    print(out.path)
    return 0

"""run_train.py / toonstream-train: train a personal style from cartoon exemplars and photos.

    python run_train.py NAME --from STYLE --exemplars DIR --photos PATH [PATH ...]

The adapter is written into the model store when the run completes (one safetensors file,
verified on load like every model); `--style NAME` then works in run_video, run_stream and
the web page. The run's working folder (`--workdir`, default ./toonstream-train/NAME) holds
the checkpoint, the preview sheets and the loss curve; Ctrl+C writes the checkpoint and
`--resume` continues.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from streamer.errors import UsageError, UserError
from streamer.options import Range
from streamer.report import EXIT_OK, CommandParser, Log, run_main

from .losses import LossWeights



class TrainError(UserError, ValueError):
    """A training run that cannot start as asked (one line)."""


def build_parser() -> argparse.ArgumentParser:
    p = CommandParser(prog="run_train.py", description="Train a personal style: low-rank "
                      "adapters on an official style, from a few cartoon images and your photos.")
    p.add_argument("name", help="the new style's name (lowercase letters, digits, - and _)")
    p.add_argument("--from", dest="base", required=True, metavar="STYLE",
                   help="the official style to start from")
    p.add_argument("--exemplars", required=True, metavar="DIR",
                   help="10-200 cartoon images in the style you want (unpaired)")
    p.add_argument("--photos", required=True, nargs="+", metavar="PATH",
                   help="folders, images or videos of the people and rooms to stylise")
    p.add_argument("--steps", type=Range(1, 10_000_000, integer=True).arg(), default=300,
                   help="training steps (300)")
    p.add_argument("--rank", type=Range(1, 64, integer=True).arg(), default=8,
                   help="the adapters' rank (8)")
    p.add_argument("--size", type=Range(32, 512, integer=True).arg(), default=128,
                   help="training crop size in px, a multiple of 4 (128)")
    p.add_argument("--batch", type=Range(1, 64, integer=True).arg(), default=2,
                   help="crops per step (2)")
    p.add_argument("--lr", type=Range(0, 1, above=True).arg(), default=2e-3,
                   help="the adapters' learning rate (0.002)")
    p.add_argument("--device", default="torch-cpu", choices=("torch-cpu", "torch-cuda"))
    p.add_argument("--autocast", default="auto", choices=("auto", "on", "off"),
                   help="bf16 autocast: auto measures fp32 against bf16 here (default)")
    d = LossWeights()
    for name, help_ in (("adv", "adversarial"), ("cycle", "cycle consistency"),
                        ("perceptual", "perceptual (content)"),
                        ("calibration", "domain calibration"), ("identity", "identity (heads)")):
        p.add_argument(f"--{name}", type=Range(0, 1000, note="0: off").arg(),
                       default=getattr(d, name), metavar="W",
                       help=f"{help_} loss weight, 0 turns it off ({getattr(d, name):g})")
    p.add_argument("--parts", default="auto", choices=("auto", "bg", "h", "both"),
                   help="which models get an adapter: auto = both, the head when faces are found")
    p.add_argument("--video-frames", type=Range(1, 100_000, integer=True).arg(), default=60,
                   help="frames sampled per video (60)")
    p.add_argument("--preview-every", type=Range(0, 10_000_000, integer=True, note="0: none").arg(),
                   default=50, help="a preview sheet every N steps (50)")
    p.add_argument("--workdir", default=None, help="checkpoint, previews and loss curve "
                   "(default ./toonstream-train/NAME)")
    p.add_argument("--models", default=None, help="the model store (default $TOONSTREAM_MODELS)")
    p.add_argument("--resume", action="store_true", help="continue from the workdir's checkpoint")
    p.add_argument("--seed", type=Range(0, 2**31 - 1, integer=True).arg(), default=0)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("-y", "--yes", action="store_true", help="replace a personal style of that name")
    return p


def main(argv: list[str] | None = None, log: Log | None = None) -> int:
    log = log or Log()
    # Parsed inside run_main: a refused option is one `error:` line and exit 2.
    return run_main(lambda: train(build_parser().parse_args(argv), log), log)


def train(args: argparse.Namespace, log) -> int:
    import importlib.util

    from streamer.models import open_store

    if importlib.util.find_spec("torch") is None:
        raise TrainError("training needs PyTorch: pip install 'toonstream[torch]' (the CPU "
                         "build is enough; add the CUDA build for --device torch-cuda)")
    from .run import TrainRequest, run_training

    name = args.name
    store = open_store(args.models)
    if args.size % 4:
        raise UsageError(f"--size must be a multiple of 4 (the network halves it twice), got "
                         f"{args.size}")
    request = TrainRequest(
        name=name, base=args.base, exemplars=Path(args.exemplars),
        photos=[Path(p) for p in args.photos], steps=args.steps, rank=args.rank,
        size=args.size, batch=args.batch, lr=args.lr, device=args.device,
        autocast=args.autocast,
        losses=LossWeights(adv=args.adv, cycle=args.cycle, perceptual=args.perceptual,
                           calibration=args.calibration, identity=args.identity),
        parts=args.parts, video_frames=args.video_frames, preview_every=args.preview_every,
        workdir=Path(args.workdir) if args.workdir else Path("toonstream-train") / name,
        resume=args.resume, seed=args.seed, progress=not args.no_progress and sys.stderr.isatty(),
        overwrite=args.yes)
    run_training(store, request, log)
    return EXIT_OK


"""`python run_web.py`: the web page for photos, videos and the webcam.

Serves on 127.0.0.1 only unless `--host` says otherwise (then it warns: anyone who can reach
the address can use the model, and the machine's CPU or GPU, and read what is converted).
"""
from __future__ import annotations

import argparse
import atexit
import dataclasses
import ipaddress
import re
import sys

from streamer.commands import prog
from streamer.config import (SHORT_SIDE, THREADS, FaceSettings, TemporalOptions,
                             add_background_options, add_face_options, add_temporal_options)
from streamer.config import add_net_option
from streamer.errors import UserError
from streamer.options import Range
from streamer.report import EXIT_ERROR, EXIT_OK, CommandParser, Log, fail, one_line
from streamer.signals import Terminated, exit_status, signal_name, stop_signals
from streamer.toon.engine import DEVICES

DEFAULT_HOST = "127.0.0.1"
FACE_FIELDS = ({f.name for f in dataclasses.fields(FaceSettings)} - {"faces"}) | {
    f.name for f in dataclasses.fields(TemporalOptions)}
DEFAULT_PORT = 7860
# The number options that are not settings of run_video (those are in config.py).
PORT = Range(1, 65535, integer=True)
STREAM_EVERY = Range(0.01, 60)  # seconds between webcam frames the browser sends
MAX_VIDEO_SECONDS = Range(0, 86400, above=True)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _auth(value: str) -> tuple[str, str]:
    user, sep, password = value.partition(":")
    if not sep or not user or not password:
        raise argparse.ArgumentTypeError("give --auth as USER:PASSWORD")
    return user, password


_FILE_SIZE = re.compile(r"([0-9]+)\s*(b|kb|mb|gb|tb)?", re.IGNORECASE)


def file_size(value: str) -> str:
    """An upload limit as Gradio takes it ("50mb", "1gb"; a bare number is bytes). Checked
    here: Gradio parses it only when the server starts, with a traceback."""
    m = _FILE_SIZE.fullmatch(value.strip())
    if m is None or int(m.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"not a file size: {value!r} (give a number with "
                                         f"b, kb, mb, gb or tb, e.g. 50mb)")
    return f"{int(m.group(1))}{(m.group(2) or 'b').lower()}"


def build_parser() -> argparse.ArgumentParser:
    from .service import LIVE_SHORT_SIDE, Limits

    lim = Limits()
    p = CommandParser(
        prog=prog("run_web.py"),
        description="A web page that cartoonizes photos, video files and your webcam with "
                    "DCT-Net (Gradio). Open the address it prints in a browser.")
    p.add_argument("--host", default=DEFAULT_HOST,
                   help="address to serve on (default 127.0.0.1: this machine only; "
                        "0.0.0.0 serves every network interface and prints a warning)")
    p.add_argument("--port", type=PORT.arg(), default=DEFAULT_PORT,
                   help="port (default 7860)")
    p.add_argument("--auth", type=_auth, metavar="USER:PASSWORD",
                   help="ask for this user name and password")
    p.add_argument("--models", metavar="DIR",
                   help="model store (default: $TOONSTREAM_MODELS, else the user cache)")
    p.add_argument("--device", choices=DEVICES, default="auto",
                   help="inference device (default auto)")
    p.add_argument("--precision", choices=("exact", "fast"), default="exact",
                   help="photos and videos: exact: fp32, what run_video writes by default; "
                        "fast: bf16/fp16")
    p.add_argument("--webcam-precision", choices=("auto", "exact", "fast", "int8"),
                   default="auto",
                   help="the webcam's: auto (default) measures fast, int8 where built and "
                        "the light network where installed at the first webcam frame, and "
                        "takes the fastest that keeps the face")
    add_net_option(p, default="official")
    p.add_argument("--threads", type=THREADS.arg(), help="engine threads")
    p.add_argument("--live-size", type=SHORT_SIDE.arg(), default=LIVE_SHORT_SIDE, metavar="PX",
                   help=f"working short side of webcam frames (default {LIVE_SHORT_SIDE})")
    p.add_argument("--stream-every", type=STREAM_EVERY.arg(), default=0.2, metavar="S",
                   help="seconds between webcam frames sent by the browser (default 0.2)")
    p.add_argument("--max-video-seconds", type=MAX_VIDEO_SECONDS.arg(),
                   default=lim.max_video_seconds, metavar="S",
                   help=f"longest video accepted (default {lim.max_video_seconds:g})")
    p.add_argument("--max-file-size", type=file_size, default=lim.max_file_size, metavar="SIZE",
                   help=f"largest upload, e.g. 50mb, 1gb (default {lim.max_file_size})")
    add_face_options(p, mode=False)
    add_background_options(p, key_color=False)
    add_temporal_options(p)
    return p


def main(argv: list[str] | None = None, log: Log | None = None) -> int:
    log = log or Log()
    try:
        args = build_parser().parse_args(argv)
    except UserError as exc:  # a refused option (CommandLineError): exit 2
        return fail(exc, log)
    try:
        from . import app as web_app
    except ImportError as exc:
        log(f"error: the web page needs Gradio ({one_line(exc)}): "
            f"pip install 'toonstream[web]'")
        return EXIT_ERROR
    from .service import Limits, ToonService

    if not _is_loopback(args.host):
        log(f"warning: serving on {args.host}: anyone who can reach this address can use "
            f"the model (and this machine's CPU/GPU) and upload files"
            + ("" if args.auth else "; add --auth USER:PASSWORD to ask for a password"))
    try:
        service = ToonService(
            models=args.models, device=args.device, precision=args.precision,
            webcam_precision=args.webcam_precision,
            threads=args.threads, live_size=args.live_size, net=args.net,
            limits=Limits(max_file_size=args.max_file_size,
                          max_video_seconds=args.max_video_seconds),
            face_options={k: v for k, v in vars(args).items()
                          if k in FACE_FIELDS or k == "seg_model"},
            background=getattr(args, "background", "keep"))
    except UserError as exc:
        return fail(exc, log)
    atexit.register(service.close)
    try:
        log(f"engine: {service.describe()}; {service.flows.describe_net()}; styles: "
            f"{', '.join(service.styles)}")
        log(f"temporary files: {service.workdir} (removed on exit)")
        log("preparing style previews ...")
        demo = web_app.build_app(service, stream_every=args.stream_every)
    except UserError as exc:
        service.close()
        return fail(exc, log)
    stopped: list[int] = []

    def stop(signum: int) -> None:
        # SIGTERM/SIGHUP (a service manager, `kill`, a closed terminal) stop the server
        # like Ctrl+C, so the temporary files go too; the exit status names the signal.
        stopped.append(signum)
        raise Terminated(signum)

    try:
        with stop_signals(stop):
            web_app.launch(demo, service, host=args.host, port=args.port, auth=args.auth)
    except KeyboardInterrupt:
        pass
    except OSError as exc:  # the port is taken
        log(f"error: cannot serve on {args.host}:{args.port}: {one_line(exc)}")
        return EXIT_ERROR
    finally:
        service.close()
    if stopped:
        log(f"stopped by {signal_name(stopped[0])}; temporary files removed")
        return exit_status(signum=stopped[0])
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

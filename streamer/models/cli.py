"""`python -m streamer.models`: fetch, import, list and verify model files, and install,
remove and export personal styles (one .safetensors file each, see personal.py).

Every user-facing failure is one `error: ...` line on stderr, with the exit status every
command uses (streamer.report): 2 for a command that is wrong as written (an unknown style,
an option out of range, a bad --mirror), 1 for a run that failed (no network, a refused
import, a bad calibration folder, a failed verification), 130/143 when stopped. Progress
bars and notes go to stderr too, so stdout carries only results.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from streamer.commands import prog
from streamer.errors import UserError
from streamer.options import Range
from streamer.report import CommandParser, Log, fail, run_main

from .calibration import check_material
from .catalog import PARTS
from .download import DownloadOptions, check_mirror
from .errors import BadSetting, StoreError
from .layout import SEG_VARIANTS
from .paths import describe_root_origin
from .personal import SUFFIX
from .store import PRECISIONS, Store

log = logging.getLogger("streamer.models")

TIMEOUT = Range(0, 3600, above=True)  # seconds without data before a try is given up
RETRIES = Range(0, 100, integer=True)  # extra tries after a network failure


class _LineFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        level = "note" if record.levelno < logging.WARNING else record.levelname.lower()
        return f"{level}: {record.getMessage()}"


def _build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--models", metavar="DIR", default=None,
                        help="model store folder (default: $TOONSTREAM_MODELS, else the "
                             "per-user cache, e.g. ~/.cache/toonstream/models)")
    p = CommandParser(prog=prog("python -m streamer.models"),
                      description="Manage Toonstream's model store: the official DCT-Net "
                                  "weights, the face detector, the head mask and the ONNX "
                                  "models built from them.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser("list", parents=[common],
                   help="show installed files and personal styles, their origin and "
                        "checksums")
    sub.add_parser("verify", parents=[common],
                   help="re-hash installed files against the catalog and check their structure")

    f = sub.add_parser("fetch", parents=[common],
                       help="download STYLE, face, mask, seg or all (several: `fetch face mask`)")
    f.add_argument("targets", nargs="+", metavar="STYLE|all|face|mask|seg")
    f.add_argument("--mirror", metavar="URL", default=None,
                   help="fetch from URL/<model_id>/<path> instead of the official hosts "
                        "(default: $TOONSTREAM_MODEL_MIRROR)")
    f.add_argument("--timeout", type=TIMEOUT.arg(), default=30.0, metavar="S",
                   help="give up a try after S seconds without data (default 30)")
    f.add_argument("--retries", type=RETRIES.arg(), default=3, metavar="N",
                   help="extra tries after a network failure, with backoff (default 3)")
    f.add_argument("--no-progress", action="store_true", help="no progress bar")
    f.add_argument("--no-build", action="store_true", help="do not build the ONNX models")
    f.add_argument("--precision", choices=PRECISIONS, default="fp32")
    _calibration_option(f)

    i = sub.add_parser("import", parents=[common],
                       help="add a personal style or a light network (.safetensors), "
                            "MediaPipe's selfie "
                            "segmentation .tflite, or with --style a .pb or .tflite you "
                            "downloaded yourself")
    i.add_argument("file", type=Path, metavar="FILE")
    i.add_argument("--style", default=None, metavar="NAME",
                   help="the official style a .pb or .tflite holds; leave it out for a "
                        "selfie segmentation .tflite (general or landscape, told by its "
                        "input size)")
    i.add_argument("--part", choices=PARTS, default=None,
                   help="bg: whole-frame model (default); h: face-crop model")
    i.add_argument("--name", default=None, metavar="NAME",
                   help="a personal style's name (default: the one in its file)")
    i.add_argument("-y", "--yes", action="store_true",
                   help="replace an installed personal style of the same name")
    i.add_argument("--precision", choices=PRECISIONS, default=None,
                   help="the ONNX model to build for a style (default fp32)")
    _calibration_option(i)
    i.add_argument("--force", action="store_true",
                   help="replace an installed, intact file with different weights")

    r = sub.add_parser("remove", parents=[common],
                       help="remove a personal style and the models built from it")
    r.add_argument("name", metavar="NAME")

    e = sub.add_parser("export", parents=[common],
                       help="copy a personal style's single file, to share it")
    e.add_argument("name", metavar="NAME")
    e.add_argument("dest", type=Path, metavar="FILE", help=f"a *{SUFFIX} file or a folder")
    e.add_argument("-y", "--yes", action="store_true", help="replace FILE if it exists")

    pa = sub.add_parser("path", parents=[common],
                        help="print the ONNX model of a style (or of seg), building it if "
                             "needed")
    pa.add_argument("style", metavar="STYLE|seg")
    pa.add_argument("--part", choices=PARTS + SEG_VARIANTS, default=None,
                    help="a style's bg (default) or h; seg's general (default) or landscape")
    pa.add_argument("--precision", choices=PRECISIONS, default=None,
                    help="a style's fp32 (default), fp16 or int8")
    _calibration_option(pa)
    from streamer.train.distill_cli import add_distill_parser  # torch only when it runs
    add_distill_parser(sub, common)
    return p


def _calibration_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--calibration", metavar="DIR|IMAGE|VIDEO|builtin", default=None,
                        help="with --precision int8: your own frames to calibrate on, beside "
                             "the built-in synthetic set, or `builtin` for that set alone "
                             "(./builtin for a folder of that name); an int8 model already "
                             "built is kept unless this asks for another calibration "
                             "(default: $TOONSTREAM_CALIBRATION)")


def _check_options(args: argparse.Namespace) -> None:
    """What argparse cannot see: options that would do nothing in the combination given."""
    calibration = getattr(args, "calibration", None)
    if calibration is not None:
        if getattr(args, "precision", None) != "int8":
            raise BadSetting("--calibration calibrates int8 models only: add --precision "
                             "int8, or leave --calibration out")
        check_material(calibration)
    if args.command == "path":
        seg = args.style == "seg"
        if args.part is not None and (args.part in SEG_VARIANTS) != seg:
            raise BadSetting(f"--part {args.part} is not a part of {args.style}: "
                             + ("seg has general and landscape" if seg else
                                f"a style has {' and '.join(PARTS)} (the segmentation "
                                f"model's are `path seg --part general|landscape`)"))
        if seg and args.precision not in (None, "fp32"):
            raise BadSetting(f"the segmentation model is built in fp32 only; leave "
                             f"--precision {args.precision} out")


def _cmd_list(store: Store, args: argparse.Namespace) -> int:
    print(f"model store: {store.root.resolve()}  (from {describe_root_origin(args.models)})")
    for e in store.entries():
        if not e.installed:
            print(f"  {e.label:<20} {e.local:<40} {e.catalog}")
            continue
        print(f"  {e.label:<20} {e.local:<40} {e.size:>11,} B  {e.fmt}  {e.catalog}")
        print(f"  {'':<20} sha256 {e.sha256}  from {e.origin}")
    from .mobile.store import students
    for line in students(store).list_lines():  # the light networks (issue 26)
        print(line)
    _list_personal(store)
    built = store.onnx_entries()
    print(f"built ONNX models in {store.onnx_dir}:" + ("" if built else " none yet"))
    for path, meta in built:
        src = Path(meta.get("source_file", ""))
        state = store.onnx_state(path, meta)[1]
        if meta.get("precision") == "int8":
            print(f"  {path.name:<28} int8  from {meta.get('fp32_model', '?')} by "
                  f"{meta.get('quantizer', '?')}, calibration {meta.get('calibration_source', '?')}"
                  f", {state}")
            continue
        print(f"  {path.name:<28} {meta.get('precision', '?'):<5} from {src.name or '?'} "
              f"({meta.get('source_format', '?')}), "
              f"converter {meta.get('converter_version', '?')}, {state}")
    return 0


def _list_personal(store: Store) -> None:
    rows = store.personal.rows()
    print(f"personal styles in {store.personal.folder}:" + ("" if rows else " none"))
    for r in rows:
        state = f"  {r.state}" if r.state else ""
        print(f"  {r.name:<20} on {r.base}, rank {r.rank}, {r.steps} steps, {r.exemplars} "
              f"exemplars  {r.local}  {r.size:,} B{state}")
        print(f"  {'':<20} sha256 {r.sha256}  from {r.origin}")


def _cmd_verify(store: Store, args: argparse.Namespace) -> int:
    from .mobile.store import students
    checks = store.verify() + students(store).verify()  # and the light networks
    if not checks:
        raise StoreError(f"no model files in {store.root}; run `python -m streamer.models fetch "
                         f"{store.catalog.styles[0]} --models {store.root}`")
    for c in checks:
        print(f"{'ok' if c.ok else 'FAIL':<5} {c.local}: {c.message}")
    bad = [c for c in checks if not c.ok]
    if bad:
        raise StoreError(f"{len(bad)} of {len(checks)} files failed verification in {store.root} "
                         f"(first: {bad[0].local})")
    print(f"all {len(checks)} files verified in {store.root}")
    return 0


def _cmd_fetch(store: Store, args: argparse.Namespace, phase: list[str]) -> int:
    if args.mirror:
        check_mirror(args.mirror, "--mirror")
    opts = DownloadOptions(timeout=args.timeout, retries=args.retries,
                           progress=False if args.no_progress else None)
    for target in args.targets:
        store.targets(target)  # every name is checked before anything is downloaded
    for target in dict.fromkeys(args.targets):
        phase[0] = "download"
        paths = store.fetch(target, mirror=args.mirror, options=opts, build=False)
        phase[0] = "build"
        for path in paths:
            print(path)
        if not args.no_build:
            store.build(target, args.precision)
    return 0


def _cmd_import(store: Store, args: argparse.Namespace) -> int:
    if args.file.suffix.lower() == SUFFIX:
        from .mobile.student import FORMAT, student_metadata

        if student_metadata(args.file).get("format") == FORMAT:
            return _import_student(store, args)
        return _import_personal(store, args)
    if args.name is not None:
        raise StoreError(f"--name names a personal style, a {SUFFIX} file; {args.file.name} "
                         f"is imported with --style STYLE")
    if args.style is None and (args.part or args.precision):
        given = [f"--{k} {getattr(args, k)}" for k in ("part", "precision") if getattr(args, k)]
        raise BadSetting(f"{' and '.join(given)} appl{'y' if len(given) > 1 else 'ies'} to a "
                         f"style's weights (with --style NAME); a selfie segmentation model "
                         f"has no parts and is built in fp32")
    # without --style: MediaPipe's selfie segmentation model (anything else is refused
    # with what import takes)
    res = store.import_file(args.file, args.style, args.part or "bg",
                            args.precision or "fp32", force=args.force)
    for note in res.notes:
        log.warning("%s", note)
    print(f"imported {res.path} ({res.source_format})")
    print(f"built {res.onnx}")
    return 0


def _import_student(store: Store, args: argparse.Namespace) -> int:
    """A light network (Mobile-DCTNet student), e.g. the generic one the repository ships."""
    from .mobile.store import students

    if args.style is not None or args.part is not None:
        raise StoreError(f"a light network ({args.file.name}) names its styles itself: drop "
                         f"--style/--part (--name NAME renames it)")
    shelf = students(store)
    dest = shelf.install(args.file, args.name, overwrite=args.yes or args.force)
    student, _ = shelf.load(dest.stem)
    print(f"imported light network {dest.stem} ({', '.join(student.styles)}) as {dest}")
    print(f"built {shelf.onnx(dest.stem, args.precision or 'fp32')}")
    return 0


def _import_personal(store: Store, args: argparse.Namespace) -> int:
    if args.style is not None or args.part is not None:
        raise StoreError(f"a personal style ({args.file.name}) names its base style itself: "
                         f"drop --style/--part (--name NAME renames it)")
    dest = store.install_personal(args.file, args.name, overwrite=args.yes or args.force)
    name = dest.stem
    base = store.base_style(name)
    print(f"imported personal style {name} (on {base}) as {dest}")
    if store.source_for(name, "bg") is None:
        log.warning("its base style %s is not installed: run `python -m streamer.models fetch "
                    "%s --models %s` before using it", base, base, store.root)
        return 0
    print(f"built {store.onnx_model_path(name, 'bg', args.precision or 'fp32')}")
    return 0


def _cmd_remove(store: Store, args: argparse.Namespace) -> int:
    for path in store.remove_personal(args.name):
        print(f"removed {path}")
    return 0


def _cmd_export(store: Store, args: argparse.Namespace) -> int:
    print(store.export_personal(args.name, args.dest, overwrite=args.yes))
    return 0


def _cmd_path(store: Store, args: argparse.Namespace) -> int:
    if args.style == "seg":
        print(store.seg_model_path(args.part or "general"))
    else:
        print(store.onnx_model_path(args.style, args.part or "bg", args.precision or "fp32"))
    return 0


def _cmd_distill(store: Store, args: argparse.Namespace) -> int:
    from streamer.train.distill_cli import cmd_distill  # torch and the face pipeline

    return cmd_distill(store, args)


_COMMANDS = {"list": _cmd_list, "verify": _cmd_verify,
             "import": _cmd_import, "path": _cmd_path, "remove": _cmd_remove,
             "export": _cmd_export, "distill": _cmd_distill}


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status instead of exiting (tests call it directly)."""
    try:
        args = _build_parser().parse_args(argv)
    except UserError as exc:  # a refused option (CommandLineError): exit 2
        return fail(exc, Log())
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_LineFormatter())
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False

    phase = ["work"]  # a fetch says when it downloads: what Ctrl+C leaves depends on it

    def body() -> int:
        _check_options(args)
        store = Store.open(args.models)
        if getattr(args, "calibration", None) is not None:
            store.calibration = args.calibration
        if args.command == "fetch":
            return _cmd_fetch(store, args, phase)
        return _COMMANDS[args.command](store, args)

    def after_interrupt() -> str:
        if phase[0] == "download":
            return ": a partial download is kept and resumed next time"
        # models are written under a temporary name and renamed when whole
        return ": nothing was left half-written (a model being built is built on next use)"
    try:
        return run_main(body, Log(), after_interrupt=after_interrupt)
    finally:
        log.removeHandler(handler)

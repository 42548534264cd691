"""Where run_video's outputs go: each input's output, a folder's files and their outputs, the
default output name, and the checks on an output before any work.

The single-machine run (app.py, convert.py) and the Ray driver (cluster.py) both map inputs
to outputs through these functions, so they agree on every name and every error line.
"""
from __future__ import annotations

from pathlib import Path

from streamer.sinks.image import ALPHA_IMAGE_SUFFIXES
from streamer.sinks.png_sequence import is_sequence_pattern
from streamer.sinks.video_file import FORMATS, OutputError, check_output_folder
from streamer.sources.image import IMAGE_SUFFIXES, is_image_path
from streamer.sources.video_file import MediaError

#: video outputs that keep the alpha channel of --background transparent by default
_ALPHA_VIDEO_SUFFIXES = (".webm", ".mov", ".mkv")


def input_targets(inputs: list[Path], output: Path | None) -> list[tuple[Path, Path | None]]:
    """Each input with its output: one input keeps `output` (None: the default name, see
    default_output); several go into the folder `output`, each by its own name. OutputError,
    one line, when several inputs have no output folder."""
    if len(inputs) == 1:
        return [(inputs[0], output)]
    if output is None:
        raise OutputError("several inputs need -o FOLDER")
    if output.exists() and not output.is_dir():
        raise OutputError(f"{output} is a file; several inputs need an output folder")
    return [(src, output / src.name) for src in inputs]


def default_output(src: Path, style: str, alpha: bool = False) -> Path:
    """`INPUT_STYLE` beside the input: a folder for a folder, else the input's type (a video
    in a container we cannot write becomes .mkv). With `alpha` a file gets a format that
    keeps the alpha channel (.png for a still, .webm for a video) unless its own does."""
    if src.is_dir():
        return src.with_name(f"{src.name}_{style}")
    still = is_image_path(src)
    suffix = src.suffix if src.suffix.lower() in FORMATS or still else ".mkv"
    dst = src.with_name(f"{src.stem}_{style}{suffix}")
    if alpha and still and dst.suffix.lower() not in ALPHA_IMAGE_SUFFIXES:
        return dst.with_suffix(".png")
    if alpha and not still and dst.suffix.lower() not in _ALPHA_VIDEO_SUFFIXES:
        return dst.with_suffix(".webm")
    return dst


def file_target(src: Path, dst: Path) -> Path:
    """A file input's output: `dst`, or the input's name inside it when `dst` is a folder."""
    return dst / src.name if dst.is_dir() else dst


def media_files(folder: Path, skip: Path) -> list[Path]:
    """The images and videos under `folder` (hidden ones and `skip` left out), sorted."""
    wanted = set(IMAGE_SUFFIXES) | set(FORMATS)
    out = []
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts):
            continue
        if skip in p.parents or p == skip:
            continue
        if p.is_file() and p.suffix.lower() in wanted:
            out.append(p)
    return out


def folder_targets(src: Path, dst: Path) -> list[tuple[Path, Path]]:
    """Every image and video under the folder `src`, with its output under `dst` by the same
    relative name (an output folder inside the input is left out). OutputError when `dst` is
    a file, MediaError when `src` holds nothing to convert."""
    if dst.exists() and not dst.is_dir():
        raise OutputError(f"{dst} is a file; a folder input needs an output folder")
    files = media_files(src, dst.resolve() if dst.exists() else dst.absolute())
    if not files:
        raise MediaError(f"{src}: no images or videos in this folder")
    return [(f, dst / f.relative_to(src)) for f in files]


def all_targets(inputs: list[Path], output: Path | None, style: str) -> list[tuple[Path, Path]]:
    """The whole job's (input file, output file) pairs at once, folders expanded, as the
    single-machine run maps them one input at a time; an input that is not there keeps a
    pair, so that its own task fails with the usual line."""
    pairs: list[tuple[Path, Path]] = []
    for src, dst in input_targets(inputs, output):
        if not src.exists():
            pairs.append((src, dst or src))
            continue
        dst = dst or default_output(src, style)
        if src.is_dir():
            pairs += folder_targets(src, dst)
        else:
            pairs.append((src, file_target(src, dst)))
    return pairs


def make_output_folder(folder: Path) -> None:
    """Create `folder` (and its parents) for several outputs, or say in one line why not."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create the output folder {folder} ({exc.strerror})") from None


def check_target(src: Path, dst: Path, overwrite: bool) -> None:
    """Before any work: `dst` is not a folder, not the input, and not an existing file
    without `overwrite`, and its folder takes new files. OutputError, one line, if not."""
    if dst.exists():
        if dst.is_dir():
            raise OutputError(f"{dst} is a folder")
        if src.exists() and src.resolve() == dst.resolve():
            raise OutputError(f"output {dst} is the input; choose another name")
        if not overwrite:
            raise OutputError(f"{dst} exists; add -y to overwrite it")
    check_output_folder(dst)


def check_output_kind(src: Path, dst: Path) -> None:
    """Before any work: the output is of the kind its input makes. A still is one picture
    (not a frame pattern, which would be written as a file literally named `%05d.png`); a
    video goes to a video file or a PNG sequence, not one picture; a folder to a folder.
    OutputError, one line naming the form that works, if not."""
    pattern = is_sequence_pattern(dst)
    if src.is_dir() and pattern:
        raise OutputError(f"-o {dst}: a frame pattern is for one video's PNG sequence; a folder "
                          f"input needs an output folder, e.g. -o {dst.parent}")
    if src.is_dir():
        return
    if is_image_path(src) and pattern:
        raise OutputError(f"-o {dst}: a frame pattern is for a video's PNG sequence; a still is "
                          f"one picture, e.g. -o {dst.parent / (src.stem + '.png')}")
    if not is_image_path(src) and not pattern and dst.suffix.lower() in IMAGE_SUFFIXES:
        videos = ", ".join(list(FORMATS)[:4])
        raise OutputError(f"-o {dst}: a video has many frames, not one picture: -o "
                          f"{dst.parent / '%05d.png'} writes a PNG sequence (one file a frame), "
                          f"or name a video file ({videos}, ...)")

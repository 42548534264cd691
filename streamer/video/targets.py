"""Where run_video's outputs go: each input's output, a folder's files and their outputs, the
default output name, the type of the outputs it names itself (`OutputNaming`: --format,
--image-format, and a type that carries alpha with --background transparent), and the checks
on an output before any work.

The single-machine run (app.py, convert.py) and the Ray driver (cluster.py) both map inputs
to outputs through these functions, so they agree on every name and every error line.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streamer.sinks.image import ALPHA_IMAGE_SUFFIXES
from streamer.sinks.png_sequence import is_sequence_pattern
from streamer.sinks.video_file import ALPHA_ENCODERS, FORMATS, OutputError, check_output_folder
from streamer.sources.image import IMAGE_SUFFIXES, is_image_path
from streamer.sources.video_file import MediaError

#: video outputs that keep the alpha channel of --background transparent
_ALPHA_VIDEO_SUFFIXES = tuple(s for s, f in FORMATS.items() if f in ALPHA_ENCODERS)


@dataclass(frozen=True)
class OutputNaming:
    """The type of the outputs run_video names itself: `video` (".webm") for videos and
    `image` (".png") for stills, None for the input's own; with `alpha`, an input type that
    cannot carry the alpha channel becomes .webm (video) or .png (still)."""

    video: str | None = None
    image: str | None = None
    alpha: bool = False

    @classmethod
    def from_settings(cls, settings: Any) -> "OutputNaming":
        """From VideoSettings: --format, --image-format, --background transparent."""
        return cls(settings.format, settings.image_format, settings.background_spec().alpha)

    def suffix(self, src: Path) -> str:
        """The suffix of an output named after the input `src`."""
        own = src.suffix
        if is_image_path(src):
            if self.image:
                return self.image
            return ".png" if self.alpha and own.lower() not in ALPHA_IMAGE_SUFFIXES else own
        if self.video:
            return self.video
        if own.lower() not in FORMATS:  # a container we cannot write
            own = ".mkv"
        return ".webm" if self.alpha and own.lower() not in _ALPHA_VIDEO_SUFFIXES else own

    def named(self, src: Path, dst: Path) -> Path:
        """`dst` (named after `src`) with the suffix this naming gives."""
        suffix = self.suffix(src)
        return dst if suffix == dst.suffix else dst.with_name(dst.stem + suffix)

    def check_given(self, src: Path, dst: Path) -> None:
        """An output the user named (-o FILE) must be of the type --format or --image-format
        asks for, if one does: OutputError, one line, if not."""
        still = is_image_path(src)
        wanted, option = (self.image, "--image-format") if still else (self.video, "--format")
        if wanted and dst.suffix.lower() != wanted:
            given = "a PNG sequence" if is_sequence_pattern(dst) else \
                (f"a {dst.suffix} file" if dst.suffix else "a file without a suffix")
            raise OutputError(f"-o {dst.name} is {given} but {option} asks for {wanted}; "
                              f"give one of them")


def _check_distinct(pairs: list[tuple[Path, Path]]) -> None:
    """Two inputs must not share an output, nor an output be another input (a folder with
    a.mp4 and a.mov, --format webm): OutputError, one line, before any work."""
    seen: dict[Path, Path] = {}
    inputs = {src.absolute() for src, _ in pairs}
    for src, dst in pairs:
        key = dst.absolute()
        if key in seen:
            raise OutputError(f"{seen[key]} and {src} would both be written as {dst}; convert "
                              f"them separately, or rename one")
        if key in inputs and key != src.absolute():
            raise OutputError(f"the output of {src} would be {dst}, which is another input; "
                              f"choose another output folder")
        seen[key] = src


def input_targets(inputs: list[Path], output: Path | None,
                  naming: OutputNaming | None = None) -> list[tuple[Path, Path | None]]:
    """Each input with its output: one input keeps `output` (None: the default name, see
    default_output); several go into the folder `output`, each by its own name (its type
    from `naming`). OutputError, one line, when several inputs have no output folder or
    two would share an output."""
    if len(inputs) == 1:
        return [(inputs[0], output)]
    if output is None:
        raise OutputError("several inputs need -o FOLDER")
    if output.exists() and not output.is_dir():
        raise OutputError(f"{output} is a file; several inputs need an output folder")
    naming = naming or OutputNaming()
    pairs = [(src, output / src.name if src.is_dir() else naming.named(src, output / src.name))
             for src in inputs]
    _check_distinct(pairs)
    return pairs


def default_output(src: Path, style: str, alpha: bool = False,
                   naming: OutputNaming | None = None) -> Path:
    """`INPUT_STYLE` beside the input: a folder for a folder, else the input's type (a video
    in a container we cannot write becomes .mkv), or the type `naming` gives (default: no
    --format, and `alpha`: a type that keeps the alpha channel, .png for a still and .webm
    for a video, unless the input's own does)."""
    if src.is_dir():
        return src.with_name(f"{src.name}_{style}")
    naming = naming or OutputNaming(alpha=alpha)
    return src.with_name(f"{src.stem}_{style}{naming.suffix(src)}")


def file_target(src: Path, dst: Path, naming: OutputNaming | None = None) -> Path:
    """A file input's output: `dst`, or the input's name inside it (of the type `naming`
    gives) when `dst` is a folder. A `dst` the user named must agree with --format /
    --image-format (OutputError)."""
    naming = naming or OutputNaming()
    if dst.is_dir():
        return naming.named(src, dst / src.name)
    naming.check_given(src, dst)
    return dst


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


def folder_targets(src: Path, dst: Path,
                   naming: OutputNaming | None = None) -> list[tuple[Path, Path]]:
    """Every image and video under the folder `src`, with its output under `dst` by the same
    relative name, of the type `naming` gives (an output folder inside the input is left
    out). OutputError when `dst` is a file or two files would share an output, MediaError
    when `src` holds nothing to convert."""
    if dst.exists() and not dst.is_dir():
        raise OutputError(f"{dst} is a file; a folder input needs an output folder")
    files = media_files(src, dst.resolve() if dst.exists() else dst.absolute())
    if not files:
        raise MediaError(f"{src}: no images or videos in this folder")
    naming = naming or OutputNaming()
    pairs = [(f, naming.named(f, dst / f.relative_to(src))) for f in files]
    _check_distinct(pairs)
    return pairs


def all_targets(inputs: list[Path], output: Path | None, style: str,
                naming: OutputNaming | None = None) -> list[tuple[Path, Path]]:
    """The whole job's (input file, output file) pairs at once, folders expanded, as the
    single-machine run maps them one input at a time; an input that is not there keeps a
    pair, so that its own task fails with the usual line."""
    pairs: list[tuple[Path, Path]] = []
    for src, dst in input_targets(inputs, output, naming):
        if not src.exists():
            pairs.append((src, dst or src))
            continue
        dst = dst or default_output(src, style, naming=naming)
        check_output_kind(src, dst)  # as convert() checks it without Ray
        if src.is_dir():
            pairs += folder_targets(src, dst, naming)
        else:
            pairs.append((src, file_target(src, dst, naming)))
    return pairs


def make_output_folder(folder: Path) -> None:
    """Create `folder` (and its parents) for several outputs, or say in one line why not."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create the output folder {folder} ({exc.strerror})") from None


def check_still_output(dst: Path, alpha: bool = False) -> None:
    """Before any work: `dst` is a still type run_video writes and, with `alpha`
    (--background transparent), one that carries the alpha channel. OutputError if not."""
    suffix = dst.suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise OutputError(f"{dst.name}: a still image needs an image output "
                          f"({', '.join(IMAGE_SUFFIXES)})")
    if alpha and suffix not in ALPHA_IMAGE_SUFFIXES:
        raise OutputError(f"{dst.name}: {dst.suffix} cannot carry the alpha channel that "
                          f"--background transparent makes; use "
                          f"{', '.join(ALPHA_IMAGE_SUFFIXES)}")


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

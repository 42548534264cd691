"""A Mobile-DCTNet student as one safetensors file: its tensors and metadata.

Metadata (strings): `format` ("toonstream-mobile"), `version`, `name`, `arch` (net.Arch
tag, e.g. 16-32-64x3), `styles` (the official styles it holds, comma-separated), `parts`
(bg, or bg,h), `steps`, `command` (what made it), `created`, and `checksum`: the sha256 of
the tensors (names, shapes and bytes in name order, as personal adapters), checked on
every load. The style code has one weight per (part, style): index `p * len(styles) + s`,
so the head crops run the same network with the head teacher's codes.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from streamer.models.dctnet.lora import tensor_checksum
from streamer.models.errors import BadModelFile

from .net import Arch, check_weights

FORMAT = "toonstream-mobile"
VERSION = "1"


class StudentError(BadModelFile):
    """A student file that is damaged, foreign or inconsistent (one line)."""


@dataclass
class Student:
    name: str
    arch: Arch
    styles: tuple[str, ...]
    parts: tuple[str, ...]
    weights: dict[str, np.ndarray]
    meta: dict[str, str] = field(default_factory=dict)

    @property
    def codes(self) -> int:
        return len(self.styles) * len(self.parts)

    def checksum(self) -> str:
        return tensor_checksum(self.weights)

    def code(self, mix: dict[str, float], part: str = "bg") -> np.ndarray:
        """The style code for a blend {style: weight} (one style at 1.0 for a plain
        style) on `part`; a part the student did not learn takes its bg codes."""
        unknown = [s for s in mix if s not in self.styles]
        if unknown:
            raise StudentError(f"the light network {self.name!r} holds {', '.join(self.styles)}, "
                               f"not {', '.join(unknown)}")
        p = self.parts.index(part) if part in self.parts else 0
        out = np.zeros(self.codes, np.float32)
        for style, weight in mix.items():
            out[p * len(self.styles) + self.styles.index(style)] += weight
        return out


def save_student(path: Path | str, student: Student) -> str:
    """Write the student (through a temporary name, renamed when complete); returns the
    tensors' checksum written into its metadata."""
    from safetensors.numpy import save_file

    problem = check_weights(student.weights, student.arch, student.codes)
    if problem:
        raise StudentError(f"cannot save {student.name}: {problem}")
    path = Path(path)
    checksum = student.checksum()
    meta = {k: str(v) for k, v in student.meta.items()}
    meta.update({"format": FORMAT, "version": VERSION, "name": student.name,
                 "arch": student.arch.tag(), "styles": ",".join(student.styles),
                 "parts": ",".join(student.parts), "checksum": checksum})
    tmp = path.with_name(f".{path.name}.partial-{os.getpid()}")
    try:
        save_file({k: np.ascontiguousarray(v, np.float32) for k, v in student.weights.items()},
                  str(tmp), metadata=meta)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return checksum


def student_metadata(path: Path | str) -> dict[str, str]:
    """The metadata alone (no tensor read); empty for an unreadable file."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), "np") as f:
            return dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError):
        return {}


def load_student(path: Path | str) -> Student:
    """The student in `path`, verified: format, architecture, every tensor's shape and
    finiteness, and the checksum of its tensors."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    path = Path(path)
    meta = student_metadata(path)
    if meta.get("format") != FORMAT:
        raise StudentError(f"{path.name}: not a Toonstream light-network file "
                           f"(format {meta.get('format', 'unreadable')!r})")
    if meta.get("version") != VERSION:
        raise StudentError(f"{path.name}: light-network file version {meta.get('version')!r}; "
                           f"this Toonstream reads version {VERSION}")
    try:
        weights = load_file(str(path))
        arch = Arch.parse(meta.get("arch", ""))
    except (SafetensorError, OSError, ValueError) as exc:
        raise StudentError(f"{path.name}: unreadable ({str(exc).splitlines()[0]})") from None
    styles = tuple(s for s in meta.get("styles", "").split(",") if s)
    parts = tuple(p for p in meta.get("parts", "").split(",") if p)
    if not styles or parts not in (("bg",), ("bg", "h")):
        raise StudentError(f"{path.name}: metadata names no styles or bad parts {parts}")
    student = Student(meta.get("name", path.stem), arch, styles, parts, weights, meta)
    problem = check_weights(weights, arch, student.codes)
    if problem:
        raise StudentError(f"{path.name}: {problem}")
    if student.checksum() != meta.get("checksum"):
        raise StudentError(f"{path.name}: its tensors do not match the checksum in its "
                           f"metadata (damaged)")
    return student


def parse_blend(spec: str) -> dict[str, float]:
    """`anime` -> {anime: 1}; `anime+3d:0.3` -> {anime: 0.7, 3d: 0.3} (the weight after the
    colon goes to the second style; `anime+3d` is half and half)."""
    if "+" not in spec:
        return {spec: 1.0}
    first, _, rest = spec.partition("+")
    second, _, weight = rest.partition(":")
    try:
        t = float(weight) if weight else 0.5
    except ValueError:
        t = -1.0
    if not first or not second or "+" in second or not 0.0 <= t <= 1.0 or first == second:
        raise StudentError(f"--style {spec}: a blend is A+B or A+B:T with T from 0 to 1 "
                           f"(the weight of B), e.g. anime+3d:0.3")
    return {first: 1.0 - t, second: t}

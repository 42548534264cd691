"""Light-network students in the model store: `mobile/<name>.safetensors`, each with an
install record like every store file, verified on every load (record and tensor checksum),
and built into ONNX per precision by the store's CachedBuild like official models
(`onnx/mobile_<name>[_<precision>].onnx`, rebuilt when the file or the converter changes).

Used through `students(store)`; the store's own module is not changed for it.
`python -m streamer.models list` and `verify` show and check the students (`list_lines`,
`verify`).
"""
from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from streamer.models.atomic import atomic_write
from streamer.models.builds import CachedBuild
from streamer.models.download import sha256_file
from streamer.models.errors import BadModelFile, ModelNotInstalled, StoreError, StoreNotWritable
from streamer.models.inventory import Check
from streamer.models.layout import store_command
from streamer.models.paths import is_writable_dir

from .student import Student, StudentError, load_student, student_metadata

if TYPE_CHECKING:
    from streamer.models.store import Store

MOBILE_DIR = "mobile"
SUFFIX = ".safetensors"
NAME_RULE = re.compile(r"[a-z0-9_-]{1,40}")


def distill_command(style: str) -> str:
    return f"python -m streamer.models distill {style} --photos PATH"


def shipped_student(styles: list[str]) -> Path | None:
    """The generic student in the package (streamer/samples/README.md) when it holds every
    style of `styles`, else None."""
    from streamer.samples import GENERIC_STUDENT

    if not GENERIC_STUDENT.is_file():
        return None
    held = student_metadata(GENERIC_STUDENT).get("styles", "").split(",")
    return GENERIC_STUDENT if all(s in held for s in styles) else None


class StudentMissing(ModelNotInstalled):
    """--net mobile for a style no installed student holds."""


class MobileStudents:
    """The students of `store`."""

    def __init__(self, store: Store):
        self.store = store
        self.root = store.root

    @property
    def folder(self) -> Path:
        return self.root / MOBILE_DIR

    def local(self, name: str) -> str:
        return f"{MOBILE_DIR}/{name}{SUFFIX}"

    def path(self, name: str) -> Path:
        return self.root / self.local(name)

    def names(self) -> tuple[str, ...]:
        if not self.folder.is_dir():
            return ()
        return tuple(sorted(p.stem for p in self.folder.glob(f"*{SUFFIX}")
                            if p.is_file() and NAME_RULE.fullmatch(p.stem)))

    def check_name(self, name: str) -> None:
        if not NAME_RULE.fullmatch(name):
            raise StoreError(f"{name!r} cannot name a light network: use 1 to 40 lowercase "
                             f"letters, digits, '-' or '_' (--name NAME)")

    def held(self) -> dict[str, tuple[str, ...]]:
        """Each installed student's name -> the styles it holds (from its metadata alone;
        a file without readable metadata holds none)."""
        return {name: tuple(s for s in student_metadata(self.path(name)).get("styles", "")
                            .split(",") if s)
                for name in self.names()}

    def holding(self, styles: list[str]) -> str:
        """The installed student that holds every style of `styles` (the first by name),
        or StudentMissing naming the distill command."""
        for name, held in self.held().items():
            if all(s in held for s in styles):
                return name
        want = " ".join(styles)
        shipped = shipped_student(styles)
        also = (f", or install the generic one that ships with Toonstream with "
                f"`{store_command(self.root, f'import {shipped}')}`" if shipped else "")
        raise StudentMissing(f"--net mobile: no light network for {'+'.join(styles)} in the model "
                             f"store {self.root}; make one with `{distill_command(want)}`{also}")

    def repair_command(self, name: str) -> str:
        """The command that makes student `name` again and replaces it: the distill command
        for the styles its metadata names (STYLE when even that is unreadable)."""
        styles = " ".join(s for s in student_metadata(self.path(name)).get("styles", "")
                          .split(",") if s) or "STYLE"
        return store_command(self.root, f"distill {styles} --photos PATH --name {name} -y")

    def load(self, name: str) -> tuple[Student, str]:
        """The student and its file's sha256, checked against its install record and its
        own tensor checksum."""
        path, local = self.path(name), self.local(name)
        if not path.is_file():
            raise StudentMissing(f"no light network {name!r} in the model store {self.root}")
        sha = sha256_file(path)
        recorded = self.store.records.get(local).get("sha256")
        repair = self.repair_command(name)
        if recorded and recorded != sha:
            raise BadModelFile(f"{local} in the model store {self.root} changed since it was "
                               f"installed; distill it again: `{repair}`")
        try:
            student = load_student(path)
        except StudentError as exc:
            raise StudentError(f"{local} in the model store {self.root}: "
                               f"{str(exc).removeprefix(path.name + ': ')}; distill it again: "
                               f"`{repair}`") from None
        return student, sha

    def list_lines(self) -> list[str]:
        """What `python -m streamer.models list` prints for the students (metadata and
        file hash; `verify` reads the tensors)."""
        names = self.names()
        lines = [f"light networks in {self.folder}:" + ("" if names else " none")]
        for name in names:
            path, local = self.path(name), self.local(name)
            meta, mine = student_metadata(path), self.store.records.get(local)
            sha = sha256_file(path)
            state = ("  CHANGED since it was installed"
                     if mine.get("sha256") and mine["sha256"] != sha else "")
            styles = meta.get("styles", "").replace(",", ", ") or "? (unreadable metadata)"
            lines.append(f"  {name:<20} {styles} (parts {meta.get('parts', '?')}), "
                         f"{meta.get('steps', '?')} steps, arch {meta.get('arch', '?')}  "
                         f"{local}  {path.stat().st_size:,} B{state}")
            lines.append(f"  {'':<20} sha256 {sha}  from "
                         f"{mine.get('origin') or 'unknown (no install record)'}")
        return lines

    def verify(self) -> list[Check]:
        """Check every student: install record, format, tensor shapes and checksum."""
        checks = []
        for name in self.names():
            try:
                student, _ = self.load(name)
            except BadModelFile as exc:
                checks.append(Check(self.local(name), False, str(exc)))
                continue
            checks.append(Check(self.local(name), True,
                                f"light network of {', '.join(student.styles)}, parts "
                                f"{'+'.join(student.parts)}, {student.meta.get('steps', '?')} "
                                f"steps, arch {student.arch.tag()}, checksum ok"))
        return checks

    def install(self, src: Path | str, name: str | None = None, overwrite: bool = False) -> Path:
        """Install the student file `src` as `name` (default: its own name), verified."""
        src = Path(src).expanduser()
        student = load_student(src)
        name = name or student.name
        self.check_name(name)
        dest = self.path(name)
        if dest.is_file() and not overwrite and not dest.samefile(src):
            raise StoreError(f"a light network {name!r} is already installed; add -y to "
                             f"replace it, or choose another --name")
        if not is_writable_dir(self.root):
            raise StoreNotWritable(f"cannot install: the model store {self.root} is read-only; "
                                   f"choose another with --models DIR or TOONSTREAM_MODELS")
        dest.parent.mkdir(parents=True, exist_ok=True)
        if not (dest.is_file() and dest.samefile(src)):
            def write(p: Path) -> None:
                shutil.copyfile(src, p)
                load_student(p)

            atomic_write(dest, write)
        self.store.records.add(self.local(name), f"import:{src.resolve()}", dest, custom=True)
        return dest

    def onnx(self, name: str, precision: str = "fp32") -> Path:
        """The student's ONNX graph at fp32, fp16 or int8, built on first use and cached
        (int8: quantized from the fp32 graph once, a few seconds; models/mobile/int8.py)."""
        from .graph import CONVERTER_VERSION, PRECISIONS, build_student_onnx

        if precision == "int8":
            return self._int8(name)
        if precision not in PRECISIONS:
            raise StoreError(f"the light network has no {precision} build (it runs fp32, "
                             f"fp16 on GPUs, bf16 in OpenVINO's fast mode, int8 in OpenVINO)")
        student, sha = self.load(name)
        suffix = "" if precision == "fp32" else f"_{precision}"
        cache = CachedBuild(self.store.onnx_dir / f"mobile_{name}{suffix}.onnx",
                            {"source_sha256": sha, "checksum": student.checksum(),
                             "converter_version": CONVERTER_VERSION, "precision": precision})
        if (cached := cache.current()) is not None:
            return cached
        record = {"style": f"mobile:{name}", "part": "bg", "precision": precision,
                  "styles": list(student.styles), "arch": student.arch.tag(),
                  "source_file": str(self.path(name).resolve()), "source_sha256": sha,
                  "source_format": "safetensors"}
        model = build_student_onnx(student.weights, student.arch, student.codes, precision)
        return cache.save(model, record, source=self.path(name).name)

    def _int8(self, name: str) -> Path:
        from streamer.models.calibration import SYNTHETIC, frames_for
        from streamer.models.dctnet.int8 import weight_levels

        from .int8 import QUANTIZER_VERSION, quantize_student

        fp32 = self.onnx(name, "fp32")
        levels = weight_levels()
        cache = CachedBuild(self.store.onnx_dir / f"mobile_{name}_int8.onnx",
                            {"fp32_sha256": sha256_file(fp32),
                             "quantizer_version": QUANTIZER_VERSION, "weight_levels": levels})
        if (cached := cache.current()) is not None:
            return cached
        student, sha = self.load(name)
        frames = frames_for(SYNTHETIC)
        say = self.store.notify or (lambda line: print(line, file=sys.stderr, flush=True))
        say(f"int8: quantizing the light network {name} once (NNCF, {len(frames)} "
            f"calibration frames); cached in {cache.out.parent}")
        model, info = quantize_student(fp32, frames, levels)
        record = {"style": f"mobile:{name}", "part": "bg", "precision": "int8",
                  "styles": list(student.styles), "arch": student.arch.tag(),
                  "source_file": str(self.path(name).resolve()), "source_sha256": sha,
                  "fp32_model": fp32.name, "calibration_source": SYNTHETIC, **info}
        return cache.save(model, record, source=fp32.name)


def students(store: Store) -> MobileStudents:
    return MobileStudents(store)

"""Number options: one range per number a user can give, checked the same way wherever the
number comes from.

A setting declares its range once, on its dataclass field (`setting(default, Range(...))`
in streamer/config.py); an option that is not a setting (the web server's --port, the
model tool's --timeout) declares it beside its option. The same Range is the option's
argparse type (command-line text -> value, or argparse's one-line error) and the check a
settings object runs on itself in __post_init__, so a preset's `seconds: .nan`, a string
where a number belongs, nan, inf and out-of-range values are refused alike, in one line
that says what the option takes. A refusal is a ConfigError, a UsageError: exit 2.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import numbers
from dataclasses import dataclass
from typing import Any, Callable

from streamer.errors import UsageError

RANGE = "toonstream.range"  # the key of a field's range in its dataclass metadata


class ConfigError(UsageError, ValueError):
    """A bad preset or setting, in one line for the user."""


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _shown(got: Any) -> str:
    """`got` for an error line: short, and never an exception of its own (a 5000-digit
    integer cannot even be printed, nor a huge one turned into a float)."""
    if isinstance(got, str):
        return repr(got if len(got) <= 40 else got[:40] + "...")
    if isinstance(got, bool) or not isinstance(got, numbers.Real):
        text = repr(got)
        return text if len(text) <= 40 else text[:40] + "..."
    if isinstance(got, numbers.Integral):
        return str(got) if abs(got) < 10 ** 18 else "a number that large"
    return repr(float(got))  # 2.0, not 2: a whole number's refusal must show why


@dataclass(frozen=True)
class Range:
    """The values a number option takes: finite, `lo` <= value <= `hi` (either bound may be
    None; `above` excludes `lo` itself), whole numbers only when `integer`. `note` follows
    the range in messages ("0: none")."""

    lo: float | None = None
    hi: float | None = None
    integer: bool = False
    above: bool = False
    note: str = ""

    def describe(self) -> str:
        """What the option takes, after "must be": "a whole number from 1 to 64"."""
        lo, hi = self.lo, self.hi
        if self.integer and lo is not None and hi is not None and hi - lo == 1 \
                and not self.above:
            text = f"{_num(lo)} or {_num(hi)}"
        else:
            kind = "a whole number" if self.integer else "a number"
            if lo is not None and hi is not None:
                text = (f"{kind} above {_num(lo)} and at most {_num(hi)}" if self.above
                        else f"{kind} from {_num(lo)} to {_num(hi)}")
            elif lo is not None:
                text = f"{kind} above {_num(lo)}" if self.above else f"{kind}, {_num(lo)} or more"
            elif hi is not None:
                text = f"{kind}, at most {_num(hi)}"
            else:
                text = f"a finite {kind[2:]}"
        return f"{text} ({self.note})" if self.note else text

    def refusal(self, got: Any) -> str:
        """The message for `got`, without the option's name (argparse adds that)."""
        return f"must be {self.describe()}, got {_shown(got)}"

    def value(self, got: Any) -> int | float | None:
        """`got` as the option's value (numeric text parsed as the command line does), or
        None when it is not one."""
        if isinstance(got, str):
            text = got.strip()
            try:
                got = int(text, 10) if self.integer else float(text)
            except ValueError:  # not a number, or an int over Python's digit limit
                return None
        if isinstance(got, bool) or not isinstance(got, numbers.Real):
            return None
        if self.integer:
            if not isinstance(got, numbers.Integral):
                return None
            got = int(got)
        else:
            try:
                got = float(got)
            except OverflowError:  # an integer too large for a float
                return None
            if not math.isfinite(got):
                return None
        if self.lo is not None and (got < self.lo or (self.above and got == self.lo)):
            return None
        if self.hi is not None and got > self.hi:
            return None
        return got

    def check(self, name: str, got: Any) -> int | float:
        """`got` as a value of the setting `name`, else a ConfigError naming it."""
        value = self.value(got)
        if value is None:
            raise ConfigError(f"{name} {self.refusal(got)}")
        return value

    def arg(self) -> Callable[[str], int | float]:
        """An argparse `type`: text -> value, or argparse's error (exit 2) saying why."""
        def parse(text: str) -> int | float:
            value = self.value(text)
            if value is None:
                raise argparse.ArgumentTypeError(self.refusal(text))
            return value
        parse.__name__ = "whole number" if self.integer else "number"
        parse.range = self  # type: ignore[attr-defined]  # what tests walk to find them all
        return parse


def setting(default: Any, rng: Range) -> Any:
    """A dataclass field with `default` whose values must lie in `rng` (see check_numbers);
    a None default means None is allowed (the setting is then chosen elsewhere)."""
    return dataclasses.field(default=default, metadata={RANGE: rng})


def range_of(cls: type, name: str) -> Range:
    """The range declared on `cls`'s field `name`."""
    for f in dataclasses.fields(cls):
        if f.name == name and RANGE in f.metadata:
            return f.metadata[RANGE]
    raise KeyError(f"{cls.__name__}.{name} declares no range")


def arg_type(cls: type, name: str) -> Callable[[str], int | float]:
    """The argparse type of the option for `cls`'s setting `name`."""
    return range_of(cls, name).arg()


def option_name(field_name: str) -> str:
    """How users spell a setting: the option without its dashes (`chunk-seconds`)."""
    return field_name.replace("_", "-")


def coerce_number(f: dataclasses.Field, got: Any, where: str) -> Any:
    """A preset's value for the number field `f`, checked against its range (None: the
    setting's own default choice, where the default is None)."""
    if got is None and f.default is None:
        return None
    return f.metadata[RANGE].check(f"{where}: {option_name(f.name)}", got)


def check_numbers(obj: Any) -> None:
    """Check every ranged field of the dataclass instance `obj` (frozen or not) and store
    the value as its type (an int given for a float setting becomes a float)."""
    for f in dataclasses.fields(obj):
        rng = f.metadata.get(RANGE)
        if rng is None:
            continue
        got = getattr(obj, f.name)
        if got is None and f.default is None:
            continue
        object.__setattr__(obj, f.name, rng.check(option_name(f.name), got))


def is_number_field(f: dataclasses.Field) -> bool:
    return RANGE in f.metadata

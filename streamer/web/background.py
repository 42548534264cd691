"""The page's background controls (a choice, a colour picker, an image upload) as one
--background value, with the page's own words for what is wrong with them.

The command line's messages name `--background` and the server's paths; on the page the user
picked a colour or uploaded a picture, so the messages name those. The colour picker hands
over `#rrggbb` (its RGB and HSL buttons change only what it shows); a caller of the page's
API may send `#rgb`, `rgb(...)`/`rgba(...)` or `hsl(...)`/`hsla(...)` as CSS writes them:
all are taken, alpha ignored (the colour is opaque).
"""
from __future__ import annotations

import colorsys
import re
from pathlib import Path

from streamer.toon.background import BackgroundImageError, load_background_image

from .service import WebError

BACKGROUNDS = ("keep", "transparent", "blur", "color", "image")
DEFAULT_COLOR = "#00ff00"

_NUMBER = r"\s*([+-]?(?:\d+\.?\d*|\.\d+))(%?)\s*"
_FUNC = re.compile(r"(rgba?|hsla?)\(" + ",".join([_NUMBER] * 3) + r"(?:[,/]" + _NUMBER + r")?\)",
                   re.IGNORECASE)


def _channel(value: str, percent: str) -> int:
    v = float(value) * (2.55 if percent else 1.0)
    return max(0, min(255, round(v)))


def page_color(text: str | None) -> str:
    """The colour picker's value as #rrggbb; WebError (the page's words) when it is none."""
    raw = (text or "").strip()
    if re.fullmatch(r"#?[0-9a-fA-F]{6}", raw):
        return "#" + raw.lstrip("#").lower()
    if re.fullmatch(r"#?[0-9a-fA-F]{3}", raw):
        return "#" + "".join(c * 2 for c in raw.lstrip("#")).lower()
    m = _FUNC.fullmatch(raw)
    if m:
        kind = m.group(1).lower()
        a, ap, b, bp, c, cp = m.group(2, 3, 4, 5, 6, 7)
        if kind.startswith("rgb"):
            rgb = (_channel(a, ap), _channel(b, bp), _channel(c, cp))
        else:  # hue in degrees, saturation and lightness in percent
            h = (float(a) % 360) / 360
            s, li = (min(100.0, max(0.0, float(x))) / 100 for x in (b, c))
            rgb = tuple(max(0, min(255, round(v * 255))) for v in colorsys.hls_to_rgb(h, li, s))
        return "#{:02x}{:02x}{:02x}".format(*rgb)
    raise WebError(f"The background colour {raw!r} cannot be read: pick one with the colour "
                   f"picker, or type it as #RRGGBB (e.g. {DEFAULT_COLOR}).")


def check_image(path: str | None) -> str:
    """The uploaded background image, checked the way the run will read it; WebError naming
    the upload (not the server's copy of it) when it cannot be used."""
    if not path:
        raise WebError("Choose a background image first (or another background).")
    try:
        load_background_image(path)
    except BackgroundImageError as exc:
        raise WebError(f"The background image {Path(path).name} {exc.reason}.") from None
    return path


def background_value(choice: str | None, color: str | None, image: str | None) -> str:
    """The page's three background controls as one --background value."""
    choice = choice or "keep"
    if choice not in BACKGROUNDS:
        raise WebError(f"Unknown background {choice!r}; choose {', '.join(BACKGROUNDS)}.")
    if choice == "color":
        return f"color:{page_color(color or DEFAULT_COLOR)}"
    if choice == "image":
        return f"image:{check_image(image)}"
    return choice

"""Issue 23.13: one validator (streamer/options.py) for every number option of every command
and every number setting of a preset: nan, inf, text and out-of-range values are refused in
one `error:` line with exit 2, before anything runs."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from command_lines import COMMANDS, error_lines, number_options, option_actions, run_process
from streamer.config import (ConfigError, LiveSettings, VideoSettings, build_settings,
                             parse_size, parse_work)

# What a user can throw at a number option. "below"/"above" are the range's own edges; "-1"
# and "0" (the issue's --seconds 0 / -1) are tried where the range excludes them.
KINDS = ("nan", "NaN", "inf", "-inf", "1e999", "ten", "", "below", "above", "-1", "0")
WHOLE_KINDS = ("1.5", "9" * 5000)  # not whole; over Python's int digit limit


def _text(rng, kind: str) -> str | None:
    """The command-line text for `kind` against the range `rng`, or None where it does not
    apply (no such edge, or the value is in range)."""
    if kind == "below":
        return None if rng is None or rng.lo is None else str(
            rng.lo if rng.above else rng.lo - 1)
    if kind == "above":
        return None if rng is None or rng.hi is None else str(rng.hi + 1)
    if kind in ("-1", "0"):
        return kind if rng is not None and rng.value(kind) is None else None
    return kind


def _number_option_cases():
    for name, command in COMMANDS.items():
        for sub, action in option_actions(command.parser()):
            rng = getattr(action.type, "range", None)
            if rng is None and action.type not in (int, float):
                continue
            whole = rng.integer if rng is not None else action.type is int
            option = action.option_strings[-1]
            for kind in KINDS + (WHOLE_KINDS if whole else ()):
                text = _text(rng, kind)
                if text is not None:
                    yield pytest.param(name, sub, option, text,
                                       id=f"{name} {' '.join(sub)} {option} {text[:12]!r}")


@pytest.mark.parametrize("name, sub, option, text", list(_number_option_cases()))
def test_every_number_option_of_every_command_refuses_what_is_out_of_range(
        tmp_path, capfd, name, sub, option, text):
    # --models: an empty store, so that a value wrongly taken fails fast instead of running
    store = [] if name == "models" else ["--models", str(tmp_path / "empty")]
    rc = COMMANDS[name].main([*sub, *store, f"{option}={text}"])
    err = error_lines(capfd.readouterr().err)
    assert rc == 2, err
    assert len(err) == 1 and err[0].startswith(f"error: argument {option}: must be "), err
    assert "--help" in err[0] and "Traceback" not in err[0]


def test_the_walk_finds_the_number_options_of_every_command():
    # a guard for the walk itself: it must not pass by finding nothing
    found = {name: {opt for _, opt, _ in number_options(c)} for name, c in COMMANDS.items()}
    assert {"--size", "--chunk-seconds", "--crf", "--fade", "--temporal-strength"} \
        <= found["run_video"]
    assert {"--seconds", "--fps", "--gop", "--queue", "--max-faces"} <= found["run_stream"]
    assert {"--port", "--live-size", "--max-video-seconds", "--detect-every"} <= found["run_web"]
    assert {"--timeout", "--retries"} <= found["models"]


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_no_command_has_a_number_option_without_a_range(name):
    plain = [(sub, a.option_strings[-1]) for sub, a in option_actions(COMMANDS[name].parser())
             if a.type in (int, float)]
    assert plain == [], f"number options that take nan, inf or any value: {plain}"


def _number_fields(cls):
    return [f for f in dataclasses.fields(cls) if str(f.type).split(" ")[0] in ("int", "float")]


@pytest.mark.parametrize("cls", [VideoSettings, LiveSettings])
def test_every_number_setting_declares_its_range_and_its_option_uses_it(cls):
    from streamer.options import range_of
    fields = _number_fields(cls)
    assert len(fields) >= 10
    for f in fields:
        range_of(cls, f.name)  # KeyError: a number setting without a range
    name = "run_video" if cls is VideoSettings else "run_stream"
    for _, action in option_actions(COMMANDS[name].parser()):
        if action.dest in {f.name for f in fields}:
            assert action.type.range == range_of(cls, action.dest), action.dest


def _yaml(value) -> str:
    if isinstance(value, float) and math.isnan(value):
        return ".nan"
    if isinstance(value, float) and math.isinf(value):
        return ".inf" if value > 0 else "-.inf"
    return repr(value)


# What a preset can hold where a number belongs; "below"/"above" are the range's edges.
PRESET_KINDS = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf, "text": "ten",
                "bool": True, "list": [1], "huge": 10 ** 400, "-huge": -(10 ** 400),
                "below": None, "above": None}


def _preset_cases():
    for cls, name in ((VideoSettings, "run_video"), (LiveSettings, "run_stream")):
        for f in _number_fields(cls):
            kinds = list(PRESET_KINDS) + (["fraction"] if str(f.type).startswith("int") else [])
            for kind in kinds:
                yield pytest.param(cls, name, f.name, kind, id=f"{name} {f.name}: {kind}")


@pytest.mark.parametrize("cls, name, field, kind", list(_preset_cases()))
def test_every_number_setting_of_a_preset_is_checked_the_same_way(
        tmp_path, capfd, cls, name, field, kind):
    from streamer.options import range_of
    rng = range_of(cls, field)
    value = {"below": (rng.lo if rng.above else rng.lo - 1) if rng.lo is not None
             else -(10 ** 400),
             "above": rng.hi + 1 if rng.hi is not None else 10 ** 400,
             "fraction": 1.5}.get(kind, PRESET_KINDS.get(kind))
    preset = tmp_path / "mine.yaml"
    key = field.replace("_", "-")
    preset.write_text(f"{key}: {_yaml(value)}\n")
    store = ["--models", str(tmp_path / "empty")]  # a value wrongly taken fails fast
    argv = ([str(tmp_path / "in.png"), "--config", str(preset), *store] if name == "run_video"
            else ["--config", str(preset), "--sink", "null", "--no-commands", *store])
    rc = COMMANDS[name].main(argv)
    err = error_lines(capfd.readouterr().err)
    assert rc == 2, err
    assert len(err) == 1 and err[0].startswith(f"error: preset mine.yaml: {key} must be "), err


def test_the_issue_cases(tmp_path, capfd):
    store = ["--models", str(tmp_path / "empty")]  # were any taken, fail fast, not forever
    # run_stream --seconds nan ran forever; 0 and -1 processed 2 frames and exited 0
    for text in ("nan", "0", "-1"):
        assert COMMANDS["run_stream"].main(["--synthetic", "--sink", "null", "--no-commands",
                                            *store, "--seconds", text]) == 2
        assert "--seconds: must be a number above 0" in capfd.readouterr().err
    # --ray --chunk-seconds nan was accepted
    assert COMMANDS["run_video"].main([str(tmp_path / "a.mp4"), *store, "--ray",
                                       "--chunk-seconds", "nan"]) == 2
    assert "--chunk-seconds: must be a number above 0" in capfd.readouterr().err
    # a preset's .nan, and a string
    preset = tmp_path / "p.yaml"
    assert build_settings(LiveSettings, None, {}).seconds is None
    preset.write_text("seconds: .nan\n")
    with pytest.raises(ConfigError, match="seconds must be a number above 0, got nan"):
        build_settings(LiveSettings, str(preset))
    preset.write_text("chunk-seconds: soon\n")
    with pytest.raises(ConfigError, match="chunk-seconds must be a number above 0 and at most "
                                          "86400, got 'soon'"):
        build_settings(VideoSettings, str(preset))


def test_a_process_gets_exit_2_and_one_line(tmp_path):
    p = run_process(COMMANDS["run_stream"], "--synthetic", "--sink", "null", "--seconds", "nan")
    assert p.returncode == 2
    assert error_lines(p.stderr) == [
        "error: argument --seconds: must be a number above 0, got 'nan' "
        "(see run_stream.py --help)"]


# --- what stays accepted ------------------------------------------------------------------

def test_values_in_range_are_kept_and_numbers_in_text_are_read_as_numbers(tmp_path):
    preset = tmp_path / "p.yaml"
    # PyYAML reads 1e3 (no dot) as text; the command line would take it, so a preset does
    preset.write_text("seconds: 1e3\nstatus-every: 0\nqueue: 2\nfps: 30\nthreads: null\n")
    s = build_settings(LiveSettings, str(preset))
    assert (s.seconds, s.status_every, s.queue, s.threads) == (1000.0, 0.0, 2, None)
    assert isinstance(s.fps, float) and s.fps == 30
    v = build_settings(VideoSettings, None, {"temporal_strength": 1, "batch": 0, "crf": 63})
    assert (v.temporal_strength, v.batch, v.crf) == (1.0, 0, 63)
    assert VideoSettings(size=np.int64(360)).size == 360  # numbers from numpy count too
    with pytest.raises(ConfigError, match="size must be a whole number from 16 to 8192, "
                                          "got None"):
        build_settings(VideoSettings, None, {"size": None})


def test_the_settings_refuse_what_code_gives_them_too():
    with pytest.raises(ConfigError, match=r"chunk-seconds must be a number above 0 and at "
                                          r"most 86400, got nan"):
        VideoSettings(chunk_seconds=math.nan)
    with pytest.raises(ConfigError, match="queue must be 1 or 2, got 4"):
        LiveSettings(queue=4)
    with pytest.raises(ConfigError, match="sinks must be a list"):
        LiveSettings(sinks=5)


# --- the range itself ---------------------------------------------------------------------

@pytest.mark.parametrize("lo, hi, how, words", [
    (1, 64, {"integer": True}, "a whole number from 1 to 64"),
    (0, 1, {}, "a number from 0 to 1"),
    (0, None, {"above": True}, "a number above 0"),
    (0, 60, {"above": True}, "a number above 0 and at most 60"),
    (0, None, {"integer": True}, "a whole number, 0 or more"),
    (1, 2, {"integer": True}, "1 or 2"),
    (0, 86400, {"note": "0: none"}, "a number from 0 to 86400 (0: none)"),
])
def test_a_range_says_what_it_takes(lo, hi, how, words):
    from streamer.options import Range
    assert Range(lo, hi, **how).describe() == words


def test_a_range_refuses_in_one_short_line_whatever_it_is_given():
    from streamer.options import Range
    rng = Range(1, 10, integer=True)
    for got in (math.nan, 10 ** 400, -(10 ** 400), "x" * 500, object(), None, True, 2.0):
        with pytest.raises(ConfigError) as info:
            rng.check("n", got)
        text = str(info.value)
        assert text.startswith("n must be a whole number from 1 to 10, got ")
        assert "\n" not in text and len(text) < 120, text
    assert Range(0, 1).check("x", 1) == 1.0 and isinstance(Range(0, 1).check("x", 1), float)
    with pytest.raises(ConfigError):
        Range(0, None).check("x", 10 ** 400)  # too large for a float: refused, not raised


def test_sizes_in_text_have_bounds_and_ascii_digits():
    assert parse_size("1280x720", "s") == (1280, 720)
    assert parse_work("auto").auto and parse_work("360").start == 360
    for text in ("99999x99999", "0x0", "-16x16", "nanxnan", "\u00b2x720", "1280x720x3",
                 "12800000000000000000x720"):
        with pytest.raises(ConfigError, match="must be WIDTHxHEIGHT, each side from 16 to "
                                              "8192"):
            parse_size(text, "output-size")
    for text in ("8", "99999", "9" * 5000):
        with pytest.raises(ConfigError, match="work must be a short side from 16 to 8192"):
            parse_work(text)


@pytest.mark.parametrize("argv", [["--output-size", "99999x99999"], ["--work", "0"],
                                  ["--camera-size", "nanxnan"], ["--work", "1e9"]])
def test_live_sizes_out_of_range_are_usage_errors(capfd, argv):
    rc = COMMANDS["run_stream"].main(["--config", "live-cpu", "--sink", "null", *argv])
    err = error_lines(capfd.readouterr().err)
    assert rc == 2 and len(err) == 1 and err[0].startswith("error: "), err


@pytest.mark.parametrize("fourcc", ["toolong", "MJP", "\u00e9\u00e9\u00e9\u00e9"])
def test_a_camera_fourcc_is_four_characters(capfd, fourcc):
    rc = COMMANDS["run_stream"].main(["--config", "live-cpu", "--sink", "null",
                                      "--camera-fourcc", fourcc])
    err = error_lines(capfd.readouterr().err)
    assert rc == 2 and err == [f"error: camera-fourcc must be four characters such as MJPG or "
                               f"YUYV, got {fourcc!r}"], err
    assert LiveSettings(camera_fourcc="YUYV").camera_fourcc == "YUYV"
    assert LiveSettings(camera_fourcc="").camera_fourcc == ""

"""Issue 23.14: one exit-status rule for every command (README, "Errors, warnings and exit
codes"; streamer/report.py): 2 when the command as written is wrong (an option argparse
refuses, a setting out of range, a bad preset, a name nothing knows), 1 when the run failed
(an input, an output, the model store, the network), 130/143 when stopped; one `error:`
line either way."""
from __future__ import annotations

import os

import numpy as np
import pytest

from command_lines import COMMANDS, error_lines, run_process


def _image(path):
    import cv2
    cv2.imwrite(str(path), np.full((64, 64, 3), 128, np.uint8))
    return path


def _rc(capfd, name, argv):
    rc = COMMANDS[name].main([str(a) for a in argv])
    err = error_lines(capfd.readouterr().err)
    errors = [line for line in err if line.startswith("error: ")]
    assert len(errors) == 1 and errors[0] == err[-1], err  # one error line, the last
    assert not any("Traceback" in line for line in err), err
    return rc, errors[0]


# --- 2: the command as written is wrong ---------------------------------------------------

@pytest.mark.parametrize("argv, words", [
    (["--seg-model", "huge"], "--seg-model: invalid choice: 'huge'"),  # argparse's choice
    (["--temporal-strength", "2"], "must be a number from 0 to 1"),  # was exit 1
    (["--no-such-option"], "unrecognized arguments: --no-such-option"),
    (["--config", "no-such-preset"], "no preset 'no-such-preset'"),
    (["--background", "plaid"], "background"),
    (["--ray", "notanaddress"], "is not a Ray address"),
])
def test_run_video_usage_errors_exit_2(tmp_path, capfd, argv, words):
    rc, line = _rc(capfd, "run_video", [_image(tmp_path / "in.png"), "-o",
                                        tmp_path / "out.png", "--models", tmp_path / "store",
                                        *argv])
    assert rc == 2 and words in line, line
    assert not (tmp_path / "out.png").exists()


def test_run_video_unknown_style_exits_2(tmp_path, capfd):
    rc, line = _rc(capfd, "run_video", [_image(tmp_path / "in.png"), "-o", tmp_path / "o.png",
                                        "--style", "pixar", "--models", tmp_path / "store"])
    assert rc == 2 and "unknown style 'pixar'" in line, line


@pytest.mark.parametrize("argv, words", [
    (["--queue", "3"], "must be 1 or 2"),
    (["--seconds", "nan"], "must be a number above 0"),
    (["--sink", "carrier-pigeon"], "unknown sink 'carrier-pigeon'"),
    (["--sink", "udp://127.0.0.1:99999"], "port must be a number in 1..65535"),
    (["--style", "cubist"], "unknown style 'cubist'"),
    (["--output-size", "321x180"], "output-size must be even"),
    (["--schedule", "sometimes"], "invalid choice"),
])
def test_run_stream_usage_errors_exit_2(tmp_path, capfd, argv, words):
    rc, line = _rc(capfd, "run_stream", ["--config", "live-cpu", "--synthetic", "--sink",
                                         "null", "--no-commands", "--models",
                                         tmp_path / "store", *argv])
    assert rc == 2 and words in line, line


def test_the_same_sink_twice_exits_2(tmp_path, capfd):
    rc, line = _rc(capfd, "run_stream", ["--config", "live-cpu", "--synthetic", "--no-commands",
                                         "--sink", tmp_path / "a.mkv", "--sink",
                                         tmp_path / "." / "a.mkv"])
    assert rc == 2 and "given twice" in line, line


@pytest.mark.parametrize("argv, words", [
    (["--port", "70000"], "--port: must be a whole number from 1 to 65535"),
    (["--fade", "nan"], "--fade: must be a number from 0 to 60"),
    (["--seg-model", "huge"], "invalid choice"),
    (["--max-file-size", "lots"], "not a file size: 'lots'"),
    (["--auth", "nopassword"], "USER:PASSWORD"),
])
def test_run_web_usage_errors_exit_2(tmp_path, capfd, argv, words):
    # an empty store: a value wrongly taken fails at start instead of serving
    rc, line = _rc(capfd, "run_web", ["--models", tmp_path / "empty", *argv])
    assert rc == 2 and words in line, line


@pytest.mark.parametrize("argv, words", [
    ([], "the following arguments are required: COMMAND"),
    (["fetch", "pixar"], "unknown model 'pixar'"),
    (["fetch", "anime", "--retries", "-1"], "--retries: must be a whole number from 0 to 100"),
    (["fetch", "anime", "--timeout", "inf"], "--timeout: must be a number above 0"),
    (["fetch", "anime", "--mirror", "notaurl"], "--mirror 'notaurl' is not an http(s) URL"),
    (["path", "anime", "--part", "x"], "invalid choice: 'x'"),
    (["path", "anime", "--precision", "fp64"], "invalid choice: 'fp64'"),
])
def test_models_usage_errors_exit_2(tmp_path, capfd, argv, words):
    rc, line = _rc(capfd, "models", [*argv, "--models", tmp_path / "store"] if argv else [])
    assert rc == 2 and words in line, line
    assert not (tmp_path / "store" / "dctnet").exists()  # nothing was fetched or made


# --- 1: the run failed --------------------------------------------------------------------

def test_run_video_failures_exit_1(tmp_path, capfd):
    rc, line = _rc(capfd, "run_video", [tmp_path / "nothing.mp4", "-o", tmp_path / "o.mp4"])
    assert rc == 1 and "nothing.mp4" in line, line
    # a style that is not installed (a script cannot be asked): the store, not the command
    rc, line = _rc(capfd, "run_video", [_image(tmp_path / "in.png"), "-o", tmp_path / "o.png",
                                        "--models", tmp_path / "store", "--no-fetch"])
    assert rc == 1 and "python -m streamer.models fetch anime" in line, line


def test_run_video_without_ray_installed_exits_1(tmp_path, capfd, monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    rc, line = _rc(capfd, "run_video", [_image(tmp_path / "in.png"), "-o", tmp_path / "o.png",
                                        "--ray"])
    assert rc == 1 and "--ray needs Ray" in line, line


def test_run_stream_failures_exit_1(models_dir, tmp_path, capfd):
    rc, line = _rc(capfd, "run_stream", ["--config", "live-cpu", "--models", models_dir,
                                         "--source", tmp_path / "gone.mp4", "--sink", "null",
                                         "--no-commands"])
    assert rc == 1 and "gone.mp4" in line, line


def test_run_web_failures_exit_1(tmp_path, capfd):
    # an empty model store: the server cannot start (or Gradio is missing): the run failed
    rc, line = _rc(capfd, "run_web", ["--models", tmp_path / "empty", "--port", "7"])
    assert rc == 1 and ("no style is installed" in line or "Gradio" in line), line


def test_models_runtime_failures_exit_1(tmp_path, capfd):
    store = tmp_path / "store"
    # fetch with no network
    rc, line = _rc(capfd, "models", ["fetch", "anime", "--models", store, "--mirror",
                                     "http://127.0.0.1:1", "--retries", "0", "--timeout", "2",
                                     "--no-progress", "--no-build"])
    assert rc == 1 and "Connection refused" in line, line
    # a refused import
    junk = tmp_path / "x.pb"
    junk.write_bytes(b"garbage" * 10)
    rc, line = _rc(capfd, "models", ["import", junk, "--style", "anime", "--models", store])
    assert rc == 1 and "not a model" in line, line
    # a failed verification (an empty store)
    rc, line = _rc(capfd, "models", ["verify", "--models", tmp_path / "none"])
    assert rc == 1 and "no model files" in line, line


def test_models_bad_calibration_material_exits_1_as_in_run_video(models_dir, tmp_path, capfd):
    rc, line = _rc(capfd, "models", ["path", "anime", "--precision", "int8", "--calibration",
                                     tmp_path / "nowhere", "--models", models_dir])
    assert rc == 1 and "nowhere" in line, line
    empty = tmp_path / "frames"
    empty.mkdir()
    (empty / "a.png").write_bytes(b"not an image")
    rc, line = _rc(capfd, "models", ["path", "anime", "--precision", "int8", "--calibration",
                                     empty, "--models", models_dir])
    assert rc == 1 and "no readable image" in line, line


def test_models_ctrl_c_is_130_with_one_line(monkeypatch, tmp_path, capfd):
    import streamer.models.cli as cli

    def interrupted(store, args):
        raise KeyboardInterrupt
    monkeypatch.setitem(cli._COMMANDS, "list", interrupted)
    rc = COMMANDS["models"].main(["list", "--models", str(tmp_path)])
    err = error_lines(capfd.readouterr().err)
    assert rc == 130 and len(err) == 1 and err[0].startswith("interrupted"), err


# --- the rule, in one place ---------------------------------------------------------------

def test_the_rule_is_the_error_class():
    from streamer.config import ConfigError
    from streamer.errors import UsageError, UserError
    from streamer.live.parts import LiveError, SinkSpecError
    from streamer.models.errors import (BadSetting, DownloadError, ModelNotInstalled,
                                        StoreError, UnknownModel)
    from streamer.sinks.video_file import OutputError
    from streamer.sources.video_file import MediaError
    from streamer.report import EXIT_ERROR, EXIT_USAGE, CommandLineError, failure_status
    from streamer.video.cluster_pool import RayUnavailable

    for cls in (ConfigError, CommandLineError, UnknownModel, BadSetting, SinkSpecError):
        assert issubclass(cls, UsageError) and failure_status(cls("x")) == EXIT_USAGE, cls
    for cls in (UserError, MediaError, OutputError, StoreError, ModelNotInstalled,
                DownloadError, LiveError, RayUnavailable):
        assert failure_status(cls("x")) == EXIT_ERROR, cls
    assert failure_status(RuntimeError("a bug")) == EXIT_ERROR


@pytest.mark.parametrize("name, args, status", [
    ("run_video", ["in.png", "--temporal-strength", "2"], 2),
    ("run_video", ["gone.mp4", "-o", "gone.png"], 1),
    ("run_stream", ["--synthetic", "--sink", "null", "--seconds", "0"], 2),
    ("run_web", ["--port", "nan", "--models", "{tmp}/store"], 2),
    ("models", ["fetch", "pixar"], 2),
    ("models", ["verify", "--models", "{tmp}/none"], 1),
])
def test_a_process_exits_with_the_rule_and_one_line(tmp_path, name, args, status):
    env = {**os.environ, "TOONSTREAM_MODELS": str(tmp_path / "store")}
    p = run_process(COMMANDS[name], *[a.format(tmp=tmp_path) for a in args], env=env)
    err = error_lines(p.stderr)
    assert p.returncode == status, p.stderr
    assert len(err) == 1 and err[0].startswith("error: "), p.stderr


@pytest.mark.parametrize("name, sub", [("run_video", []), ("run_stream", []), ("run_web", []),
                                       ("models", []), ("models", ["fetch"])])
def test_help_still_exits_0(capsys, name, sub):
    try:
        rc = COMMANDS[name].main([*sub, "--help"])
    except SystemExit as exc:  # argparse's own exit after printing the help
        rc = exc.code
    assert rc == 0 and capsys.readouterr().out.startswith("usage: ")

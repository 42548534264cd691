"""run_video on Ray (streamer/video/cluster.py) and the pieces it is made of: the chunk
planner, the chunk encoder and the joiner (tested without Ray), then whole jobs on a local
Ray with two CPUs: a folder of clips, a clip cut into chunks and joined, a worker killed
mid-chunk, a resumed job, a bad file among good ones.

Clips are tiny (96x64, a few dozen frames, a keyframe every 12 frames) and encoded
losslessly (--crf 0) with faces off, so a chunked output can be compared frame by frame
with the single-machine one: any difference is the chunking's, not the encoder's."""
from __future__ import annotations

import json
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from streamer.config import VideoSettings, build_settings
from streamer.report import Log
from streamer.video.app import main, run_on_ray
from streamer.video.chunk_encode import encode_chunk
from streamer.video.chunks import plan_chunks
from streamer.video.convert import Job, convert_video
from streamer.video.join import JoinError, join_pieces

SIZE = 64
# The temporal step (on by default) carries state over every frame with no end, so chunks
# that start apart cannot equal one run to the level: the exactness tests run it off, and
# test_with_the_temporal_step_chunks_stay_close_to_one_run measures it on.
COMMON = ["--size", str(SIZE), "--faces", "off", "--temporal", "off", "--crf", "0",
          "--no-progress"]


@pytest.fixture(autouse=True)
def _models_env(models_dir, monkeypatch):
    monkeypatch.setenv("TOONSTREAM_MODELS", str(models_dir))


def make_clip(path: Path, n: int = 72, *, w: int = 96, h: int = 64, gop: int = 12,
              audio: bool = True, seed: int = 0) -> Path:
    """An H.264 clip at 24 fps (time base 1/12288 in MP4) with a keyframe every `gop`
    frames, B-frames, and a mono AAC track as long as the video."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (h, w, 3), np.uint8)
    with av.open(str(path), "w") as c:
        v = c.add_stream("libx264", rate=24, options={"g": str(gop), "keyint_min": str(gop),
                                                      "sc_threshold": "0"})
        v.width, v.height, v.pix_fmt = w, h, "yuv420p"
        a = None
        if audio:
            a = c.add_stream("aac", rate=44100)
            a.layout = "mono"
        for i in range(n):
            img = np.roll(base, 2 * i, axis=1)
            img[: h // 4, : w // 4] = (40 * i) % 256
            c.mux(v.encode(av.VideoFrame.from_ndarray(img, "bgr24")))
        c.mux(v.encode())
        if a is not None:
            total = int(n / 24 * 44100)
            t = np.arange(total) / 44100
            wave = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
            for s in range(0, total, 1024):
                af = av.AudioFrame.from_ndarray(wave[None, s: s + 1024], format="flt",
                                                layout="mono")
                af.sample_rate, af.pts, af.time_base = 44100, s, Fraction(1, 44100)
                c.mux(a.encode(af))
            c.mux(a.encode())
    return path


def look(path: Path) -> dict:
    """Frame times, images, the video's end and the audio packets of a file."""
    out: dict = {"times": [], "images": [], "audio": []}
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        out["tb"] = v.time_base
        if v.duration is not None and v.start_time is not None:
            out["end"] = float((v.start_time + v.duration) * v.time_base)
        for p in c.demux():
            if p.stream.type == "audio" and p.size:
                out["audio"].append((float(p.pts * p.time_base), bytes(p)))
            elif p.stream.type == "video":
                for f in p.decode():
                    out["times"].append(float(f.pts * f.time_base))
                    out["images"].append(f.to_ndarray(format="bgr24"))
    return out


def assert_same_video(a: dict, b: dict, *, pixels: int = 1) -> None:
    assert len(b["times"]) == len(a["times"])
    assert b["times"] == pytest.approx(a["times"], abs=1e-6)
    if "end" in a:
        assert b["end"] == pytest.approx(a["end"], abs=1e-6)
    assert [x[1] for x in b["audio"]] == [x[1] for x in a["audio"]]  # copied, not re-encoded
    assert [x[0] for x in b["audio"]] == pytest.approx([x[0] for x in a["audio"]], abs=1e-6)
    worst = max(int(np.abs(x.astype(np.int16) - y).max())
                for x, y in zip(a["images"], b["images"]))
    assert worst <= pixels


def alpha_frames(path: Path) -> list[np.ndarray]:
    """BGRA frames; VP9 through libvpx-vp9, the decoder that reads its alpha plane."""
    with av.open(str(path)) as c:
        st = c.streams.video[0]
        if st.codec_context.name != "vp9":
            return [f.to_ndarray(format="bgra") for f in c.decode(st)]
        dec = av.CodecContext.create("libvpx-vp9", "r")
        return [f.to_ndarray(format="bgra") for p in c.demux(st) for f in
                dec.decode(p if p.size else None)]


def alpha_flagged(path: Path) -> bool:
    """The file says it has alpha the way players look for it: Matroska's AlphaMode (read
    back as alpha_mode), ProRes 4444's sample entry (ap4h)."""
    with av.open(str(path)) as c:
        st = c.streams.video[0]
        if st.codec_context.name == "vp9":
            return st.metadata.get("alpha_mode") == "1"
        return st.codec_context.codec_tag == "ap4h"


def assert_same_alpha_video(single: Path, joined: Path) -> None:
    """`joined` has `single`'s frames, times and alpha (within the lossy codec's rounding),
    and an alpha channel that is really there (not all opaque)."""
    a, b = look(single), look(joined)
    assert len(b["times"]) == len(a["times"])
    assert b["times"] == pytest.approx(a["times"], abs=1e-6)
    assert [x[1] for x in b["audio"]] == [x[1] for x in a["audio"]]
    assert alpha_flagged(single) and alpha_flagged(joined)
    fa, fb = alpha_frames(single), alpha_frames(joined)
    assert len(fb) == len(fa)
    worst = max(int(np.abs(x.astype(np.int16) - y).max()) for x, y in zip(fa, fb))
    assert worst <= 2
    assert min(int(f[..., 3].min()) for f in fb) < 128 < max(int(f[..., 3].max()) for f in fb)


def settings(**kw) -> VideoSettings:
    base = dict(size=SIZE, faces="off", temporal="off", crf=0, progress=False, overwrite=True)
    base.update(kw)
    return VideoSettings(**base)


# --- without Ray: planner, chunk encoder, joiner --------------------------------------------


def test_planner_cuts_at_keyframes_and_every_frame_lands_in_exactly_one_chunk(tmp_path):
    src = make_clip(tmp_path / "in.mp4", n=72)
    plan = plan_chunks(src, chunk_seconds=0.9, warmup_seconds=0.5)
    with av.open(str(src)) as c:
        pk = [p for p in c.demux(c.streams.video[0]) if p.size]
        keys = {p.pts for p in pk if p.is_keyframe}
        pts = sorted(p.pts for p in pk)
    assert len(plan.chunks) == 3
    assert sum(ch.frames for ch in plan.chunks) == len(pts) == plan.frames
    for a, b in zip(plan.chunks, plan.chunks[1:]):
        assert a.end == b.start and b.start in keys
    for ch in plan.chunks[1:]:
        # decoding starts at a keyframe at least 0.5 s before the chunk; the frames of the
        # last 0.5 s are the warm-up
        assert ch.decode_from in keys and ch.decode_from <= ch.warm_from
        assert (ch.start - ch.decode_from) * plan.time_base >= Fraction(1, 2)
        assert (ch.start - ch.warm_from) * plan.time_base == pytest.approx(0.5, abs=1e-3)
        assert ch.warmup == sum(1 for p in pts if ch.warm_from <= p < ch.start) == 12
    assert plan.chunks[0].decode_from is None and plan.chunks[0].warmup == 0
    no_warmup = plan_chunks(src, chunk_seconds=0.9, warmup_seconds=0)
    assert [c.start for c in no_warmup.chunks] == [c.start for c in plan.chunks]
    assert all(c.warmup == 0 and c.decode_from in (None, c.start) for c in no_warmup.chunks)


def test_planner_converts_whole_a_clip_without_keyframes_to_cut_at(tmp_path):
    src = make_clip(tmp_path / "in.mp4", n=48, gop=250, audio=False)
    plan = plan_chunks(src, chunk_seconds=0.5)
    assert not plan.chunked and plan.chunks[0].frames == 48
    assert "too few to cut" in plan.note


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_chunks_encoded_apart_and_joined_match_the_single_machine_output(tmp_path, suffix):
    src = make_clip(tmp_path / "in.mp4", n=72)
    job = Job(settings(device="cpu"), Log())
    single = tmp_path / f"single{suffix}"
    convert_video(src, single, job)
    plan = plan_chunks(src, chunk_seconds=0.9, warmup_seconds=0.5)
    results = [encode_chunk(src, ch, tmp_path / f"p{ch.index}.mp4", job, codec="libx264")
               for ch in plan.chunks]
    assert [r.frames for r in results] == [ch.frames for ch in plan.chunks]
    assert [r.warmup for r in results] == [ch.warmup for ch in plan.chunks]
    joined = tmp_path / f"joined{suffix}"
    counts = join_pieces(src, [Path(r.path) for r in results], joined,
                         end_pts=results[-1].end_pts)
    assert counts["video_packets"] == 72
    a, b = look(single), look(joined)
    if suffix == ".mkv":  # Matroska counts in milliseconds: the end may round either way
        a.pop("end", None)
    assert_same_video(a, b)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


@pytest.mark.parametrize("suffix", [".webm", ".mkv", ".mov"])
def test_alpha_chunks_are_encoded_with_the_alpha_encoder_and_joined_with_their_alpha(
        tmp_path, suffix):
    # issue 23.2: pieces take the single-machine sink path, alpha included (VP9 yuva420p
    # in Matroska pieces, ProRes 4444 in MOV pieces), and the join keeps the alpha flagged
    from streamer.sinks.video_file import output_encoder
    from streamer.video.chunk_encode import piece_suffix

    src = make_clip(tmp_path / "in.mp4", n=48)  # AAC: into WebM as Opus, as the sink does
    job = Job(settings(device="cpu", background="transparent"), Log())
    single = tmp_path / f"single{suffix}"
    convert_video(src, single, job)
    codec = output_encoder(single, None, alpha=True)
    assert piece_suffix(codec, alpha=True) == (".mov" if suffix == ".mov" else ".mkv")
    plan = plan_chunks(src, chunk_seconds=0.9, warmup_seconds=0.5)
    assert len(plan.chunks) == 2
    results = [encode_chunk(src, ch, tmp_path / f"p{ch.index}{piece_suffix(codec, True)}", job,
                            codec=codec) for ch in plan.chunks]
    joined = tmp_path / f"joined{suffix}"
    join_pieces(src, [Path(r.path) for r in results], joined, end_pts=results[-1].end_pts,
                alpha=True)
    assert_same_alpha_video(single, joined)


def test_the_join_writes_the_audio_as_the_audio_setting_says(tmp_path):
    # --audio on a chunked video: the join decides as the sink does (copy, re-encode, none)
    from streamer.video.join import plan_audio

    src = make_clip(tmp_path / "in.mp4", n=24)
    job = Job(settings(device="cpu"), Log())
    plan = plan_chunks(src, chunk_seconds=0.4, warmup_seconds=0)
    pieces = [Path(encode_chunk(src, ch, tmp_path / f"p{ch.index}.mp4", job,
                                codec="libx264").path) for ch in plan.chunks]
    end = plan_chunks(src, chunk_seconds=100).chunks[0].end
    for mode, codecs in (("none", []), ("encode", ["opus"]), ("auto", ["aac"])):
        out = tmp_path / f"{mode}.mkv"
        counts = join_pieces(src, pieces, out, end_pts=end, audio=mode)
        with av.open(str(out)) as c:
            assert [a.codec_context.name for a in c.streams.audio] == codecs, mode
        assert (counts["audio_packets"] > 0) == bool(codecs)
    assert plan_audio(src, tmp_path / "x.mkv") == []  # AAC is copied into Matroska
    assert "re-encoded" in plan_audio(src, tmp_path / "x.webm")[0]


def test_joiner_refuses_pieces_encoded_differently_and_writes_nothing(tmp_path):
    a = make_clip(tmp_path / "a.mp4", n=12, audio=False)
    b = make_clip(tmp_path / "b.mp4", n=12, w=128, audio=False)
    with pytest.raises(JoinError, match="encoded differently"):
        join_pieces(a, [a, b], tmp_path / "out.mp4", end_pts=None)
    assert not (tmp_path / "out.mp4").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_several_inputs_without_ray_go_into_the_output_folder_by_name(tmp_path, capfd):
    a = make_clip(tmp_path / "a.mp4", n=6, audio=False)
    b = make_clip(tmp_path / "b.mkv", n=8, audio=False)
    rc = main([str(a), str(b), "-o", str(tmp_path / "out"), *COMMON])
    assert rc == 0, capfd.readouterr().err
    assert [len(look(tmp_path / "out" / n)["times"]) for n in ("a.mp4", "b.mkv")] == [6, 8]
    rc = main([str(a), str(b), "-o", str(a), *COMMON, "-y"])
    assert rc == 1 and "several inputs need an output folder" in capfd.readouterr().err


def test_ray_missing_is_a_one_line_error_naming_the_extra(tmp_path, capfd, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    src = make_clip(tmp_path / "in.mp4", n=6, audio=False)
    rc = main([str(src), "-o", str(tmp_path / "out.mp4"), "--ray", *COMMON])
    err = capfd.readouterr().err
    assert rc == 1
    assert err.strip().splitlines() == [
        "error: --ray needs Ray, which is not installed: pip install 'toonstream[ray]'"]


def test_an_input_taken_as_the_ray_address_is_a_one_line_error(tmp_path, capfd):
    src = make_clip(tmp_path / "in.mp4", n=6, audio=False)
    rc = main(["--ray", str(src), str(src), "-o", str(tmp_path / "out"), *COMMON])
    err = capfd.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1  # usage (issue 23.14)
    assert "is not a Ray address" in err and "put --ray after the inputs" in err


def test_the_ray_extra_installs_the_client_that_ray_addresses_need():
    # issue 23.7: the README's `--ray ray://head:10001` needs ray[client] (grpcio)
    import tomllib

    from packaging.requirements import Requirement

    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    (req,) = [Requirement(r) for r in project["project"]["optional-dependencies"]["ray"]]
    assert req.name == "ray" and "client" in req.extras


def _run_video_process(*args, prelude: str = "", timeout: float = 120):
    """run_video.py in a fresh process (no Ray initialised by another test), after
    `prelude` (Python run first, e.g. to hide a package)."""
    import subprocess

    code = (f"import sys; {prelude}\nfrom streamer.video.app import main\n"
            f"sys.exit(main(sys.argv[1:]))")
    root = Path(__file__).parents[1]
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], cwd=root,
                          capture_output=True, text=True, timeout=timeout)


def test_a_ray_client_address_without_the_client_package_is_one_line_naming_the_extra(
        tmp_path):
    # issue 23.7: Ray's own words named `pip install ray[client]`; ours name our extra
    pytest.importorskip("ray")
    src = make_clip(tmp_path / "in.mp4", n=6, audio=False)
    p = _run_video_process(src, "-o", tmp_path / "o.mp4", "--ray", "ray://127.0.0.1:1",
                           *COMMON, prelude="sys.modules['grpc'] = None")
    assert p.returncode == 1, p.stderr
    assert p.stderr.strip().splitlines() == [
        "error: --ray ray://127.0.0.1:1 needs Ray's client (the grpcio package), which is "
        "not installed: pip install 'toonstream[ray]'"]


@pytest.fixture
def closed_port():
    """A local port that refuses connections: bound, never listening, so no one else takes
    it while the test runs."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.mark.parametrize("scheme", ["", "ray://"])
def test_a_ray_address_where_nothing_listens_is_one_line_not_minutes_of_retries(
        tmp_path, closed_port, scheme):
    # issue 23.8: `--ray 127.0.0.1:1` retried "Failed to connect to GCS" for minutes with no
    # error line. The timeout below only stops a hung process; nothing here is timed.
    pytest.importorskip("ray")
    if scheme:
        pytest.importorskip("grpc")
    address = f"{scheme}127.0.0.1:{closed_port}"
    src = make_clip(tmp_path / "in.mp4", n=6, audio=False)
    p = _run_video_process(src, "-o", tmp_path / "o.mp4", "--ray", address, *COMMON)
    assert p.returncode == 1, p.stderr
    lines = p.stderr.strip().splitlines()
    assert lines == [f"error: cannot join Ray at {address}: nothing answers at "
                     f"127.0.0.1:{closed_port} (connection refused); start the cluster there "
                     f"(ray start --head) or check the address"]
    assert sorted(x.name for x in tmp_path.iterdir()) == ["in.mp4"]


def test_ray_address_from_the_environment_is_checked_and_named(closed_port):
    # Ray joins RAY_ADDRESS for no address and for auto: so is it checked, and named
    from streamer.config import ConfigError
    from streamer.video.ray_address import RayAddressError, check_ray_address

    env = {"RAY_ADDRESS": f"127.0.0.1:{closed_port}"}
    for address in (None, "local", "auto"):
        with pytest.raises(RayAddressError, match=f"cannot join Ray at RAY_ADDRESS=127.0.0.1:"
                                                  f"{closed_port}: nothing answers"):
            check_ray_address(address, env)
    with pytest.raises(ConfigError, match="RAY_ADDRESS 'nowhere' is not a Ray address"):
        check_ray_address("auto", {"RAY_ADDRESS": "nowhere"})


def test_a_ray_address_where_something_else_answers_is_one_line(tmp_path):
    # A port that is not Ray's (a web server, a service that says nothing) kept Ray retrying
    # as long as a closed one: the check opens an HTTP/2 connection, as every gRPC server
    # answers at once, and says what the port should be.
    import socket
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from streamer.video.ray_address import not_ray

    web = HTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    threading.Thread(target=web.serve_forever, daemon=True).start()
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(4)  # connections are accepted by the kernel, and nothing is ever said
    try:
        why = not_ray("127.0.0.1", web.server_address[1], timeout_s=2)
        assert why.startswith(f"something at 127.0.0.1:{web.server_address[1]} answers, but "
                              f"it is not Ray (no gRPC server); give the port of the head's "
                              f"GCS (default 6379)"), why
        port = silent.getsockname()[1]
        why = not_ray("127.0.0.1", port, client=True, timeout_s=0.5)
        assert why == (f"something at 127.0.0.1:{port} is silent for 0.5 s, but it is not Ray "
                       f"(no gRPC server); give the port of the head's client server (default "
                       f"10001)")
    finally:
        web.shutdown()
        web.server_close()
        silent.close()


def test_the_address_check_lets_a_real_ray_through(ray_local):
    # the other side of the check: Ray's own GCS answers as a gRPC server, at its address
    # and at the loopback one
    from streamer.video.ray_address import not_ray, split_address

    host, port = split_address(ray_local.get_runtime_context().gcs_address)
    assert not_ray(host, port) is None
    assert not_ray("127.0.0.1", port) is None


@pytest.mark.parametrize("address,parsed", [
    ("head:6379", ("head", 6379)), ("ray://head", ("head", 10001)),
    ("ray://head:10002", ("head", 10002)), ("[::1]:6379", ("::1", 6379))])
def test_ray_addresses_are_read_as_ray_reads_them(address, parsed):
    from streamer.video.ray_address import split_address

    assert split_address(address) == parsed


@pytest.mark.parametrize("address", ["head:port", "head:0", "head:70000", "ray://:10001"])
def test_a_ray_address_with_a_bad_port_is_one_line(address):
    from streamer.config import ConfigError
    from streamer.video.ray_address import split_address

    with pytest.raises(ConfigError, match="is not a Ray address"):
        split_address(address)


def test_a_worker_that_cannot_see_a_path_fails_that_task_in_one_line(tmp_path):
    from dataclasses import asdict

    from streamer.video.cluster_messages import TaskMessage
    from streamer.video.cluster_worker import ToonWorker

    worker = ToonWorker(asdict(settings()), 1)  # the actor's body, without Ray
    src = make_clip(tmp_path / "in.mp4", n=6, audio=False)
    out = worker.run(TaskMessage(1, "file", str(tmp_path / "gone.mp4"), str(tmp_path / "o.mp4")))
    assert not out.ok and "cannot see the input" in out.error
    assert "\n" not in out.error
    out = worker.run(TaskMessage(2, "file", str(src), str(tmp_path / "nowhere" / "o.mp4")))
    assert not out.ok and "cannot see the output folder" in out.error


def test_an_unknown_style_is_one_line_before_ray_starts(tmp_path, capfd, monkeypatch):
    import streamer.video.cluster as cluster

    monkeypatch.setattr(cluster.ClusterJob, "_connect",
                        lambda self: pytest.fail("Ray was started for a job that cannot run"))
    src = make_clip(tmp_path / "in.mp4", n=6, audio=False)
    rc = main([str(src), "-o", str(tmp_path / "o.mp4"), "--ray", "--style", "nope", *COMMON])
    err = capfd.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "nope" in err


def test_the_driver_names_outputs_as_a_single_machine_run_does(tmp_path):
    from streamer.sinks.video_file import OutputError
    from streamer.video.targets import all_targets

    a = make_clip(tmp_path / "a.mp4", n=2, audio=False)
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    b = make_clip(folder / "sub" / "b.mkv", n=2, audio=False)
    assert all_targets([a], None, "anime") == [(a, tmp_path / "a_anime.mp4")]
    assert all_targets([folder], None, "3d") == [(b, tmp_path / "in_3d" / "sub" / "b.mkv")]
    assert all_targets([a, folder], tmp_path / "out", "anime") == [
        (a, tmp_path / "out" / "a.mp4"), (b, tmp_path / "out" / "in" / "sub" / "b.mkv")]
    # the same lines as without Ray (test_several_inputs_without_ray_...)
    with pytest.raises(OutputError, match="several inputs need -o FOLDER"):
        all_targets([a, folder], None, "anime")
    with pytest.raises(OutputError, match="several inputs need an output folder"):
        all_targets([a, folder], a, "anime")


def test_the_plan_cuts_a_long_clip_and_sends_a_still_whole(tmp_path):
    import cv2

    from streamer.video.cluster_plan import plan_job
    from streamer.video.manifest import Manifest, job_key, work_dir_for
    from streamer.video.targets import all_targets

    folder = tmp_path / "in"
    folder.mkdir()
    make_clip(folder / "long.mp4", n=72)
    cv2.imwrite(str(folder / "still.png"), np.full((32, 48, 3), 128, np.uint8))
    s = settings(chunk_seconds=0.9)
    out = (tmp_path / "out").absolute()
    out.mkdir()  # as the job does before planning: outputs are checked as they will be written
    pairs = all_targets([folder], out, s.style)
    plan = plan_job(pairs, Manifest(work_dir_for(out), job_key(s)), s, out)
    assert [(it.src.name, it.error) for it in plan.items] == [("long.mp4", None),
                                                             ("still.png", None)]
    assert [t.kind for t in plan.tasks] == ["chunk", "chunk", "chunk", "file"]
    assert [t.id for t in plan.tasks] == [1, 2, 3, 4]
    # every piece is encoded as the output would be; a still's task names no encoder
    assert [t.message().codec for t in plan.tasks] == ["libx264"] * 3 + [None]
    assert [t.message().chunk for t in plan.tasks[:3]] == list(plan.items[0].chunks)
    assert sum(t.frames for t in plan.tasks[:3]) == plan.items[0].frames == 72


def test_ray_settings_come_from_a_preset_too(tmp_path):
    preset = tmp_path / "p.yaml"
    preset.write_text("ray: true\nchunk-seconds: 30\nworkers: 2\n")
    s = build_settings(VideoSettings, str(preset), {})
    assert (s.ray, s.chunk_seconds, s.workers) == ("local", 30.0, 2)
    preset.write_text("ray: ray://head:10001\n")
    assert build_settings(VideoSettings, str(preset), {}).ray == "ray://head:10001"
    assert build_settings(VideoSettings, "ray-cluster", {}).ray == "auto"


# --- on a local Ray ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray")
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def ray_run(capfd, *args) -> tuple[int, str]:
    rc = main([str(a) for a in args])
    out, err = capfd.readouterr()
    return rc, out + err


def test_a_folder_of_three_clips_gives_the_single_machine_outputs(ray_local, tmp_path, capfd):
    folder = tmp_path / "in"
    folder.mkdir()
    for i, n in enumerate((12, 18, 24)):
        make_clip(folder / f"clip{i}.mp4", n=n, seed=i)
    rc, log = ray_run(capfd, folder, "-o", tmp_path / "ray", "--ray", *COMMON,
                      "--worker-cpus", "1", "--stats-json", tmp_path / "s.json")
    assert rc == 0, log
    assert "done: 3 of 3 file(s), 54 frames" in log
    assert "worker " in log and "fps" in log  # per-worker throughput
    rc, log = ray_run(capfd, folder, "-o", tmp_path / "one", *COMMON)
    assert rc == 0, log
    for i in range(3):
        assert_same_video(look(tmp_path / "one" / f"clip{i}.mp4"),
                          look(tmp_path / "ray" / f"clip{i}.mp4"))
    stats = json.loads((tmp_path / "s.json").read_text())
    assert stats["frames"] == 54 and len(stats["items"]) == 3
    assert sum(w["frames"] for w in stats["workers"]) == 54
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no work left behind


@pytest.mark.parametrize("faces", ["off", "on"])
def test_one_clip_cut_into_three_chunks_and_joined(ray_local, tmp_path, capfd, faces):
    # faces on: each chunk starts with 0.5 s of warm-up; no face in these frames, so the
    # output must still match the single-machine one within 1
    src = make_clip(tmp_path / "in.mp4", n=72)
    opts = [*COMMON, "--faces", faces]
    rc, log = ray_run(capfd, src, "-o", tmp_path / "ray.mp4", "--ray", *opts,
                      "--chunk-seconds", "0.9", "--warmup-seconds", "0.5",
                      "--worker-cpus", "1", "--stats-json", tmp_path / "s.json")
    assert rc == 0, log
    assert json.loads((tmp_path / "s.json").read_text())["chunks"] == 3
    assert ("faces on" in log) == (faces == "on")
    rc, log = ray_run(capfd, src, "-o", tmp_path / "one.mp4", *opts)
    assert rc == 0, log
    assert_same_video(look(tmp_path / "one.mp4"), look(tmp_path / "ray.mp4"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4", "one.mp4", "ray.mp4",
                                                          "s.json"]


@pytest.mark.parametrize("output", ["t.webm", "t.mov", None])
def test_chunks_with_a_transparent_background_keep_the_alpha(ray_local, tmp_path, capfd,
                                                             output):
    # issue 23.2: `--ray --chunk-seconds 1 --background transparent -o t.webm` crashed in
    # the sink ("Unexpected numpy array shape (H, W, 4)") and left the work folder; with no
    # -o the output gets the single-machine alpha default name (.webm for an .mp4)
    src = make_clip(tmp_path / "in.mp4", n=72)  # AAC: into WebM as Opus, as without Ray
    opts = [*COMMON, "--background", "transparent"]
    where = ["-o", tmp_path / output] if output else []
    rc, log = ray_run(capfd, src, *where, "--ray", *opts, "--chunk-seconds", "0.9",
                      "--warmup-seconds", "0.5", "--worker-cpus", "1",
                      "--stats-json", tmp_path / "s.json")
    assert rc == 0, log
    assert json.loads((tmp_path / "s.json").read_text())["chunks"] == 3
    made = tmp_path / (output or "in_anime.webm")
    suffix = made.suffix
    rc, log = ray_run(capfd, src, "-o", tmp_path / f"one{suffix}", *opts)
    assert rc == 0, log
    assert_same_alpha_video(tmp_path / f"one{suffix}", made)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["in.mp4", made.name, f"one{suffix}", "s.json"])  # no work folder, no pieces


def test_a_png_sequence_on_ray_is_written_whole_with_its_alpha(ray_local, tmp_path, capfd):
    # -o FOLDER/%05d.png: the sequence's folder is the sink's to make (the worker took its
    # absence for a folder it cannot see), and it has no one file to checksum for a resume
    src = make_clip(tmp_path / "in.mp4", n=24, audio=False)
    rc, log = ray_run(capfd, src, "-o", tmp_path / "seq" / "%05d.png", "--ray", *COMMON,
                      "--background", "transparent", "--chunk-seconds", "0.4",
                      "--worker-cpus", "1")
    assert rc == 0, log
    assert "a PNG sequence output is converted whole" in log
    frames = sorted((tmp_path / "seq").iterdir())
    assert len(frames) == 24
    import cv2

    assert cv2.imread(str(frames[0]), cv2.IMREAD_UNCHANGED).shape == (64, 96, 4)  # BGRA
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4", "seq"]


def test_a_transparent_background_into_mp4_is_refused_before_ray_starts(tmp_path, capfd,
                                                                        monkeypatch):
    # issue 23.2: the .mp4 output got the chunk crash; now the single-machine refusal
    pytest.importorskip("ray")
    import streamer.video.cluster as cluster

    monkeypatch.setattr(cluster.ClusterJob, "_connect",
                        lambda self: pytest.fail("Ray was started for a job that cannot run"))
    src = make_clip(tmp_path / "in.mp4", n=72, audio=False)
    opts = [*COMMON, "--background", "transparent", "-o", tmp_path / "t.mp4"]
    rc, single = ray_run(capfd, src, *opts)
    assert rc == 1 and single.count("\n") == 1, single
    assert single.startswith("error: t.mp4: .mp4 cannot carry the alpha channel"), single
    rc, log = ray_run(capfd, src, *opts, "--ray", "--chunk-seconds", "1")
    assert rc == 1
    assert log == single  # the same one line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4"]  # no .t.mp4.toonstream-ray


def test_audio_that_the_output_cannot_take_is_refused_before_ray_starts(tmp_path, capfd,
                                                                         monkeypatch):
    # --audio copy of AAC into WebM: the single-machine sink's refusal, not a failed join
    # after every chunk was converted
    pytest.importorskip("ray")
    import streamer.video.cluster as cluster

    monkeypatch.setattr(cluster.ClusterJob, "_connect",
                        lambda self: pytest.fail("Ray was started for a job that cannot run"))
    src = make_clip(tmp_path / "in.mp4", n=72)
    opts = [*COMMON, "--audio", "copy", "-o", tmp_path / "t.webm"]
    rc, single = ray_run(capfd, src, *opts)
    assert rc == 1 and single.count("\n") == 1 and single.startswith("error: t.webm: "), single
    rc, log = ray_run(capfd, src, *opts, "--ray", "--chunk-seconds", "0.9")
    assert rc == 1 and log == single
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4"]


def test_the_driver_names_outputs_with_the_format_options_as_without_ray(tmp_path, capfd,
                                                                        monkeypatch):
    # --format (and --image-format) on Ray: a rerun of a folder converted without Ray finds
    # every output under the name the single-machine run gave it, so Ray never starts
    pytest.importorskip("ray")
    import streamer.video.cluster as cluster

    monkeypatch.setattr(cluster.ClusterJob, "_connect",
                        lambda self: pytest.fail("Ray was started with nothing to do"))
    folder = tmp_path / "in"
    folder.mkdir()
    make_clip(folder / "a.mp4", n=6, audio=False)
    opts = [folder, "-o", tmp_path / "out", *COMMON, "--format", ".mkv"]
    rc, log = ray_run(capfd, *opts)
    assert rc == 0, log
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["a.mkv"]
    rc, log = ray_run(capfd, *opts, "--ray")
    assert rc == 0, log
    assert f"note: a.mp4: skipped, {tmp_path / 'out' / 'a.mkv'} exists" in log
    assert "done: nothing to convert" in log


def test_with_the_temporal_step_chunks_stay_close_to_one_run(tmp_path):
    # Chunks start with a warm-up, so the temporal state has settled by the first written
    # frame, but an infinite-memory blend in uint8 cannot settle to the last level: measured
    # here, not assumed equal (frames, timestamps and audio still are).
    src = make_clip(tmp_path / "in.mp4", n=72)
    job = Job(settings(device="cpu", temporal="on"), Log())
    convert_video(src, tmp_path / "single.mp4", job)
    plan = plan_chunks(src, chunk_seconds=0.9, warmup_seconds=0.5)
    assert all(ch.warmup > 0 for ch in plan.chunks[1:])
    results = [encode_chunk(src, ch, tmp_path / f"p{ch.index}.mp4", job, codec="libx264")
               for ch in plan.chunks]
    join_pieces(src, [Path(r.path) for r in results], tmp_path / "joined.mp4",
                end_pts=results[-1].end_pts)
    a, b = look(tmp_path / "single.mp4"), look(tmp_path / "joined.mp4")
    assert b["times"] == pytest.approx(a["times"], abs=1e-6)
    diffs = [np.abs(x.astype(np.int16) - y) for x, y in zip(a["images"], b["images"])]
    print(f"temporal on, 3 chunks: worst frame mean |diff| {max(float(d.mean()) for d in diffs):.3f}, "
          f"max {max(int(d.max()) for d in diffs)}, frames differing "
          f"{sum(int(d.max()) > 1 for d in diffs)} of {len(diffs)}")
    assert max(float(d.mean()) for d in diffs) < 1.0
    assert max(int(d.max()) for d in diffs) <= 16


def test_a_worker_killed_mid_chunk_is_replaced_and_the_output_is_complete(ray_local,
                                                                           tmp_path):
    src = make_clip(tmp_path / "in.mp4", n=72)
    killed = []

    def kill_mid_chunk(slots):
        for sl in slots:
            t = sl.task
            if not killed and t is not None and t.kind == "chunk" and 0 < sl.done < t.frames:
                killed.append((t.chunk.index, sl.done))
                ray_local.kill(sl.handle, no_restart=True)

    s = settings(ray="local", chunk_seconds=0.9, warmup_seconds=0.5, worker_cpus=1,
                 stats_json=str(tmp_path / "s.json"))
    rc = run_on_ray([src], tmp_path / "ray.mp4", s, Log(), poll_s=0.05,
                    on_poll=kill_mid_chunk)
    assert rc == 0
    assert killed, "no chunk was caught mid-way"
    stats = json.loads((tmp_path / "s.json").read_text())
    assert stats["retries"] == 1 and stats["frames"] == 72
    convert_video(src, tmp_path / "one.mp4", Job(settings(), Log()))
    assert_same_video(look(tmp_path / "one.mp4"), look(tmp_path / "ray.mp4"))
    # the killed worker's half-written piece went with the work folder
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4", "one.mp4", "ray.mp4",
                                                          "s.json"]


def test_a_rerun_after_an_interrupt_does_only_the_missing_chunks(ray_local, tmp_path):
    src = make_clip(tmp_path / "in.mp4", n=72)
    s = settings(ray="local", chunk_seconds=0.9, warmup_seconds=0.5, worker_cpus=2,
                 stats_json=str(tmp_path / "s.json"))

    def interrupt(task):
        raise KeyboardInterrupt  # as Ctrl+C after the first finished chunk

    rc = run_on_ray([src], tmp_path / "ray.mp4", s, Log(), on_task_done=interrupt)
    assert rc == 130
    assert not (tmp_path / "ray.mp4").exists()
    work = tmp_path / ".ray.mp4.toonstream-ray"
    manifest = json.loads((work / "manifest.json").read_text())
    (entry,) = manifest["files"].values()
    assert len(entry["chunks"]) == 1
    rc = run_on_ray([src], tmp_path / "ray.mp4", s, Log())
    assert rc == 0
    stats = json.loads((tmp_path / "s.json").read_text())
    assert (stats["tasks_resumed"], stats["tasks_run"]) == (1, 2)
    convert_video(src, tmp_path / "one.mp4", Job(settings(), Log()))
    assert_same_video(look(tmp_path / "one.mp4"), look(tmp_path / "ray.mp4"))
    assert not work.exists()


def test_a_bad_file_fails_alone_and_the_exit_status_counts_it(ray_local, tmp_path, capfd):
    # issue 23.9: the last line was a worker's stats line, with no closing error, and the
    # work folder stayed beside the output for good. Now the lines are those of a run
    # without Ray: the bad file once, named by its path in the folder, and the count last.
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    make_clip(folder / "good.mp4", n=12)
    (folder / "bad.mp4").write_bytes(b"not a video at all" * 10)
    (folder / "sub" / "worse.mp4").write_bytes(b"nor this" * 10)
    make_clip(folder / "fine.mp4", n=12, seed=3)
    rc, log = ray_run(capfd, folder, "-o", tmp_path / "out", "--ray", *COMMON,
                      "--worker-cpus", "1")
    assert rc == 1
    assert "Traceback" not in log
    failed = [line for line in log.splitlines() if line.startswith("failed:")]
    assert failed == ["failed: bad.mp4: not a video file FFmpeg can read (Invalid data found "
                      "when processing input)",
                      "failed: sub/worse.mp4: not a video file FFmpeg can read (Invalid data "
                      "found when processing input)"], log
    assert [line for line in log.splitlines() if line.startswith("error:")] == [
        "error: 2 of 4 files could not be converted (each is listed above as 'failed:')"]
    assert log.rstrip().splitlines()[-1].startswith("error: 2 of 4 files")  # last
    assert "done: 2 of 4 file(s)" in log and "2 failed" in log
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["fine.mp4", "good.mp4",
                                                                    "sub"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "out"]  # no work folder

    # A rerun skips the finished outputs (as without Ray; no "exists; add -y" for them) and
    # reports the bad files again; with -y it converts the good ones again.
    rc, log = ray_run(capfd, folder, "-o", tmp_path / "out", "--ray", *COMMON,
                      "--worker-cpus", "1")
    assert rc == 1 and "add -y" not in log, log
    assert "note: good.mp4: skipped" in log and "note: fine.mp4: skipped" in log
    assert "note: 2 file(s) skipped because their output exists" in log
    assert log.rstrip().splitlines()[-1] == (
        "error: 2 of 4 files could not be converted (each is listed above as 'failed:')")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "out"]


def test_a_single_bad_input_on_ray_ends_with_its_own_error_line(tmp_path, capfd):
    # one input, as without Ray: its own error is the one line (nothing ran: no summary)
    pytest.importorskip("ray")
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all" * 10)
    rc, single = ray_run(capfd, bad, "-o", tmp_path / "o.mp4", *COMMON)
    rc_ray, log = ray_run(capfd, bad, "-o", tmp_path / "o.mp4", "--ray", *COMMON)
    assert rc == rc_ray == 1
    assert log == single and single.startswith("error: bad.mp4: not a video"), log
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.mp4"]

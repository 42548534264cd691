"""Mobile-DCTNet (issue 26): distil a few steps on tiny images, then write, verify, load and
run the student on every engine; style switching and blending without a rebuild; the
errors for a missing student, a damaged file and a blend on the official network."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("torch")

from streamer.models import Store, UnknownModel  # noqa: E402
from streamer.models.cli import main  # noqa: E402
from streamer.models.mobile.graph import build_student_onnx  # noqa: E402
from streamer.models.mobile.net import Arch, init_weights  # noqa: E402
from streamer.models.mobile.store import StudentMissing, students  # noqa: E402
from streamer.models.mobile.student import StudentError, load_student, parse_blend  # noqa: E402
from streamer.toon.engine_api import EngineSettings  # noqa: E402
from streamer.toon.styles import StyleFlows  # noqa: E402
from streamer.train.distill import DistillRequest, run_distill  # noqa: E402

LINKED = ("dctnet/cartoon_3d_bg.pb", "dctnet/cartoon_handdrawn_bg.pb", "face/yunet.onnx")


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, tmp_path):
    monkeypatch.delenv("TOONSTREAM_MODELS", raising=False)
    monkeypatch.setenv("TOONSTREAM_CACHE", str(tmp_path / "user-cache"))


def make_store(root: Path, models_dir: Path) -> Store:
    """A writable store whose official files are links to the shared (read-only) ones."""
    for rel in LINKED:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).symlink_to(models_dir / rel)
    store = Store(root)
    store.notify = lambda line: None
    return store


@pytest.fixture(scope="module")
def distilled(tmp_path_factory, models_dir, media_dir):
    """A student of 3d and handdrawn, distilled 6 steps on two tiny photos, installed."""
    tmp = tmp_path_factory.mktemp("mobile")
    store = make_store(tmp / "store", models_dir)
    photos = tmp / "photos"
    photos.mkdir()
    img = cv2.imread(str(media_dir / "luciano.png"))
    cv2.imwrite(str(photos / "a.png"), cv2.resize(img, (96, 96), interpolation=cv2.INTER_AREA))
    cv2.imwrite(str(photos / "b.png"), cv2.resize(img[:, ::-1], (80, 96)))
    cv2.imwrite(str(photos / "c.png"), cv2.resize(img[::-1], (96, 72)))
    req = DistillRequest(["3d", "handdrawn"], [photos], steps=6, size=32, batch=2,
                         preview_every=3, workdir=tmp / "work", heads=False)
    out = run_distill(store, req, lambda line: None)
    return store, out, tmp


def test_distill_writes_a_verified_student(distilled):
    store, out, tmp = distilled
    assert out.path == store.root / "mobile" / "3d-handdrawn.safetensors"
    s = load_student(out.path)
    assert s.styles == ("3d", "handdrawn") and s.parts == ("bg",) and s.meta["steps"] == "6"
    assert s.arch == Arch() and s.meta["checksum"] == s.checksum()
    assert set(out.result.history) >= {"l1", "perceptual", "total"}
    assert (tmp / "work" / "losses.png").is_file() and out.result.previews
    assert store.records.get("mobile/3d-handdrawn.safetensors")["sha256"]
    assert students(store).holding(["handdrawn"]) == "3d-handdrawn"


def test_resume_continues_from_the_checkpoint(distilled):
    store, out, tmp = distilled
    req = DistillRequest(["3d", "handdrawn"], [tmp / "photos"], steps=8, size=32, batch=2,
                         preview_every=0, workdir=tmp / "work", heads=False, resume=True,
                         install=False)
    again = run_distill(store, req, lambda line: None)
    assert again.result.steps == 8 and len(again.result.history["l1"]) == 8


def test_every_engine_runs_the_student_alike(distilled, media_dir):
    store, _, _ = distilled
    x = cv2.resize(cv2.imread(str(media_dir / "luciano.png")), (96, 64))[None].copy()
    outs = {}
    for device in ("cpu", "openvino", "torch-cpu"):
        flows = StyleFlows(store, EngineSettings(device=device), faces="off", net="mobile")
        outs[device] = flows.engine("3d").run(x).copy()
        assert "light network 3d-handdrawn" in flows.engine("3d").describe()
    for device in ("openvino", "torch-cpu"):
        assert np.abs(outs["cpu"].astype(int) - outs[device]).max() <= 2, device


def _trained_like(store: Store, tmp: Path) -> Path:
    """A student whose styles differ clearly (random modulation), installed as `0mix` (the
    first by name, so it is the one `holding` picks)."""
    from streamer.models.mobile.student import Student, save_student

    arch = Arch()
    w = init_weights(arch, 2, seed=3)
    rng = np.random.default_rng(1)
    for k in w:
        if ".gamma." in k or ".beta." in k:
            w[k] = rng.normal(0, 1.0, w[k].shape).astype(np.float32)
        elif k.endswith(".weight"):
            w[k] *= 0.5  # He-uniform without normalisation saturates the output
    w["out.weight"] *= 0.1
    path = tmp / "0mix.safetensors"
    save_student(path, Student("0mix", arch, ("3d", "handdrawn"), ("bg",), w))
    return students(store).install(path, "0mix", overwrite=True)


def test_switching_and_blending_reuse_one_session(distilled, media_dir):
    store, _, tmp = distilled
    _trained_like(store, tmp)
    x = cv2.resize(cv2.imread(str(media_dir / "luciano.png")), (64, 64))[None].copy()
    flows = StyleFlows(store, EngineSettings(device="cpu"), faces="off", net="mobile")
    a = flows.engine("3d")
    b = flows.engine("handdrawn")
    blend = flows.engine("3d+handdrawn:0.3")
    assert a.session is b.session is blend.session  # no rebuild for a style or a blend
    ya, yb, ym = a.run(x).copy(), b.run(x).copy(), blend.run(x).copy()
    assert np.abs(ya.astype(int) - yb).mean() > 1
    assert 0 < np.abs(ya.astype(int) - ym).mean() < np.abs(ya.astype(int) - yb).mean()
    a.set_style_mix({"handdrawn": 1.0})  # switching in place: a new input value
    assert np.abs(a.run(x).astype(int) - yb).max() == 0
    students(store).path("0mix").unlink()


def test_graph_and_module_agree():
    torch = pytest.importorskip("torch")
    import onnxruntime as ort

    from streamer.train.mobile_net import MobileNet

    arch = Arch((8, 16, 16), 2)
    w = init_weights(arch, 3, seed=1)
    rng = np.random.default_rng(0)
    for k in w:
        if k.endswith("bias") or ".gamma." in k or ".beta." in k:
            w[k] = rng.normal(0, 0.3, w[k].shape).astype(np.float32)
    sess = ort.InferenceSession(build_student_onnx(w, arch, 3).SerializeToString(),
                                providers=["CPUExecutionProvider"])
    x = rng.integers(0, 256, (2, 32, 48, 3), np.uint8)
    net = MobileNet(arch, 3, w)
    for code in (np.eye(3, dtype=np.float32)[1], np.array([0.6, 0.4, 0], np.float32)):
        o = sess.run(None, {"input_image": x, "style_code": code})[0]
        t = net(torch.from_numpy(x), torch.from_numpy(code)).numpy()
        assert np.abs(o.astype(int) - t).max() <= 1


def test_missing_student_names_the_distill_command(tmp_path, models_dir):
    store = make_store(tmp_path / "store", models_dir)
    flows = StyleFlows(store, EngineSettings(device="cpu"), faces="off", net="mobile")
    with pytest.raises(StudentMissing) as err:
        flows.engine("3d")
    msg = str(err.value)
    assert "python -m streamer.models distill 3d --photos PATH" in msg and "\n" not in msg


def test_blend_needs_the_light_network(tmp_path, models_dir):
    store = make_store(tmp_path / "store", models_dir)
    flows = StyleFlows(store, EngineSettings(device="cpu"), faces="off")
    with pytest.raises(UnknownModel, match="--net mobile"):
        flows.engine("3d+handdrawn:0.3")


def test_damaged_student_is_refused(distilled, tmp_path):
    store, out, _ = distilled
    bad = tmp_path / "bad.safetensors"
    data = bytearray(out.path.read_bytes())
    data[-8:] = b"\x7f" * 8  # the last tensor's bytes
    bad.write_bytes(bytes(data))
    with pytest.raises(StudentError, match="checksum"):
        load_student(bad)
    (tmp_path / "foreign.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(StudentError):
        load_student(tmp_path / "foreign.safetensors")


def test_blend_syntax():
    assert parse_blend("anime") == {"anime": 1.0}
    assert parse_blend("anime+3d:0.3") == pytest.approx({"anime": 0.7, "3d": 0.3})
    assert parse_blend("anime+3d") == {"anime": 0.5, "3d": 0.5}
    for bad in ("anime+3d:2", "anime+", "anime+3d:x", "anime+anime"):
        with pytest.raises(StudentError):
            parse_blend(bad)


def test_distill_command_refuses_an_unknown_style(tmp_path, models_dir, capsys):
    make_store(tmp_path / "store", models_dir)
    rc = main(["distill", "nosuch", "--photos", str(tmp_path), "--models",
               str(tmp_path / "store")])
    err = capsys.readouterr().err
    assert rc != 0 and "not an official style" in err and len(err.strip().splitlines()) == 1

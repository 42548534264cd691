"""Personal styles: the trainer (streamer/train) on tiny images, its adapter through the
store's format and the engines, its bad inputs, and Ctrl+C / --resume."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from streamer.models.dctnet.lora import AdapterError, load_adapter, merge, save_adapter
from streamer.models.dctnet.onnx_graph import build_onnx
from streamer.models.dctnet.torch_net import DctNet
from streamer.models.dctnet.weights import load_weights
from streamer.train.data import Crops
from streamer.train.losses import LossWeights
from streamer.train.lora_net import ALL_CONVS, LoraConvs, LoraGenerator, to_images, to_tensor
from streamer.train.personal import PartTask, PersonalSettings, PersonalStyleTask
from streamer.train.trainer import ResumeError, Trainer, TrainingStopped

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def anime(models_dir):
    return load_weights(models_dir / "dctnet" / "cartoon_anime_bg.pb")


@pytest.fixture(scope="module")
def photo(media_dir) -> np.ndarray:
    return cv2.imread(str(media_dir / "luciano.png"))


def _random_lora(seed: int = 1) -> LoraConvs:
    lora = LoraConvs(ALL_CONVS, 4, 4.0, seed=seed)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in lora.b.values():
            p.copy_(torch.randn(p.shape, generator=g) * 0.02)
    return lora


def test_an_untrained_adapter_is_exactly_the_base_style(anime, photo):
    img = cv2.resize(photo, (96, 96))[None]
    g = LoraGenerator(anime, LoraConvs(ALL_CONVS, 8, 8.0))
    with torch.no_grad():
        ours = to_images(g.render(to_tensor(img)))
        official = DctNet(anime)(torch.from_numpy(img)).numpy()
    np.testing.assert_array_equal(ours, official)


def test_the_merged_onnx_model_equals_the_torch_module_with_the_adapter(anime, photo, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from streamer.train.lora_net import to_adapter

    lora = _random_lora()
    img = cv2.resize(photo, (128, 96))[None]
    with torch.no_grad():
        trained = to_images(LoraGenerator(anime, lora).render(to_tensor(img)))
    adapter = to_adapter("mine", "anime", {"bg": lora}, {})
    path = tmp_path / "mine.safetensors"
    save_adapter(path, adapter)
    merged = merge(anime, load_adapter(path), "bg")
    model = tmp_path / "merged.onnx"
    model.write_bytes(build_onnx(merged).SerializeToString())
    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    out = sess.run(None, {"input_image": img})[0][0]
    base = DctNet(anime)(torch.from_numpy(img)).numpy()[0]
    assert np.abs(out.astype(int) - trained[0]).max() <= 1
    assert np.abs(out.astype(int) - base).mean() > 1  # the adapter really changed the style


def test_a_damaged_or_foreign_adapter_file_is_one_line_refused(anime, tmp_path):
    from streamer.train.lora_net import to_adapter

    path = tmp_path / "mine.safetensors"
    save_adapter(path, to_adapter("mine", "anime", {"bg": _random_lora()}, {"steps": "3"}))
    assert load_adapter(path).meta["steps"] == "3"
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF  # a flipped byte in the tensors
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(bytes(data))
    with pytest.raises(AdapterError, match="damaged"):
        load_adapter(bad)
    foreign = tmp_path / "foreign.safetensors"
    foreign.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{}" + b" " * 14)
    with pytest.raises(AdapterError, match="not a Toonstream personal style|not a readable"):
        load_adapter(foreign)
    (tmp_path / "text.safetensors").write_text("hello")
    with pytest.raises(AdapterError):
        load_adapter(tmp_path / "text.safetensors")


def _task(anime, photo, losses: LossWeights, steps_seed: int = 0) -> PersonalStyleTask:
    rng = np.random.default_rng(steps_seed)
    photos = [cv2.resize(photo, (64, 64))]
    # The "style": the same picture, grey and high-contrast.
    grey = cv2.cvtColor(cv2.cvtColor(photos[0], cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    exemplars = [cv2.convertScaleAbs(grey, alpha=1.6, beta=-60)]
    s = PersonalSettings(size=48, batch=1, rank=4, alpha=4.0, lr=5e-3, losses=losses,
                         autocast="off")
    part = PartTask("bg", anime, Crops(photos, 48, rng, aligned=False),
                    Crops(exemplars, 48, rng, aligned=False), [photos[0][:48, :48]], s)
    return PersonalStyleTask("mine", "anime", {"bg": part}, s, 1, 1)


def test_a_few_steps_on_tiny_images_lower_the_losses(anime, photo, tmp_path):
    task = _task(anime, photo, LossWeights(adv=0, cycle=0, perceptual=1, calibration=5,
                                           identity=0))
    result = Trainer(task, 16, tmp_path, preview_every=8, progress=False,
                     log=lambda line: None).run()
    total = result.history["total"]
    assert np.mean(total[-3:]) < 0.7 * np.mean(total[:3])
    assert (tmp_path / "losses.png").is_file() and len(result.previews) == 3
    assert cv2.imread(str(result.previews[-1])).shape[1] == 3 * 160  # input | start | now


def test_every_loss_runs_and_is_reported(anime, photo, tmp_path):
    task = _task(anime, photo, LossWeights(identity=0))
    out = task.step(0)
    assert {"d", "adv", "cycle", "perceptual", "calibration", "total"} <= set(out)
    assert all(np.isfinite(v) for v in out.values())


def test_ctrl_c_writes_a_checkpoint_that_resume_continues(anime, photo, tmp_path):
    task = _task(anime, photo, LossWeights(adv=0, cycle=0, identity=0))
    step = task.step

    def interrupted(i):
        if i == 3:
            raise KeyboardInterrupt
        return step(i)

    task.step = interrupted
    with pytest.raises(TrainingStopped) as stopped:
        Trainer(task, 6, tmp_path, preview_every=0, progress=False, log=lambda line: None).run()
    assert stopped.value.step == 3 and (tmp_path / "checkpoint.pt").is_file()
    saved = task.parts["bg"].lora.b["Conv_9"].detach().clone()

    again = _task(anime, photo, LossWeights(adv=0, cycle=0, identity=0))
    trainer = Trainer(again, 6, tmp_path, preview_every=0, progress=False, log=lambda line: None)
    result = trainer.run(resume=True)
    assert result.steps == 6 and len(result.history["total"]) == 6
    # It started from the saved adapter, not from zero.
    assert not torch.equal(again.parts["bg"].lora.b["Conv_9"], torch.zeros_like(saved))

    other = _task(anime, photo, LossWeights(adv=0, cycle=1, identity=0))
    with pytest.raises(ResumeError, match="other settings"):
        Trainer(other, 6, tmp_path, preview_every=0, progress=False,
                log=lambda line: None).run(resume=True)
    with pytest.raises(ResumeError, match="no checkpoint"):
        Trainer(other, 6, tmp_path / "none", preview_every=0, progress=False,
                log=lambda line: None).run(resume=True)


# --- the command ------------------------------------------------------------------------

def _run_train(*args: str, models: Path, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, TOONSTREAM_MODELS=str(models), PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, str(ROOT / "run_train.py"), *args], cwd=cwd,
                          capture_output=True, text=True, timeout=900, env=env)


@pytest.fixture()
def store_copy(models_dir, tmp_path) -> Path:
    """A writable store whose official files are the test store's (linked, never written)."""
    root = tmp_path / "store"
    root.mkdir()
    for sub in ("dctnet", "face", "seg"):
        if (models_dir / sub).exists():
            (root / sub).symlink_to(models_dir / sub)
    return root


@pytest.fixture()
def exemplars(photo, tmp_path) -> Path:
    d = tmp_path / "exemplars"
    d.mkdir()
    for i in range(6):
        img = cv2.resize(photo, (80 + 8 * i, 80 + 8 * i))
        cv2.imwrite(str(d / f"{i}.png"), cv2.Canny(img, 60, 160) ^ 255)
    (d / "broken.png").write_bytes(b"not a png")
    return d


def _one_error_line(res: subprocess.CompletedProcess) -> str:
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in res.stderr, res.stderr
    return errors[0]


@pytest.mark.parametrize("args,pattern", [
    (["anime", "--from", "anime"], "is an official style"),
    (["My Style", "--from", "anime"], "cannot name a personal style"),
    (["mine", "--from", "picasso"], "unknown style 'picasso'"),
    (["mine", "--from", "anime", "--steps", "0"], "--steps"),
])
def test_bad_names_and_options_are_one_line_errors(args, pattern, store_copy, exemplars,
                                                   media_dir, tmp_path):
    res = _run_train(*args, "--exemplars", str(exemplars), "--photos",
                     str(media_dir / "luciano.png"), models=store_copy, cwd=tmp_path)
    assert res.returncode != 0
    assert pattern in _one_error_line(res)


def test_too_few_exemplars_is_one_line_and_names_the_count(store_copy, media_dir, tmp_path):
    few = tmp_path / "few"
    few.mkdir()
    for i in range(3):
        cv2.imwrite(str(few / f"{i}.png"), np.full((40, 40, 3), 40 * i, np.uint8))
    res = _run_train("mine", "--from", "anime", "--exemplars", str(few), "--photos",
                     str(media_dir / "luciano.png"), models=store_copy, cwd=tmp_path)
    assert res.returncode == 1
    assert "3 readable image(s); at least 5" in _one_error_line(res)


def test_a_short_run_installs_a_style_and_notes_what_it_skipped(store_copy, exemplars,
                                                                media_dir, tmp_path):
    room = tmp_path / "room.png"  # a photo without a face
    cv2.imwrite(str(room), cv2.resize(cv2.imread(str(media_dir / "astronaut.png")), (64, 64)))
    res = _run_train("mine", "--from", "anime", "--exemplars", str(exemplars), "--photos",
                     str(room), "--steps", "2", "--size", "32", "--batch", "1",
                     "--preview-every", "1", models=store_copy, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "skipped exemplar broken.png" in res.stderr
    assert "head adapter skipped: no face" in res.stderr
    adapter = load_adapter(store_copy / "personal" / "mine.safetensors")
    assert adapter.base == "anime" and adapter.meta["steps"] == "2" and not adapter.has_part("h")
    assert (tmp_path / "toonstream-train" / "mine" / "losses.png").is_file()
    again = _run_train("mine", "--from", "anime", "--exemplars", str(exemplars), "--photos",
                       str(room), "--steps", "1", "--size", "32", models=store_copy, cwd=tmp_path)
    assert again.returncode == 1 and "add -y" in _one_error_line(again)


def test_ctrl_c_on_the_command_saves_and_resume_finishes(store_copy, exemplars, media_dir,
                                                         tmp_path):
    env = dict(os.environ, TOONSTREAM_MODELS=str(store_copy), PYTHONPATH=str(ROOT))
    args = [sys.executable, str(ROOT / "run_train.py"), "mine", "--from", "anime",
            "--exemplars", str(exemplars), "--photos", str(media_dir / "luciano.png"),
            "--size", "32", "--batch", "1", "--preview-every", "0", "--parts", "bg"]
    p = subprocess.Popen([*args, "--steps", "100000"], cwd=tmp_path, env=env,
                         stderr=subprocess.PIPE, text=True)
    lines = []
    for line in p.stderr:  # wait until it trains
        lines.append(line)
        if line.startswith("train:"):
            break
    # The "train:" line comes before the first step; an interrupt before any step has
    # nothing to save (seen on a loaded CI machine), so let a few steps run first.
    time.sleep(3)
    p.send_signal(signal.SIGINT)
    _, rest = p.communicate(timeout=120)
    text = "".join(lines) + rest
    assert p.returncode == 130, text
    assert "checkpoint saved" in text and "--resume" in text
    assert not (store_copy / "personal" / "mine.safetensors").exists()
    done = subprocess.run([*args, "--steps", "3", "--resume"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "resuming at step" in done.stderr
    assert int(load_adapter(store_copy / "personal" / "mine.safetensors").meta["steps"]) >= 3


def test_ctrl_c_before_the_first_step_says_there_is_nothing_to_resume(store_copy, exemplars,
                                                                      media_dir, tmp_path,
                                                                      monkeypatch):
    from streamer.models import Store
    from streamer.train import run as train_run
    from streamer.train.personal import PersonalStyleTask

    def interrupted(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(PersonalStyleTask, "choose_precision", interrupted)
    lines: list[str] = []
    req = train_run.TrainRequest(name="mine", base="anime", exemplars=exemplars,
                                 photos=[media_dir / "luciano.png"], steps=2, size=32,
                                 batch=1, parts="bg", workdir=tmp_path / "work")
    with pytest.raises(KeyboardInterrupt):
        train_run.run_training(Store(store_copy), req, lines.append)
    assert lines[-1].startswith("stopped before the first step: nothing was trained")
    assert not (tmp_path / "work" / "checkpoint.pt").exists()

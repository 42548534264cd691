"""The identity loss's face embedder against dlib itself: our reader of dlib's network file
(streamer/models/dlibnet.py) and the PyTorch port (streamer/train/face_embed.py) must give
dlib's own 128-d descriptor for the same chip (cosine >= 0.999) on the shared photos and
clip frames, pass gradients to the chip, place YuNet-aligned chips where dlib's are, and
refuse truncated or foreign files in one line.

Run with -s to see the figures."""
from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")
if importlib.util.find_spec("face_recognition_models") is None:
    pytest.skip("face-recognition-models is not installed (a dev extra: make test)",
                allow_module_level=True)

from streamer.errors import UserError  # noqa: E402
from streamer.models.dlibnet import (Conv, DlibNetError, dlib_model_path,  # noqa: E402
                                     read_dlib_net)
from streamer.train.face_embed import (FaceEmbedder, chip_matrix, chip_tensor,  # noqa: E402
                                       crop_chipper, descriptor_distance, face_chip,
                                       identity_loss, warp_to_chip)

# Stills by name, clip frames as NAME:INDEX (frames dlib's HOG detector finds a face in).
SAMPLES = ("astronaut.png", "luciano.png", "bryan_115px.png",
           "event_640x480.mp4:0", "tears_640x360.mp4:120")
MIN_COSINE = 0.999
# Our YuNet-aligned chip vs dlib's own chip of the same face, as dlib's Euclidean distance;
# dlib calls two faces the same person below 0.6 (different people here: 0.69 and more).
MAX_CHIP_DISTANCE = 0.3


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def read_sample(media_dir: Path, sample: str) -> np.ndarray:
    """BGR uint8 image of a still or of one clip frame."""
    name, _, index = sample.partition(":")
    if not index:
        image = cv2.imread(str(media_dir / name))
        assert image is not None, name
        return image
    cap = cv2.VideoCapture(str(media_dir / name))
    try:
        for _ in range(int(index) + 1):  # read through: seeking is not exact on every build
            ok, frame = cap.read()
            assert ok, sample
    finally:
        cap.release()
    return frame


class DlibReference:
    """dlib's own pipeline: HOG face, 5-point shape, get_face_chip, descriptor."""

    def __init__(self) -> None:
        dlib = pytest.importorskip("dlib")
        models = dlib_model_path().parent
        self.dlib = dlib
        self.detect = dlib.get_frontal_face_detector()
        self.shape = dlib.shape_predictor(str(models / "shape_predictor_5_face_landmarks.dat"))
        self.net = dlib.face_recognition_model_v1(str(dlib_model_path()))

    def chip(self, bgr: np.ndarray) -> np.ndarray:
        rgb = np.ascontiguousarray(bgr[..., ::-1])
        faces = self.detect(rgb, 1)  # upsampled once: bryan_115px's face is small
        assert faces, "dlib found no face"
        face = max(faces, key=lambda r: r.area())
        return self.dlib.get_face_chip(rgb, self.shape(rgb, face), 150, 0.25)

    def descriptor(self, chip_rgb: np.ndarray) -> np.ndarray:
        return np.array(self.net.compute_face_descriptor(np.ascontiguousarray(chip_rgb)))


@pytest.fixture(scope="module")
def net():
    return read_dlib_net(dlib_model_path())


@pytest.fixture(scope="module")
def embedder(net) -> FaceEmbedder:
    return FaceEmbedder(net)


@pytest.fixture(scope="module")
def reference() -> DlibReference:
    return DlibReference()


@pytest.fixture(scope="module")
def chips(reference, media_dir) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """sample -> (BGR image, dlib's chip, dlib's descriptor of it)."""
    out = {}
    for sample in SAMPLES:
        bgr = read_sample(media_dir, sample)
        chip = reference.chip(bgr)
        out[sample] = (bgr, chip, reference.descriptor(chip))
    return out


def test_reader_finds_dlibs_network(net):
    assert len(net.layers) == 130
    convs = [layer for layer in net.layers if isinstance(layer, Conv)]
    assert len(convs) == 29
    assert convs[0].weight.shape == (32, 3, 7, 7) and convs[0].padding == (0, 0)
    assert convs[1].padding == (1, 1)  # 3x3 stride 1 pads k/2
    assert net.descriptor_size == 128
    assert np.allclose(net.input_mean, (122.782, 117.001, 104.298), atol=1e-4)
    assert net.input_scale == 1 / 256
    assert net.distance_threshold == pytest.approx(0.6)
    assert all(np.isfinite(c.weight).all() for c in convs)
    print(f"\ndlib ResNet: {len(net.layers)} layers, {net.parameter_count()} parameters")


@pytest.mark.parametrize("sample", SAMPLES)
def test_descriptor_matches_dlib(embedder, chips, sample):
    _, chip, ref = chips[sample]
    with torch.no_grad():
        ours = embedder(chip_tensor(chip))[0].double().numpy()
    cos = cosine(ours, ref)
    err = float(np.abs(ours - ref).max())
    print(f"\n{sample}: cosine {cos:.12f} (1 - cos {1 - cos:.1e}), max |diff| {err:.1e}, "
          f"|ours| {np.linalg.norm(ours):.4f} |dlib| {np.linalg.norm(ref):.4f}")
    assert cos >= MIN_COSINE
    assert err < 1e-3


def test_batch_equals_single(embedder, chips):
    batch = chip_tensor(np.stack([chips[s][1] for s in SAMPLES]))
    with torch.no_grad():
        out = embedder(batch).numpy()
    for row, sample in zip(out, SAMPLES):
        assert cosine(row.astype(np.float64), chips[sample][2]) >= MIN_COSINE


def test_gradients_reach_the_chip(embedder, chips):
    _, chip, _ = chips["luciano.png"]
    _, other_chip, other = chips["astronaut.png"]
    x = chip_tensor(chip).requires_grad_(True)
    target = torch.from_numpy(other).float()[None]
    loss = identity_loss(embedder(x), target).sum()
    loss.backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert x.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in embedder.parameters())
    # A small step against the gradient moves the descriptor toward the other face.
    step = x.detach() - 2000.0 * x.grad / x.grad.norm()
    with torch.no_grad():
        after = identity_loss(embedder(step), target).sum()
    print(f"\nidentity loss luciano vs astronaut {loss.item():.4f} -> {after.item():.4f} "
          f"after one step; distance {descriptor_distance(embedder(x), target).item():.3f}")
    assert after < loss


def test_gradients_reach_the_image_through_the_chip_warp(embedder, chips, models_dir):
    bgr, _, _ = chips["astronaut.png"]
    points = yunet_points(models_dir, bgr)
    rgb = torch.from_numpy(np.ascontiguousarray(bgr[..., ::-1])).float()
    image = rgb.permute(2, 0, 1)[None].clone().requires_grad_(True)
    chip = warp_to_chip(image, chip_matrix(points)[None])
    identity_loss(embedder(chip), embedder(chip.detach() + 8.0)).sum().backward()
    assert image.grad is not None and torch.isfinite(image.grad).all()
    assert image.grad.abs().sum() > 0


def yunet_points(models_dir: Path, bgr: np.ndarray) -> np.ndarray:
    from streamer.toon.faces.detect import FaceDetector

    model = models_dir / "face" / "yunet.onnx"
    if not model.is_file():
        pytest.skip(f"no face detector at {model}")
    faces = FaceDetector(model, max_side=None).detect(bgr)
    assert len(faces), "YuNet found no face"
    return faces.landmarks[0]


@pytest.mark.parametrize("sample", ["astronaut.png", "luciano.png", "bryan_115px.png"])
def test_face_chip_places_the_face_as_dlib_does(reference, chips, models_dir, sample):
    bgr, dlib_chip, ref = chips[sample]
    points = yunet_points(models_dir, bgr)
    ours = face_chip(bgr, points)
    assert ours.shape == (150, 150, 3) and ours.dtype == np.uint8
    desc = reference.descriptor(ours)
    distance = float(np.linalg.norm(desc - ref))
    print(f"\n{sample}: YuNet chip vs dlib chip: descriptor distance {distance:.3f}, "
          f"cosine {cosine(desc, ref):.4f}")
    assert distance < MAX_CHIP_DISTANCE
    # The differentiable warp makes the same chip (face_chip rounds to uint8).
    rgb = torch.from_numpy(np.ascontiguousarray(bgr[..., ::-1])).float().permute(2, 0, 1)
    warped = warp_to_chip(rgb[None], chip_matrix(points)[None])[0].permute(1, 2, 0).numpy()
    assert np.abs(warped - ours).max() <= 1.0


def test_chip_matrix_maps_points_onto_the_template():
    from streamer.train.face_embed import FACE_TEMPLATE

    template = (0.25 + FACE_TEMPLATE) / 1.5 * 150
    angle, scale, shift = 0.3, 2.5, np.array([40.0, -12.0])
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    image_points = template @ rot.T + shift
    m = chip_matrix(image_points)
    back = image_points @ m[:, :2].T + m[:, 2]
    assert np.allclose(back, template, atol=1e-9)


# ------------------------------------------------------------------------ bad files

def one_line_error(path: Path) -> str:
    with pytest.raises(DlibNetError) as info:
        read_dlib_net(path)
    message = str(info.value)
    assert isinstance(info.value, UserError)
    assert "\n" not in message and str(path) in message
    return message


@pytest.mark.parametrize("keep", [0, 9, 0.5, -1])
def test_truncated_file_is_one_line(tmp_path, keep):
    data = dlib_model_path().read_bytes()
    n = int(len(data) * keep) if isinstance(keep, float) else keep % len(data)
    path = tmp_path / "short.dat"
    path.write_bytes(data[:n])
    message = one_line_error(path)
    print(f"\n{n} bytes: {message}")
    assert "truncated" in message


def test_trailing_bytes_are_refused(tmp_path):
    path = tmp_path / "long.dat"
    path.write_bytes(dlib_model_path().read_bytes() + b"\0")
    assert "after the network's last layer" in one_line_error(path)


@pytest.mark.parametrize("kind", ["text", "shape_predictor", "missing"])
def test_foreign_file_is_one_line(tmp_path, kind):
    path = tmp_path / "other.dat"
    if kind == "text":
        path.write_text("this is not a dlib network\n" * 100)
    elif kind == "shape_predictor":
        # Another dlib file from the same package: dlib's format, the wrong object.
        shutil.copy(dlib_model_path().parent / "shape_predictor_5_face_landmarks.dat", path)
    message = one_line_error(path)
    print(f"\n{kind}: {message}")
    if kind == "missing":
        assert "cannot read" in message
    else:
        assert "not dlib's face recognition ResNet" in message


@pytest.mark.parametrize("sample", ["astronaut.png", "luciano.png"])
def test_crop_chipper_reads_the_trainers_head_crops(reference, chips, models_dir, sample):
    from streamer.toon.faces.align import similarity_transform, warp_crop

    bgr, _, ref = chips[sample]
    m, _ = similarity_transform(yunet_points(models_dir, bgr))
    crop = cv2.resize(warp_crop(bgr, m), (256, 256), interpolation=cv2.INTER_AREA)
    x = torch.from_numpy(crop).permute(2, 0, 1)[None].float() / 127.5 - 1.0  # the trainer's
    x.requires_grad_(True)
    chip = crop_chipper(256)(x)
    assert chip.shape == (1, 3, 150, 150)
    chip.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    ours = np.clip(np.rint(chip[0].detach().permute(1, 2, 0).numpy()), 0, 255).astype(np.uint8)
    distance = float(np.linalg.norm(reference.descriptor(ours) - ref))
    print(f"\n{sample}: head crop chip vs dlib chip: descriptor distance {distance:.3f}")
    assert distance < MAX_CHIP_DISTANCE

"""Where the int8 model's error comes from, and what fine-tuning it would buy: a PyTorch
simulation of the store's int8 model, with its own levels, scales and zero points.

    python -m bench.int8_sim --style handdrawn [--models DIR] [--per-layer] [--finetune 800 --crop 128 --batch 4]

Every int8 convolution of the QDQ model (streamer/models/dctnet/int8.py) becomes, in torch,
a rounding of its input to the u8 grid of its activation quantizer and a convolution with
its int8 weight levels times their scales; the float layers, the guided filter and the
output conversion are the network's own (streamer/models/dctnet/torch_net.py). Rows, as mean
|difference| from TensorFlow's golden output per reference image (uint8 levels):

- OpenVINO running the int8 model, and the simulation of it (they should agree closely);
- the int8 weights alone (activations in float) and the int8 activations alone;
- with --per-layer, the simulation with one layer's activation quantizer taken out;
- with --finetune N, N steps of quantization-aware fine-tuning (straight-through rounding
  of weights and activations, the weight levels, biases and activation scales trained to
  the fp32 model's output on random crops of the store's calibration frames), simulated and
  written back into the QDQ model for OpenVINO to run.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from bench.golden import differences, golden_dir, reference_images
from streamer.models.dctnet.int8 import _conv_params, _layer, equalize_model
from streamer.models.dctnet.torch_net import Generator, guided_filter
from streamer.models.dctnet.weights import LEAKY_ALPHA, DctNetWeights
from streamer.toon.engine import OpenVinoEngine
from streamer.toon.engine_api import EngineSettings


def _round_ste(v: torch.Tensor) -> torch.Tensor:
    """Round forwards, identity backwards (the straight-through estimator)."""
    return v + (torch.round(v) - v).detach()


def read_qdq(model) -> dict[str, dict]:
    """Per convolution ("Conv_4", "block_0/conv1", ...): the bias, and for an int8 one its
    weight levels, per-channel scales and input quantizer (scale, zero point, range)."""
    from onnx import numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    value = lambda name: numpy_helper.to_array(inits[name])  # noqa: E731
    producer = {o: n for n in model.graph.node for o in n.output}
    layers = {}
    for node in model.graph.node:
        if node.op_type != "Conv":
            continue
        info = {"bias": value(node.input[2]).copy(), "bias_name": node.input[2]}
        w_dq = producer.get(node.input[1])
        if w_dq is not None and w_dq.op_type == "DequantizeLinear":
            a_q = producer[producer[node.input[0]].input[0]]  # input Q -> DQ -> Conv
            zero = value(a_q.input[2])
            info.update(levels=value(w_dq.input[0]).astype(np.float32),
                        w_scale=value(w_dq.input[1]).astype(np.float32),
                        levels_name=w_dq.input[0], a_scale=float(value(a_q.input[1])),
                        a_zero=int(zero), a_range=(0, 255) if zero.dtype == np.uint8 else (-128, 127),
                        a_scale_names=(a_q.input[1], producer[node.input[0]].input[1]))
        layers[_layer(node.name).removeprefix("generator/")] = info
    return layers


class SimulatedInt8(Generator):
    """The generator with the int8 layers of `layers` (read_qdq) simulated; `float_weights`
    are the equalised float weights the int8 levels were rounded from."""

    def __init__(self, float_weights: DctNetWeights, layers: dict[str, dict], weight_max: int):
        super().__init__(float_weights)
        self.layers = layers
        self.weight_max = weight_max
        self.quant_weights = self.quant_inputs = True
        self.float_inputs: set[str] = set()  # layers whose activation quantizer is taken out
        self.levels = torch.nn.ParameterDict()
        self.log_a_scales = torch.nn.ParameterDict()
        self.w_scales: dict[str, torch.Tensor] = {}
        for name, info in layers.items():
            key = name.replace("/", "_")
            self.convs[key].bias.data = torch.from_numpy(info["bias"].copy())
            if "levels" in info:
                self.levels[key] = torch.nn.Parameter(torch.from_numpy(info["levels"].copy()))
                self.log_a_scales[key] = torch.nn.Parameter(torch.tensor(np.log(info["a_scale"])))
                self.w_scales[key] = torch.from_numpy(info["w_scale"].copy())[:, None, None, None]

    def _c(self, name: str, x: torch.Tensor, act: bool = True) -> torch.Tensor:
        key = name.replace("/", "_")
        conv = self.convs[key]
        weight = conv.weight
        if key in self.levels:
            info = self.layers[name]
            if self.quant_inputs and name not in self.float_inputs:
                s, z = torch.exp(self.log_a_scales[key]), info["a_zero"]
                x = (torch.clamp(_round_ste(x / s) + z, *info["a_range"]) - z) * s
            if self.quant_weights:
                q = torch.clamp(_round_ste(self.levels[key]), -self.weight_max, self.weight_max)
                weight = q * self.w_scales[key]
        y = conv.conv(x, weight)
        return F.leaky_relu(y, LEAKY_ALPHA) if act else y

    def write_back(self, model) -> None:
        """The trained levels, biases and activation scales into the QDQ `model`."""
        from onnx import numpy_helper

        inits = {i.name: i for i in model.graph.initializer}

        def put(name: str, value: np.ndarray) -> None:
            old = numpy_helper.to_array(inits[name])
            inits[name].CopyFrom(numpy_helper.from_array(value.astype(old.dtype).reshape(old.shape), name))

        with torch.no_grad():
            for name, info in self.layers.items():
                key = name.replace("/", "_")
                put(info["bias_name"], self.convs[key].bias.numpy())
                if key in self.levels:
                    q = torch.clamp(torch.round(self.levels[key]), -self.weight_max, self.weight_max)
                    put(info["levels_name"], q.numpy())
                    for scale_name in info["a_scale_names"]:
                        put(scale_name, np.array(float(torch.exp(self.log_a_scales[key]))))


def full(generator: Generator, images: torch.Tensor) -> torch.Tensor:
    """uint8 BGR NHWC -> the network's output in levels, before the final truncation."""
    x = images.permute(0, 3, 1, 2).float() / 127.5 - 1.0
    y = torch.clamp(guided_filter(x, generator(x)), -0.999999, 0.999999)
    return (y + 1.0) * 127.5


def parity(run, golden: Path, style: str) -> list[float]:
    return [float(d.mean()) for d in differences(run, golden, style).values()]


def finetune(sim: SimulatedInt8, reference: Generator, frames: list[np.ndarray], steps: int,
             crop: int = 96, batch: int = 8, log=print) -> None:
    frames = [f for f in frames if min(f.shape[:2]) >= crop]
    if not frames:
        raise SystemExit(f"--finetune needs calibration frames of at least {crop} px a side")
    levels = list(sim.levels.values())
    biases = [c.bias for c in sim.convs.values()]
    for p in biases:
        p.requires_grad_(True)
    opt = torch.optim.Adam([{"params": levels, "lr": 0.01}, {"params": biases, "lr": 1e-4},
                            {"params": list(sim.log_a_scales.values()), "lr": 1e-3}])
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    for step in range(steps):
        crops = []
        for i in rng.integers(0, len(frames), batch):
            h, w = frames[i].shape[:2]
            y = rng.integers(0, (h - crop) // 4 + 1) * 4
            x = rng.integers(0, (w - crop) // 4 + 1) * 4
            crops.append(frames[i][y:y + crop, x:x + crop])
        b = np.stack(crops)
        if rng.random() < 0.5:
            b = b[:, :, ::-1]
        b = torch.from_numpy(np.ascontiguousarray(b))
        with torch.no_grad():
            target = full(reference, b)
        loss = F.mse_loss(full(sim, b), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        schedule.step()
        if step % 100 == 0 or step == steps - 1:
            log(f"  step {step}: loss {loss.item():.2f}, {time.perf_counter() - t0:.0f} s")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=os.environ.get("TOONSTREAM_MODELS"))
    ap.add_argument("--style", default="handdrawn")
    ap.add_argument("--golden", default=None, help="default: the store's ../golden/dctnet")
    ap.add_argument("--per-layer", action="store_true",
                    help="also one row per layer with its activation quantizer taken out")
    ap.add_argument("--finetune", type=int, default=0, metavar="STEPS")
    ap.add_argument("--crop", type=int, default=96, help="fine-tuning crop side (96)")
    ap.add_argument("--batch", type=int, default=8, help="fine-tuning crops per step (8)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()
    if not args.models:
        ap.error("give --models DIR or set TOONSTREAM_MODELS")
    import onnx

    from streamer.models.store import Store

    torch.set_num_threads(args.threads)
    store = Store(Path(args.models))
    golden = Path(args.golden) if args.golden else golden_dir(args.models)
    if not reference_images(golden):
        ap.error(f"no reference images in {golden}: give --golden DIR")
    int8_path = store.onnx_model_path(args.style, "bg", "int8")
    frames = store.calibration_frames()
    float_model = onnx.load(str(store.onnx_model_path(args.style, "bg", "fp32")))
    equalize_model(float_model, frames)  # the float network the int8 levels came from
    _, kernels, biases = _conv_params(float_model)
    weights = DctNetWeights({k: v.transpose(2, 3, 1, 0).copy() for k, v in kernels.items()},
                            biases, "onnx")
    qdq = onnx.load(str(int8_path))
    weight_max = json.loads(int8_path.with_suffix(".json").read_text())["weight_levels"]
    sim = SimulatedInt8(weights, read_qdq(qdq), weight_max).eval()
    reference = Generator(weights).eval()

    def simulated(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return torch.floor(full(sim, torch.from_numpy(x[None])))[0].permute(1, 2, 0).numpy()

    def openvino(path: Path):
        engine = OpenVinoEngine(lambda p: path, EngineSettings(device="openvino", precision="int8",
                                                                threads=args.threads))
        return lambda x: engine.run(np.ascontiguousarray(x[None]))[0]

    def row(label: str, diffs: list[float]) -> None:
        print(f"{label:<44} " + " ".join(f"{d:9.2f}" for d in diffs) + f" {max(diffs):6.2f}",
              flush=True)

    print(f"{args.style}: mean |diff| against TensorFlow (uint8 levels), {int8_path.name}")
    print(f"{'':<44} " + " ".join(f"{p.stem:>9}" for p in reference_images(golden)) + f" {'max':>6}")
    row("OpenVINO int8", parity(openvino(int8_path), golden, args.style))
    row("simulated int8", parity(simulated, golden, args.style))
    sim.quant_inputs = False
    row("simulated: int8 weights, float activations", parity(simulated, golden, args.style))
    sim.quant_inputs, sim.quant_weights = True, False
    row("simulated: float weights, int8 activations", parity(simulated, golden, args.style))
    sim.quant_weights = True
    if args.per_layer:
        for name in sim.layers:
            if name.replace("/", "_") in sim.levels:
                sim.float_inputs = {name}
                row(f"simulated, float input to {name}", parity(simulated, golden, args.style))
        sim.float_inputs = set()
    if args.finetune:
        print(f"fine-tuning {args.finetune} steps on {len(frames)} calibration frames ...")
        finetune(sim, reference, frames, args.finetune, args.crop, args.batch)
        row(f"simulated, fine-tuned {args.finetune} steps", parity(simulated, golden, args.style))
        sim.write_back(qdq)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "tuned.onnx"
            onnx.save(qdq, str(path))
            row(f"OpenVINO, fine-tuned {args.finetune} steps", parity(openvino(path), golden, args.style))
    return 0


if __name__ == "__main__":
    sys.exit(main())

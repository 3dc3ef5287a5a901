"""Training speed: the torch path `emotiontrack train` uses against Keras' own training step.

    python benchmarks/train_speed.py [--steps 8] [--rounds 2]   # writes reports/training/speed.md and .json

For each network (vgg-s is the architecture of the model shipped until 0.1, vgg-l today's default) and each
way of training it, times optimisation steps on batches of 128 random 48x48 faces: Keras 3 on its torch
backend (`model.train_on_batch`, Adam, what `train` did before), and plain torch modules (`network.
TrainingNet`, SGD + Nesterov) in float32 NCHW, float32 channels-last, and bf16 autocast channels-last (what
`train` does now). Rounds alternate between the ways, so a neighbour slowing the shared machine slows them
all; the median step of each way is reported, with seconds per FER2013 epoch (28,709 images).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from reporting import write_report

from emotiontrack.model.network import TrainingNet
from emotiontrack.model.settings import ARCHITECTURES

ROOT = Path(__file__).resolve().parents[1]
BATCH = 128
EPOCH_IMAGES = 28709


def torch_steps(name: str, bf16: bool, channels_last: bool, steps: int, x: np.ndarray, y: np.ndarray) -> list[float]:
    net = TrainingNet(ARCHITECTURES[name], 7)
    faces = torch.from_numpy(x)[:, None]
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
        faces = faces.contiguous(memory_format=torch.channels_last)
    labels = torch.from_numpy(y)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    times = []
    for _ in range(steps + 1):  # the first step allocates: not timed
        started = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = net(faces)
        loss = torch.nn.functional.cross_entropy(logits.float(), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - started)
    return times[1:]


def keras_steps(name: str, steps: int, x: np.ndarray, y: np.ndarray) -> list[float]:
    from emotiontrack.model.keras_model import build_network, keras

    network = build_network(7, ARCHITECTURES[name])
    network.compile(optimizer=keras.optimizers.Adam(1e-3),
                    loss=keras.losses.CategoricalCrossentropy(from_logits=True))
    onehot = np.eye(7, dtype=np.float32)[y]
    times = []
    for _ in range(steps + 1):
        started = time.perf_counter()
        network.train_on_batch(x[..., None], onehot)
        times.append(time.perf_counter() - started)
    return times[1:]


WAYS = {
    "keras (torch backend)": lambda name, steps, x, y: keras_steps(name, steps, x, y),
    "torch fp32 NCHW": lambda name, steps, x, y: torch_steps(name, False, False, steps, x, y),
    "torch fp32 channels-last": lambda name, steps, x, y: torch_steps(name, False, True, steps, x, y),
    "torch bf16 channels-last": lambda name, steps, x, y: torch_steps(name, True, True, steps, x, y),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=8, help="timed steps per way and round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--nets", nargs="+", default=["vgg-s", "vgg-l"], choices=sorted(ARCHITECTURES))
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "training" / "speed.md")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (BATCH, 48, 48)).astype(np.float32)
    y = rng.integers(0, 7, BATCH)
    times: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.rounds):
        for name in args.nets:
            for way, run in WAYS.items():
                times.setdefault((name, way), []).extend(run(name, args.steps, x, y))
                print(name, way, f"{statistics.median(times[name, way]):.3f} s/step", flush=True)
    flags = Path("/proc/cpuinfo").read_text().split("flags")[1].split("\n")[0].split() if Path("/proc/cpuinfo").exists() else []
    bf16_units = [f for f in flags if f in ("amx_bf16", "avx512_bf16")]
    command = "python benchmarks/train_speed.py " + " ".join(sys.argv[1:])
    lines = ["# Training speed", "", f"Command: `{command.strip()}`", "",
             f"Machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
             f"bf16 instructions: {', '.join(bf16_units) or 'none'}; torch {torch.__version__}. Batch {BATCH} of "
             f"48x48; median of {args.rounds} alternating rounds of {args.steps} steps.", "",
             "| network | way | s / step | steps / s | s / FER2013 epoch | vs Keras |", "| --- | --- | --- | --- | --- | --- |"]
    rows = []
    for name in args.nets:
        keras_median = statistics.median(times[name, "keras (torch backend)"])
        for way in WAYS:
            median = statistics.median(times[name, way])
            epoch = median * np.ceil(EPOCH_IMAGES / BATCH)
            rows.append({"network": name, "way": way, "step_s": median, "epoch_s": epoch})
            lines.append(f"| {name} | {way} | {median:.3f} | {1 / median:.2f} | {epoch:.0f} | {keras_median / median:.2f}x |")
    write_report(args.out, lines, {"command": command, "rows": rows})


if __name__ == "__main__":
    main()

"""Small timings behind numbers in README.md's performance section.

    python benchmarks/micro.py draw                    # FaceAnnotator.annotate_i420, 720p frame, four faces
    python benchmarks/micro.py charts RESULT_DIR       # timeline and shares charts of one analysed video
    python benchmarks/micro.py threads -- analyze CLIP -o OUT --overwrite   # CPU seconds per thread of one run
    python benchmarks/micro.py startup                 # analyze's imports and model loading, step by step
    python benchmarks/micro.py shapes [MODEL]          # memory and time of batches of 1-40 faces, padded or not

`draw` reports the best of 7 rounds of 100 calls with the same four labels (so the label caches hit, as
they mostly do across a video's frames). `threads` runs the CLI in this process and reports each thread's
CPU time (`time.thread_time()`), the ffmpeg children's (`getrusage`) and the wall time. `startup` runs three
fresh interpreters that import what `analyze` imports, in its order and with the garbage collector off as
it has it, then load the models, timing each step.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path


def time_drawing() -> None:
    import cv2
    import numpy as np

    from emotiontrack.outputs.draw import FaceAnnotator, FaceBox

    rng = np.random.default_rng(5)
    rgb = cv2.GaussianBlur(rng.integers(0, 255, (720, 1280, 3), dtype=np.uint8), (15, 15), 5)
    planes = cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420)
    out = np.empty_like(planes)
    boxes = [FaceBox(i, np.array(xyxy, np.float64), rng.dirichlet(np.ones(7)).astype(np.float32))
             for i, xyxy in enumerate([(100, 100, 300, 330), (400, 120, 600, 350), (700, 300, 900, 520), (1000, 200, 1180, 420)])]
    annotator, best = FaceAnnotator(), float("inf")
    for _ in range(7):
        started = time.perf_counter()
        for _ in range(100):
            annotator.annotate_i420(planes, 1280, 720, boxes, out)
        best = min(best, (time.perf_counter() - started) / 100)
    print(f"annotate_i420, 720p, four faces: {best * 1e3:.3f} ms a frame (best of 7x100)")


def time_charts(result: Path) -> None:
    import tempfile

    import pandas as pd

    from emotiontrack.outputs.charts import plot_shares, plot_timelines

    timeline, faces = pd.read_parquet(result / "timeline.parquet"), pd.read_parquet(result / "faces.parquet")
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(2):
            started = time.perf_counter()
            plot_timelines(timeline, faces, result.name, Path(tmp) / "timeline.png")
            middle = time.perf_counter()
            plot_shares(faces, result.name, Path(tmp) / "shares.png")
            print(f"timeline chart {middle - started:.2f} s, shares chart {time.perf_counter() - middle:.2f} s")


def time_threads(cli_args: list[str]) -> None:
    cpu: dict[str, float] = {}
    run = threading.Thread.run

    def timed_run(self):  # each thread's CPU seconds, taken as it ends
        try:
            run(self)
        finally:
            name = self.name.split(" (")[-1].rstrip(")") if "(" in self.name else self.name.rstrip("0123456789_-")
            cpu[name] = cpu.get(name, 0.0) + time.thread_time()

    threading.Thread.run = timed_run
    from emotiontrack import cli

    started = time.perf_counter()
    cli.main(cli_args)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(f"wall {time.perf_counter() - started:.2f} s; main thread {time.thread_time():.2f} CPU-s; "
          f"ffmpeg processes {children.ru_utime + children.ru_stime:.2f} CPU-s", file=sys.stderr)
    for name, seconds in sorted(cpu.items(), key=lambda item: -item[1]):
        print(f"  thread {name}: {seconds:.2f} CPU-s", file=sys.stderr)


STARTUP_STEPS = """
import gc, sys, time
gc.disable()
steps, last = [], time.perf_counter()
def step(name):
    global last
    now = time.perf_counter()
    steps.append(f"{name} {now - last:.2f}")
    last = now
import torch; step("torch")
import emotiontrack.stages.detect; step("detect (facenet-pytorch, torchvision)")
import emotiontrack.pipeline; step("pipeline (scipy.optimize, pandas, pyarrow)")
import emotiontrack.batch; step("batch (matplotlib)")
from emotiontrack.config import AnalyzeConfig
from emotiontrack.pipeline import load_models
load_models(AnalyzeConfig()); step("load_models")
print(", ".join(steps), "s; torch._dynamo imported:", "torch._dynamo" in sys.modules)
"""


def time_startup(rounds: int = 3) -> None:
    for _ in range(rounds):
        subprocess.run([sys.executable, "-c", STARTUP_STEPS], check=True)


def time_classify(models: list[Path], rounds: int = 3, precisions: tuple[str, ...] = ("fp32", "bf16", "int8")) -> None:
    """Milliseconds a face of EmotionModel.predict on one thread, in each precision (int8 where the model has
    its calibration; bf16 is emulated, ~10x slower, on CPUs without it), batches of 16 and 64,
    in alternating rounds (mirror averaging included where the model has it)."""
    import numpy as np
    import torch

    from emotiontrack.model.predictor import EmotionModel

    torch.set_num_threads(1)
    crops = np.random.default_rng(0).integers(0, 255, (64, 48, 48), dtype=np.uint8)
    from emotiontrack.model.int8 import file_sha256, load_calibration

    classifiers = {(str(m), p): EmotionModel.load(m, precision=p) for m in models for p in precisions
                   if p != "int8" or load_calibration(m, file_sha256(m)) is not None}
    for _ in range(rounds):
        for (name, precision), classifier in classifiers.items():
            for batch in (16, 64):
                classifier.predict(crops[:batch])
                started = time.perf_counter()
                for _ in range(3):
                    classifier.predict(crops[:batch])
                ms = (time.perf_counter() - started) / 3 / batch * 1000
                print(f"{name} {precision} batch {batch}: {ms:.2f} ms a face", flush=True)


SHAPES_SCRIPT = """
import resource, sys, time
import numpy as np, torch
from emotiontrack.model.predictor import EmotionModel
torch.set_num_threads(1)
model = EmotionModel.load(sys.argv[1], precision="fp32")
crops = np.random.default_rng(0).integers(0, 255, (40, 48, 48), dtype=np.uint8)
started = time.perf_counter()
for n in range(1, 41):
    if sys.argv[2] == "padded":
        model.predict(crops[:n])
    else:
        with torch.inference_mode():
            model.net(torch.from_numpy(crops[:n])[:, None].float().contiguous(memory_format=torch.channels_last))
print(sys.argv[2], f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024} MiB,",
      f"{time.perf_counter() - started:.1f} s for 820 faces in batches of 1-40")
"""


def time_shapes(model: Path) -> None:
    """Batches of every size from 1 to 40 faces, float32, one thread, each way in a fresh interpreter: as
    EmotionModel.predict pads them (few shapes) and straight through the network (40 shapes)."""
    for way in ("as-is", "padded"):
        subprocess.run([sys.executable, "-c", SHAPES_SCRIPT, str(model), way], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    sub.add_parser("draw", help="time FaceAnnotator.annotate_i420")
    charts = sub.add_parser("charts", help="time the charts of one result folder")
    charts.add_argument("result", type=Path, help="a folder written by `emotiontrack analyze` (timeline.parquet, faces.parquet)")
    threads = sub.add_parser("threads", help="CPU seconds per thread of one CLI run")
    threads.add_argument("cli_args", nargs=argparse.REMAINDER, help="arguments for `emotiontrack`, after --")
    sub.add_parser("startup", help="time analyze's imports and model loading in fresh interpreters")
    classify = sub.add_parser("classify", help="ms a face of the emotion model on one thread, float32, bf16 and int8")
    classify.add_argument("models", type=Path, nargs="+", help="model files (.keras)")
    shapes = sub.add_parser("shapes", help="memory and time of batches of every size, padded or not")
    shapes.add_argument("model", type=Path, nargs="?", default=Path(__file__).resolve().parents[1] / "models" / "emotiontrack.keras")
    args = parser.parse_args()
    if args.what == "shapes":
        time_shapes(args.model)
    elif args.what == "draw":
        time_drawing()
    elif args.what == "charts":
        time_charts(args.result)
    elif args.what == "startup":
        time_startup()
    elif args.what == "classify":
        time_classify(args.models)
    else:
        time_threads(args.cli_args[1:] if args.cli_args[:1] == ["--"] else args.cli_args)


if __name__ == "__main__":
    main()

"""Speed and memory of `emotiontrack analyze` at default settings, on clips this script builds.

    python benchmarks/run.py                 # 60 s clips (720p25 x 4 faces, 1080p30 x 2 faces) + 10- and 20-min 720p
    python benchmarks/run.py --quick         # 20 s clips, no long clips
    python benchmarks/run.py --only 720p     # clips whose name contains '720p'

For each clip it measures, each in a fresh process: the decode-only floor (every frame decoded by the same
reader, as I420 as the annotated video takes them, and dropped), the full `emotiontrack analyze` (annotated
video included) and `--no-video`. Reported: wall time, real-time factor (video seconds per wall second),
wall over the decode floor, seconds per stage and peak RSS. The long clips (the 60 s 720p clip looped by
ffmpeg, stream copy) are run with the video only, to show that peak RSS does not grow with length. Results
go to reports/benchmarks.md (and .json) with the command and the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FER_ZIP = ROOT.parent / "shared" / "datasets" / "fer2013.zip"


def build_clip(path: Path, kind: str, duration_s: float) -> Path:
    """720p25 with four FER2013 faces (astronaut faces without ../shared), or 1080p30 with two faces."""
    from emotiontrack.synthetic import Sprite, astronaut_face, fer_composite, linear_path, write_clip

    if path.exists():
        return path
    if kind == "720p25-4faces":
        if FER_ZIP.is_file():
            from emotiontrack.model.dataset import load_train_val

            sprites, _ = fer_composite(load_train_val(FER_ZIP)[1], duration_s=duration_s, seed=7)
        else:
            faces = [astronaut_face(s, mirrored=bool(i % 2)) for i, s in enumerate((200, 180, 220, 190))]
            starts = [(40, 40), (1040, 60), (80, 450), (1030, 470)]
            sprites = [Sprite(lambda t, f=f: f, linear_path(a, (a[0] + (300 if a[0] < 640 else -300), a[1] + 60), duration_s))
                       for f, a in zip(faces, starts)]
        write_clip(path, sprites, size=(1280, 720), fps=25, duration_s=duration_s, audio=True)
    else:
        a, b = astronaut_face(300), astronaut_face(260, mirrored=True)
        sprites = [Sprite(lambda t: a, linear_path((100, 100), (700, 300), duration_s)),
                   Sprite(lambda t: b, linear_path((1500, 600), (1000, 400), duration_s))]
        write_clip(path, sprites, size=(1920, 1080), fps=30, duration_s=duration_s, audio=True)
    return path


def loop_clip(path: Path, source: Path, times: int) -> Path:
    """`source` played `times` times over, without re-encoding (its faces and audio repeat)."""
    from emotiontrack.media.tools import ffmpeg_path

    if not path.exists():
        subprocess.run([ffmpeg_path(), "-v", "error", "-y", "-stream_loop", str(times - 1), "-i", str(source),
                        "-c", "copy", str(path)], check=True)
    return path


def measure(args: list[str]) -> dict:
    """Run a command; wall seconds and the peak RSS (MiB) of that process (its ffmpeg children excluded)."""
    started = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    stdout, stderr = proc.stdout.read().decode(), proc.stderr.read().decode()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{stderr[-3000:]}")
    return {"wall_s": wall, "peak_rss_mib": usage.ru_maxrss / 1024, "stdout": stdout}


DECODE_ONLY = """
import sys, time
from emotiontrack.media.decode import VideoReader
from emotiontrack.media.probe import probe
started = time.perf_counter()
with VideoReader(probe(sys.argv[1])) as reader:
    n = sum(1 for _ in reader)
print(n, time.perf_counter() - started)
"""


def bench_clip(clip: Path, duration_s: float, work: Path, model: Path | None = None, modes=("video", "no_video")) -> dict:
    row = {"clip": clip.name, "video_s": duration_s}
    decode = measure([sys.executable, "-c", DECODE_ONLY, str(clip)])
    frames, decode_s = decode["stdout"].split()
    row.update(frames=int(frames), decode_s=float(decode_s), decode_rss_mib=decode["peak_rss_mib"])
    for mode in modes:
        extra = ["--no-video"] if mode == "no_video" else []
        out = work / mode
        if model is not None:
            extra = [*extra, "--model", str(model)]
        run = measure([sys.executable, "-m", "emotiontrack.cli", "analyze", str(clip), "-o", str(out), "--overwrite", *extra])
        manifest = json.loads((out / clip.stem / "manifest.json").read_text())
        row[mode] = {"wall_s": run["wall_s"], "rtf": duration_s / run["wall_s"], "over_decode": run["wall_s"] / float(decode_s),
                     "peak_rss_mib": run["peak_rss_mib"], "stages_s": manifest.get("stage_seconds", {}),
                     "pipeline_s": manifest.get("wall_s")}
    return row


def gpu_name() -> str:
    """The card `--device auto` runs on, named in the report (the runs themselves are subprocesses)."""
    import torch

    return f"GPU: {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "no GPU"


def render_markdown(rows: list[dict], command: str, machine: str) -> str:
    from emotiontrack.config import AnalyzeConfig

    defaults = AnalyzeConfig()
    lines = ["# Benchmarks", "", f"Command: `{command}`", "", f"Machine: {machine}", "",
             f"Default settings (`--fps {defaults.sample_fps:g}`, `--min-face {defaults.min_face:g}`, `--detect-every {defaults.detect_every_s:g}`). "
             "RTF = seconds of video per wall second (higher is faster);",
             "wall is the whole `emotiontrack analyze` command (start-up and model loading included); the decode floor",
             "is every frame decoded by the same reader (I420, as the annotated video takes them) and dropped. Stage seconds are inside the pipeline",
             "(decode = waiting for frames; detect includes following faces; classify and annotate = handing frames to",
             "the drawing thread and finishing the encoder run on a worker thread beside detection, so stages overlap).", "",
             "| clip | video s | decode floor s | mode | wall s | RTF | wall / floor | peak RSS MiB | decode | detect | track | classify | annotate | write |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        for mode in ("video", "no_video"):
            if mode not in r:
                continue
            m = r[mode]
            st = m["stages_s"]
            stages = " | ".join(f"{st.get(k, 0):.1f}" for k in ("decode", "detect", "track", "classify", "annotate", "write"))
            lines.append(f"| {r['clip']} | {r['video_s']:.0f} | {r['decode_s']:.1f} | {mode.replace('_', '-')} | {m['wall_s']:.1f} | "
                         f"{m['rtf']:.2f} | {m['over_decode']:.1f} | {m['peak_rss_mib']:.0f} | {stages} |")
    lines += memory_lines(rows)
    return "\n".join(lines) + "\n"


def memory_lines(rows: list[dict]) -> list[str]:
    """Peak RSS of the 720p clips of each length, with the video, against the shortest one."""
    same = sorted((r for r in rows if r["clip"].startswith("720p25") and "video" in r), key=lambda r: r["video_s"])
    if len(same) < 2:
        return []
    base = same[0]["video"]["peak_rss_mib"]
    lines = ["", "Peak RSS against video length (720p25, four faces, annotated video on):", "",
             "| video s | peak RSS MiB | vs the shortest |", "| --- | --- | --- |"]
    for r in same:
        rss = r["video"]["peak_rss_mib"]
        lines.append(f"| {r['video_s']:.0f} | {rss:.0f} | {100 * (rss / base - 1):+.1f}% |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="20 s clips and no long clips")
    parser.add_argument("--only", help="run only clips whose name contains this")
    parser.add_argument("--clips", type=Path, default=Path(tempfile.gettempdir()) / "emotiontrack-bench", help="where clips are built (kept for re-runs)")
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "benchmarks.md")
    parser.add_argument("--model", type=Path, help="model file (default: the shipped one)")
    args = parser.parse_args()
    args.clips.mkdir(parents=True, exist_ok=True)
    short = 20.0 if args.quick else 60.0
    plan = [("720p25-4faces", short, 1), ("1080p30-2faces", short, 1)]
    if not args.quick:
        plan += [("720p25-4faces", short, 10), ("720p25-4faces", short, 20)]
    rows = []
    for kind, duration, loops in plan:
        name = f"{kind}-{duration * loops:.0f}s"
        if args.only and args.only not in name:
            continue
        clip = build_clip(args.clips / f"{kind}-{duration:.0f}s.mp4", kind, duration)
        if loops > 1:
            clip = loop_clip(args.clips / f"{name}.mp4", clip, loops)
        with tempfile.TemporaryDirectory() as work:
            modes = ("video",) if loops > 1 else ("video", "no_video")
            rows.append(bench_clip(clip, duration * loops, Path(work), args.model, modes))
        print(json.dumps(rows[-1]), flush=True)
    command = "python benchmarks/run.py " + " ".join(sys.argv[1:])
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, {gpu_name()}"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(render_markdown(rows, command.strip(), machine))
    args.out.with_suffix(".json").write_text(json.dumps({"command": command, "machine": machine, "rows": rows}, indent=2))
    print(args.out.read_text())


if __name__ == "__main__":
    main()

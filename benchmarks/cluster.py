"""Throughput of `analyze --engine ray` against the local engine, and segment mode on a long clip.

    python benchmarks/cluster.py               # 4 x 30 s clips; a 10-minute clip (a 60 s clip looped)
    python benchmarks/cluster.py --quick       # 4 x 10 s clips; a 2-minute clip

Batch: the same four clips (640x360, two astronaut faces each, annotated videos on) analysed with `--jobs 1`,
`--jobs 2`, `--engine ray --workers 1` and `--workers 2` (a local Ray started by the command, so its start-up
is in the time), in alternating rounds, each run in a fresh process with `--overwrite`. Segment mode: the
long clip with `--no-video` in one local pass against `--engine ray --workers 2 --segment-s S`; the
stitched timeline is compared with the single pass (face ids, rows matched by frame and box, same emotion).
The floor beside them: decoding every clip once (`VideoReader`). Results go to reports/cluster.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
from pathlib import Path

import pandas as pd
from run import DECODE_ONLY, loop_clip, measure

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {"local --jobs 1": ["--jobs", "1"], "local --jobs 2": ["--jobs", "2"],
           "ray --workers 1": ["--engine", "ray", "--workers", "1"], "ray --workers 2": ["--engine", "ray", "--workers", "2"]}


def build_batch(work: Path, count: int, duration_s: float) -> list[Path]:
    from emotiontrack.synthetic import Sprite, astronaut_face, linear_path, write_clip

    clips = []
    for k in range(count):
        path = work / f"clip{k}.mp4"
        a, b = astronaut_face(150 + 10 * k), astronaut_face(130, mirrored=True)
        sprites = [Sprite(lambda t, a=a: a, linear_path((10 + 20 * k, 20), (400, 60), duration_s)),
                   Sprite(lambda t, b=b: b, linear_path((470, 190), (120, 180 - 10 * k), duration_s))]
        write_clip(path, sprites, size=(640, 360), fps=25, duration_s=duration_s, audio=True)
        clips.append(path)
    return clips


def analyze(args: list) -> float:
    return measure([sys.executable, "-m", "emotiontrack.cli", "analyze", *map(str, args), "--overwrite"])["wall_s"]


def decode_floor(clips: list[Path]) -> float:
    return sum(float(measure([sys.executable, "-c", DECODE_ONLY, str(c)])["stdout"].split()[1]) for c in clips)


def compare(single: Path, stitched: Path) -> dict:
    a, b = pd.read_parquet(single), pd.read_parquet(stitched)
    matched = a.merge(b, on="frame", suffixes=("_a", "_b"))
    matched = matched[(matched.x1_a - matched.x1_b).abs() + (matched.y1_a - matched.y1_b).abs() < 20]
    return {"ids_single": a.face_id.nunique(), "ids_stitched": b.face_id.nunique(), "rows_single": len(a),
            "rows_stitched": len(b), "rows_matched": len(matched),
            "same_emotion": float((matched.emotion_a == matched.emotion_b).mean())}


def main() -> None:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    clip_s, loops, segment_s = (10.0, 12, 30) if args.quick else (30.0, 10, 150)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        clips = build_batch(work, 4, clip_s)
        seconds: dict[str, list[float]] = {name: [] for name in CONFIGS}
        floors = []
        for _ in range(args.rounds):  # alternating rounds: the machine's neighbours move every number alike
            floors.append(decode_floor(clips))
            for name, extra in CONFIGS.items():
                seconds[name].append(analyze([*clips, "-o", work / name.replace(" ", "_"), *extra]))
        (work / "long").mkdir()
        minute = build_batch(work / "long", 1, 60.0)[0]
        long_clip = loop_clip(work / "long.mp4", minute, loops)
        long_floor = decode_floor([long_clip])
        single = analyze([long_clip, "-o", work / "single", "--no-video"])
        segmented = analyze([long_clip, "-o", work / "segments", "--no-video", "--engine", "ray", "--workers", "2",
                             "--segment-s", str(segment_s)])
        agreement = compare(work / "single" / "long" / "timeline.parquet", work / "segments" / "long" / "timeline.parquet")
    command = "python benchmarks/cluster.py" + (" --quick" if args.quick else "")
    lines = [
        "# Ray engine: throughput and segment mode", "",
        f"Command: `{command}` on {platform.processor() or platform.machine()}, {os.cpu_count()} cores "
        f"({args.rounds} alternating rounds; the machine is shared, so each row also shows wall time over the "
        "decode floor measured in the same round).", "",
        f"## Batch: 4 clips of {clip_s:.0f} s (640x360, two faces, annotated video)", "",
        "| engine | wall s (per round) | video s per wall s | over decode floor |", "| --- | --- | --- | --- |",
    ]
    for name, walls in seconds.items():
        best = min(walls)
        ratio = min(w / f for w, f in zip(walls, floors))
        lines.append(f"| `{name}` | {', '.join(f'{w:.1f}' for w in walls)} | {4 * clip_s / best:.2f} | {ratio:.1f}x |")
    lines += [
        "", f"Decode floor (all four clips): {', '.join(f'{f:.2f}' for f in floors)} s. The Ray rows include "
        "starting a local Ray and loading the models in each worker.", "",
        f"## One {loops}-minute clip: single pass against `--segment-s {segment_s}` on 2 workers (`--no-video`)", "",
        "| run | wall s | over decode floor |", "| --- | --- | --- |",
        f"| local, one pass | {single:.1f} | {single / long_floor:.1f}x |",
        f"| ray --workers 2 --segment-s {segment_s} | {segmented:.1f} | {segmented / long_floor:.1f}x |", "",
        f"Stitched against single pass: face ids {agreement['ids_stitched']} vs {agreement['ids_single']}; rows "
        f"{agreement['rows_stitched']} vs {agreement['rows_single']}, {agreement['rows_matched']} matched by frame "
        f"and box; same emotion on {agreement['same_emotion']:.1%} of matched rows. Decode floor {long_floor:.1f} s.",
        "",
    ]
    (ROOT / "reports" / "cluster.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()

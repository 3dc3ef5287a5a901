"""`emotiontrack analyze udp://...` on a clip streamed in real time, against the same clip analysed as a file.

    python benchmarks/live.py            # 60 s 720p25 FER2013 composite; needs ../shared/datasets/fer2013.zip

The clip is fer_clip.py's (four moving slots of FER2013 validation faces changing every 3 s, so the truth is
known). It is sent as MPEG-TS over UDP at real time (`ffmpeg -re -c copy`), as an encoder would, to
`emotiontrack analyze udp://127.0.0.1:PORT --no-video` started first. Measured:
- rows readable under OUT/<name>/live while it runs (polled every 0.2 s), and how late each row became
  readable: the wall time it was first read minus when the sender sent its frame (its `time_s` after the
  send began): capture, analysis and the --flush-s wait together;
- the capture's own latency (a frame's arrival to its emotions, from the timeline's metadata);
- seconds from the stream's end to the exit (the capture waits --stall-s for more video);
- recall, id switches and 3-s segment emotion of the published timeline, and of the file's;
- a second capture (with the annotated video) stopped by SIGINT after 20 s: exit status, seconds to exit.
Writes reports/live.md and .json.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from reporting import write_report

ROOT = Path(__file__).resolve().parents[1]
FER_ZIP = ROOT.parent / "shared" / "datasets" / "fer2013.zip"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def send(clip: Path, port: int) -> subprocess.Popen:
    from emotiontrack.media.tools import ffmpeg_path

    return subprocess.Popen([ffmpeg_path(), "-loglevel", "error", "-re", "-i", str(clip), "-c", "copy", "-f", "mpegts",
                             f"udp://127.0.0.1:{port}?pkt_size=1316"])


def capture(port: int, out: Path, *options: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "emotiontrack.cli", "analyze", f"udp://127.0.0.1:{port}", "-o",
                             str(out), *options], stderr=subprocess.PIPE, text=True)


def watch_parts(folder: Path, sent_at: float, proc: subprocess.Popen, first_rows_by_s: float) -> dict:
    """Poll the live parts until the capture exits: when each row was first readable, relative to its send."""
    import pandas as pd

    seen: set[str] = set()
    late: list[float] = []
    readable_by = None
    while proc.poll() is None:
        time.sleep(0.2)
        for part in sorted(folder.glob("part-*.parquet")) if folder.is_dir() else []:
            if part.name in seen:
                continue
            seen.add(part.name)
            now = time.time()
            rows = pd.read_parquet(part)
            late += list(now - (sent_at + rows.time_s.to_numpy()))
        if readable_by is None and time.time() - sent_at >= first_rows_by_s and folder.is_dir():
            readable_by = len(pd.read_parquet(folder)) if seen else 0
    return {"parts_seen": len(seen), "rows_readable_at_30s": readable_by,
            "readable_late_s": {q: round(float(np.percentile(late, p)), 2) for q, p in
                                (("p50", 50), ("p95", 95), ("max", 100))} if late else None}


def stream_and_capture(clip: Path, work: Path) -> dict:
    port, out = free_port(), work / "live"
    proc = capture(port, out, "--no-video")
    time.sleep(2.0)  # "started first"
    sent_at = time.time()
    sender = send(clip, port)
    watched: dict = {}
    watcher = __import__("threading").Thread(
        target=lambda: watched.update(watch_parts(out / f"udp-127.0.0.1-{port}" / "live", sent_at, proc, 30.0)))
    watcher.start()
    sender.wait()
    ended_at = time.time()
    _, stderr = proc.communicate(timeout=300)
    watcher.join()
    return {"exit": proc.returncode, "exit_after_stream_end_s": round(time.time() - ended_at, 1),
            "folder": str(out / f"udp-127.0.0.1-{port}"), "stderr_tail": stderr[-300:], **watched}


def stopped_by_ctrl_c(clip: Path, work: Path, after_s: float = 20.0) -> dict:
    port, out = free_port(), work / "stopped"
    proc = capture(port, out)
    time.sleep(2.0)
    sender = send(clip, port)
    time.sleep(after_s)
    signalled = time.time()
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=300)
    sender.kill()
    folder = out / f"udp-127.0.0.1-{port}"
    return {"exit": proc.returncode, "exit_after_signal_s": round(time.time() - signalled, 1),
            "published": sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "live.md")
    args = parser.parse_args()
    if not FER_ZIP.is_file():
        sys.exit(f"needs {FER_ZIP}")
    import pandas as pd
    import pyarrow.parquet as pq
    from scoring import score_timeline

    import emotiontrack
    from emotiontrack.model.dataset import load_train_val
    from emotiontrack.runtime import cpu_has_bf16
    from emotiontrack.synthetic import fer_composite, write_clip

    _, validation = load_train_val(FER_ZIP)
    sprites, slots = fer_composite(validation, duration_s=args.seconds, seed=args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        clip = work / "clip.mp4"
        truth = write_clip(clip, sprites, size=(1280, 720), fps=25, duration_s=args.seconds)
        scores = {"file": score_timeline(emotiontrack.analyze(clip), truth, slots, validation.classes, 2.0)}
        live = stream_and_capture(clip, work)
        timeline = pd.read_parquet(Path(live["folder"]) / "timeline.parquet")
        scores["live"] = score_timeline(timeline, truth, slots, validation.classes, 2.0)
        facts = json.loads(pq.read_schema(Path(live["folder"]) / "timeline.parquet").metadata[b"live"])
        stopped = stopped_by_ctrl_c(clip, work)
    isa = "AMX/AVX512-BF16 (CNN in bf16)" if cpu_has_bf16() else "AVX2 (CNN in int8)"
    command = "python benchmarks/live.py " + " ".join(sys.argv[1:])
    lines = ["# Live capture: a clip streamed in real time over UDP", "", f"Command: `{command.strip()}`", "",
             f"{args.seconds:.0f} s FER2013 composite (seed {args.seed}), 1280x720, 25 fps, sent with `ffmpeg -re -c copy -f "
             f"mpegts udp://...`; `emotiontrack analyze udp://127.0.0.1:PORT --no-video` at default settings, started "
             f"2 s before the sender; {os.cpu_count()} cores, {isa}.", "",
             "| timeline | recall | id switches | ids | 3-s segment emotion | detected faces right |",
             "| --- | --- | --- | --- | --- | --- |"]
    for name, s in scores.items():
        lines.append(f"| {name} | {s['recall']:.3f} | {s['id_switches']} | {s['ids']} | {s['emotion_agreement']:.3f} "
                     f"| {s['face_accuracy']:.3f} |")
    lines += ["", f"- exit status {live['exit']}, {live['exit_after_stream_end_s']} s after the stream ended "
              f"(--stall-s waits 10 s for more video); ended by: {facts['ended_by']}",
              f"- rows readable under live/ 30 s after the send began: {live['rows_readable_at_30s']} "
              f"({live['parts_seen']} parts in all)",
              f"- a frame's arrival to its emotions (metadata `live.latency_s`): {facts['latency_s']}",
              f"- a row readable in live/ after its frame was sent: {live['readable_late_s']} (s; includes the "
              f"--flush-s wait of up to 5 s)",
              f"- analysed frames skipped because the analysis was behind: {facts['skipped_analysed_frames']}; "
              f"frames read {facts['frames_read']}",
              f"- stopped by SIGINT after 20 s (with the annotated video): exit {stopped['exit']} "
              f"{stopped['exit_after_signal_s']} s after the signal; published {', '.join(stopped['published'])}"]
    write_report(args.out, lines, {"command": command, "scores": scores, "live": live, "facts": facts,
                                   "stopped": stopped})


if __name__ == "__main__":
    main()

"""Build a 10-second demo clip from scikit-image's astronaut photograph and analyse it.

    python examples/demo.py            # writes examples/demo/demo.mp4 and examples/demo/results/

Two faces cross the frame (one mirrored, hidden for a second); the clip has a sine-tone audio track.
"""

from __future__ import annotations

import sys
from pathlib import Path

from emotiontrack.cli.main import main
from emotiontrack.synthetic import Sprite, astronaut_face, linear_path, write_clip

HERE = Path(__file__).resolve().parent


def build_demo_clip(path: Path, duration_s: float = 10.0) -> Path:
    left, right = astronaut_face(260), astronaut_face(220, mirrored=True)
    sprites = [
        Sprite(lambda t: left, linear_path((40, 120), (980, 380), duration_s), "a"),
        Sprite(lambda t: right, linear_path((1000, 60), (60, 440), duration_s, hidden=[(4.0, 5.0)]), "b"),
    ]
    write_clip(path, sprites, size=(1280, 720), fps=25, duration_s=duration_s, audio=True)
    return path


if __name__ == "__main__":
    clip = build_demo_clip(HERE / "demo" / "demo.mp4")
    print(f"built {clip}")
    sys.exit(main(["analyze", str(clip), "-o", str(HERE / "demo" / "results"), *sys.argv[1:]]))

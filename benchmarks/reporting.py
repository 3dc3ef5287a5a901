"""Writing a benchmark's results: a Markdown table for people and the same rows as JSON beside it."""

from __future__ import annotations

import json
from pathlib import Path


def write_report(out: Path, lines: list[str], data: dict) -> None:
    """`out` (Markdown) and `out` with a .json suffix; prints the Markdown."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    out.with_suffix(".json").write_text(json.dumps(data, indent=2))
    print(out.read_text())

"""Self-contained HTML reports: charts and face crops are embedded, links are relative, no network."""

from __future__ import annotations

import base64
import html
from pathlib import Path

import pandas as pd

from emotiontrack.files import write_text
from emotiontrack.outputs.colors import EMOTION_COLORS
from emotiontrack.types import EMOTIONS

STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem;color:#222;max-width:1100px}
h1{font-size:1.4rem}h2{font-size:1.1rem;margin-top:2rem}
table{border-collapse:collapse;font-size:.9rem}td,th{border:1px solid #ccc;padding:.25rem .5rem;text-align:right}
th{background:#f3f3f3}td.l{text-align:left}.faces{display:flex;flex-wrap:wrap;gap:1rem}
.face{border:1px solid #ddd;padding:.5rem;width:180px;font-size:.85rem}.face img{width:160px;height:160px}
.dot{display:inline-block;width:.8em;height:.8em;border-radius:50%;margin-right:.3em;vertical-align:middle}
img.chart{max-width:100%;border:1px solid #eee}
"""


def _data_uri(path: Path, mime: str) -> str:
    return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode()


def _dot(emotion: str) -> str:
    r, g, b = EMOTION_COLORS.get(emotion, (0, 0, 0))
    return f'<span class="dot" style="background:rgb({r},{g},{b})"></span>{html.escape(emotion)}'


def _write(path: Path, title: str, body: str) -> Path:
    page = f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>' \
           f"<style>{STYLE}</style></head><body>\n{body}\n</body></html>\n"
    return write_text(path, page)


def video_report(folder: Path, video: str, faces: pd.DataFrame, meta: dict[str, object], charts: list[Path],
                 links: list[str]) -> Path:
    """`folder/report.html` for one input: facts, charts, the face gallery, links to the other outputs."""
    parts = [f"<h1>{html.escape(video)}</h1>"]
    facts = {k: meta[k] for k in ("duration_s", "source_fps", "analysed_frames", "decode_errors") if k in meta}
    parts.append("<p>" + " · ".join(f"{html.escape(k)}: {html.escape(str(v))}" for k, v in facts.items())
                 + f" · faces: {len(faces)}</p>")
    parts.append("<p>" + " · ".join(f'<a href="{html.escape(link)}">{html.escape(link)}</a>' for link in links) + "</p>")
    for chart in charts:
        parts.append(f'<p><img class="chart" alt="{html.escape(chart.stem)}" src="{_data_uri(chart, "image/png")}"></p>')
    parts.append("<h2>Faces</h2><div class='faces'>")
    for face in faces.itertuples():
        crop = folder / face.crop
        image = f'<img alt="face {face.face_id}" src="{_data_uri(crop, "image/jpeg")}">' if crop.is_file() else ""
        seen = f"{face.first_s:.1f}–{face.last_s:.1f} s" if pd.notna(face.first_s) else "still"
        parts.append(f"<div class='face'>{image}<br><b>face {face.face_id}</b> · {_dot(face.dominant_emotion)}<br>"
                     f"{seen}, {face.frames_analysed} analysed frames</div>")
    parts.append("</div><h2>Per-face summary</h2>" + _faces_html(faces))
    return _write(folder / "report.html", f"emotiontrack — {video}", "\n".join(parts))


def _faces_html(faces: pd.DataFrame) -> str:
    head = "<tr><th>face</th><th>first s</th><th>last s</th><th>visible s</th><th>dominant</th>" + \
           "".join(f"<th>{_dot(e)} share</th>" for e in EMOTIONS) + "</tr>"
    rows = []
    for face in faces.itertuples():
        shares = "".join(f"<td>{getattr(face, f'share_{e}'):.2f}</td>" for e in EMOTIONS)
        rows.append(f"<tr><td>{face.face_id}</td><td>{face.first_s:.1f}</td><td>{face.last_s:.1f}</td>"
                    f"<td>{face.seconds_visible:.1f}</td><td class='l'>{_dot(face.dominant_emotion)}</td>{shares}</tr>")
    return f"<table>{head}{''.join(rows)}</table>"


def index_page(out: Path, entries: list[tuple[str, Path, str]], overview: Path | None) -> Path:
    """`out/index.html`: one line per input (name, link to its report, status), and the overview chart."""
    parts = ["<h1>emotiontrack results</h1>"]
    if overview is not None and overview.is_file():
        parts.append(f'<p><img class="chart" alt="overview" src="{_data_uri(overview, "image/png")}"></p>')
    parts.append("<table><tr><th>input</th><th>report</th><th>status</th></tr>")
    for name, folder, status in entries:
        report = folder / "report.html"
        link = f'<a href="{html.escape(report.relative_to(out).as_posix())}">report</a>' if report.is_file() else ""
        parts.append(f"<tr><td class='l'>{html.escape(name)}</td><td>{link}</td><td class='l'>{html.escape(status)}</td></tr>")
    parts.append("</table><p><a href='summary.parquet'>summary.parquet</a> (all faces of this run)</p>")
    return _write(out / "index.html", "emotiontrack results", "\n".join(parts))

"""What an input names: a live source (a stream URL or a capture device) or a file, and a live source's name.

Kept apart from media/live.py (which reads them) so the command line can tell inputs apart before the heavy
imports.
"""

from __future__ import annotations

import re

LIVE_SCHEMES = ("udp", "rtp", "rtsp", "rtsps", "rtmp", "rtmps", "srt", "http", "https", "tcp")


def is_live(text: str) -> bool:
    """Whether an input names a live source rather than a file: udp://, rtp://, rtsp://, rtmp://, srt://,
    http(s):// (HLS included) and tcp:// addresses, and capture devices (/dev/video*)."""
    scheme = text.split("://", 1)[0].lower() if "://" in text else ""
    return scheme in LIVE_SCHEMES or text.startswith("/dev/video")


def live_name(text: str) -> str:
    """An output folder name for a live source: udp://127.0.0.1:23000 -> udp-127.0.0.1-23000."""
    name = re.sub(r"[^A-Za-z0-9._]+", "-", text.split("?", 1)[0]).strip("-.")
    return name[:120] or "live"

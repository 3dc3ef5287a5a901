"""Publishing one input's results: complete or absent.

Each input is analysed into a hidden staging folder beside its final one (`staging_dir`); only when every
file is written, the manifest last, is the folder renamed into place (`publish`). A failed or interrupted
input therefore leaves nothing under a final name. The manifest records the source, model and settings,
so a re-run skips inputs already done the same way (`is_complete`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

from emotiontrack import __version__
from emotiontrack.config import AnalyzeConfig
from emotiontrack.files import make_private_dir, write_text
from emotiontrack.media.stills import image_files
from emotiontrack.types import path_text

MANIFEST = "manifest.json"
MAX_NAME_BYTES = 200


def output_dirs(paths: Sequence[Path], out: Path, sources: Mapping[Path, str] | None = None) -> dict[Path, Path]:
    """A distinct output folder per input, named after its stem, plus a hash of its source (its absolute path,
    or its URI in `sources`) where stems collide in this run or the folder holds another input's result from
    an earlier run (nothing is replaced)."""
    stems = Counter(_stem(p) for p in paths)
    dirs = {}
    for path in paths:
        name, source = _stem(path), (sources or {}).get(path) or str(path.absolute())
        if stems[name] > 1 or _holds_another_source(out / name, source):
            name += "-" + hashlib.sha1(source.encode()).hexdigest()[:8]
        dirs[path] = out / name
    return dirs


def _holds_another_source(folder: Path, source: str) -> bool:
    try:
        return json.loads((folder / MANIFEST).read_text()).get("source") != source
    except (OSError, ValueError):
        return False  # no finished result there


def _stem(path: Path) -> str:
    name = path_text(path.absolute().name if path.name in ("", ".", "..") else path.stem).lstrip(".") or "input"
    # Room for ".<name>.partial-<pid>-<hex>" within the 255 bytes a file name may have
    if len(name.encode()) > MAX_NAME_BYTES:
        name = name.encode()[: MAX_NAME_BYTES - 9].decode("utf-8", "ignore") + "-" + hashlib.sha1(name.encode()).hexdigest()[:8]
    return name


def source_identity(path: Path) -> dict[str, object]:
    """What identifies a local input: a file's path, size and modification time; a folder's path and those of
    each of its images (so that results written into the folder itself do not count). OSError if it is gone.
    (An s3:// input's identity is its URI, size and ETag: s3.object_identity.)"""
    identity: dict[str, object] = {"source": str(path.absolute())}
    if path.is_dir():  # a file replaced in place changes neither the folder's size nor its modification time
        listing = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in image_files(path, note=False)]
        identity["source_images"] = hashlib.sha1(json.dumps(listing).encode()).hexdigest()
    else:
        stat = path.stat()
        identity.update(source_size=stat.st_size, source_mtime_ns=stat.st_mtime_ns)
    return identity


def manifest_key(identity: dict[str, object], config: AnalyzeConfig, model_sha256: str) -> dict[str, object]:
    """What identifies a result: the source's identity, the model and the settings."""
    return {"emotiontrack_version": __version__, "model_sha256": model_sha256, "settings": config.settings(),
            **identity}


def is_complete(identity: dict[str, object], out_dir: Path, config: AnalyzeConfig, model_sha256: str) -> bool:
    """True if out_dir holds a finished result for this very source, model and settings."""
    try:
        manifest = json.loads((out_dir / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    return is_same_result(manifest, identity, config, model_sha256) and all((out_dir / f).is_file() for f in manifest["files"])


def is_same_result(manifest: dict, identity: dict[str, object], config: AnalyzeConfig, model_sha256: str) -> bool:
    """Whether a result's manifest was made from this very source, model and settings."""
    return all(manifest.get(k) == v for k, v in manifest_key(identity, config, model_sha256).items())


def staging_dir(out_dir: Path) -> Path:
    """A new hidden folder beside `out_dir` to write its result into."""
    return make_private_dir(out_dir.parent, f".{out_dir.name}.partial-")


def write_manifest(staging: Path, key: dict[str, object], extra: dict[str, object]) -> None:
    """Written last: its presence says every other file is complete."""
    files = sorted(p.relative_to(staging).as_posix() for p in staging.rglob("*") if p.is_file())
    manifest = {**key, "files": files, "completed": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **extra}
    write_text(staging / MANIFEST, json.dumps(manifest, indent=2))


def sweep_leftovers(out: Path) -> list[Path]:
    """Clean up after runs that were killed or interrupted twice: remove staging folders whose process is gone,
    and put back a result whose replacement was cut short (`publish`). Returns what was removed."""
    removed = []
    for folder in out.glob(".*.partial-*") if out.is_dir() else []:
        if not _alive(folder.name.rsplit(".partial-", 1)[1]):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    for old in out.glob(".*.old-*") if out.is_dir() else []:
        name, owner = old.name[1:].rsplit(".old-", 1)
        if _alive(owner):
            continue
        if (out / name).exists():
            shutil.rmtree(old, ignore_errors=True)
            removed.append(old)
        else:  # interrupted between the two renames: the older result is still the result
            os.replace(old, out / name)
    return removed


def _alive(stamp: str) -> bool:
    """Whether the process whose pid starts `stamp` ("<pid>-...") is running."""
    try:
        os.kill(int(stamp.split("-", 1)[0]), 0)
    except ProcessLookupError:
        return False
    except (ValueError, PermissionError):
        return True  # not ours to judge
    return True


def publish(staging: Path, final: Path) -> None:
    """Move a finished staging folder to its final name, replacing an older result."""
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}-{time.monotonic_ns()}")
        os.replace(final, old)
    os.replace(staging, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)

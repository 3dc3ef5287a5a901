"""The package's dependencies point one way (docs/architecture.md): each package imports only those below it."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "emotiontrack"
# Lower numbers are lower layers; a module may import its own package and anything of a lower number.
LAYERS = {
    "errors": 0, "types": 0, "version": 0,
    "config": 1, "files": 1, "runtime": 1,
    "geometry": 2,
    "media": 3,
    "model": 4,
    "stages": 5, "outputs": 5,
    "pipeline": 6, "s3": 6,
    "batch": 7, "synthetic": 7,
    "live": 8,
    "cluster": 8,
    "cli": 9,
    "api": 10,
}


def _unit(path: Path) -> str:
    """The layer a module belongs to: its package, or the top-level module's own name."""
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return "api" if parts == ("__init__",) else parts[0]


def _imported_units(path: Path) -> set[str]:
    units = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] if node.module != "emotiontrack" else [f"emotiontrack.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "emotiontrack" and len(parts) > 1:
                units.add("version" if parts[1] == "__version__" else parts[1])
    return units


def test_every_module_imports_only_lower_layers():
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        unit = _unit(path)
        for imported in _imported_units(path) - {unit}:
            if LAYERS[imported] >= LAYERS[unit]:
                upward.append(f"{path.relative_to(PACKAGE)} ({unit}) imports {imported}")
    assert not upward, "\n".join(upward)


def test_every_package_and_module_has_a_layer():
    units = {_unit(p) for p in PACKAGE.rglob("*.py")}
    assert units <= set(LAYERS), units - set(LAYERS)

"""The rules of the house in docs/ARCHITECTURE.md, checked on the source: dependencies flow
downward through the layers, and pure image code imports nothing that does I/O."""

from __future__ import annotations

import ast
from pathlib import Path

import blockimage

PACKAGE = Path(blockimage.__file__).parent

# Lowest first. A module may import from its own layer or any layer below, never above.
LAYERS = [
    {"errors"},
    # pure functions on arrays, bytes and records
    {"records", "imaging", "fingerprint", "quality", "keypoints", "watermark", "compare"}
    | {"analysis", "evaluation"},
    # state and I/O at the edges: settings, keys, files, inputs, backends, bundles
    {"config", "files", "keys", "tokens", "credentials", "inputs", "storage", "ledger", "bundle"},
    {"matchers"},
    {"registration", "verification", "report", "resolution"},
    {"node", "batch"},
    {"cli", "demo", "web", "__main__", "__init__"},
]
LAYER_OF = {part: i for i, layer in enumerate(LAYERS) for part in layer}


def part_of(path: Path) -> str:
    """The top-level part a source file belongs to: 'ledger' for ledger/log.py."""
    rel = path.relative_to(PACKAGE)
    return rel.parts[0].removesuffix(".py")


def imported_parts(path: Path) -> set[str]:
    """Top-level parts of blockimage that a file imports (relative or absolute)."""
    package = list(path.relative_to(PACKAGE).parts[:-1])  # where the file's relative imports start
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[: len(package) - (node.level - 1)]
            target = base + (node.module.split(".") if node.module else [])
            # "from . import x" at the top of the package imports the part x
            found.update([target[0]] if target else [a.name for a in node.names])
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("blockimage."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found.update(
                a.name.split(".")[1] for a in node.names if a.name.startswith("blockimage.")
            )
    return found


def test_every_part_has_a_layer():
    parts = {part_of(p) for p in PACKAGE.rglob("*.py")}
    assert parts <= set(LAYER_OF), parts - set(LAYER_OF)


def test_dependencies_flow_downward():
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        here = part_of(path)
        for there in imported_parts(path) - {here}:
            if there in LAYER_OF and LAYER_OF[there] > LAYER_OF[here]:
                upward.append(f"{path.relative_to(PACKAGE)} imports {there}")
    assert upward == []


def test_the_layer_check_sees_relative_imports():
    assert "imaging" in imported_parts(PACKAGE / "keypoints.py")
    assert "ledger" in imported_parts(PACKAGE / "matchers" / "pdq.py")
    assert "records" in imported_parts(PACKAGE / "ledger" / "log.py")

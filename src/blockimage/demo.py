"""``blockimage demo``: register real photos, make benign and edited copies, verify them all.

The photos are the ones scikit-image ships inside its package (no download). Each is
registered; then the registered file itself, a JPEG re-encode, a half-size copy, and a locally
edited copy (copy-move, splice, object removal, painted shape or overlaid text, in turn) are
verified, plus one photo that was never registered. The table says what each verdict should be
and what it was.
"""

from __future__ import annotations

import io
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .errors import BlockImageError
from .evaluation import TAMPER_KINDS, tampered_variant
from .node import Node

__all__ = ["run_demo", "DemoRow", "sample_photos", "SamplePhotosMissingError"]

# (file in skimage/data, short name); all real photographs shipped with scikit-image.
_SAMPLES = (
    ("astronaut.png", "astronaut"),
    ("coffee.png", "coffee"),
    ("chelsea.png", "chelsea"),
    ("rocket.jpg", "rocket"),
    ("motorcycle_left.png", "motorcycle"),
)
_UNREGISTERED = ("hubble_deep_field.jpg", "hubble")


class SamplePhotosMissingError(BlockImageError, FileNotFoundError):
    """scikit-image's sample photos are not installed (a stripped scikit-image?)."""


@dataclass
class DemoRow:
    image: str
    variant: str
    expected: str
    verdict: str
    matched_by: str | None
    record_id: str | None
    ms: float
    regions: str = ""

    @property
    def ok(self) -> bool:
        return self.verdict == self.expected


def sample_photos() -> list[tuple[Path, str]]:
    """Paths of the sample photos shipped in scikit-image's package data."""
    import skimage.data

    root = Path(skimage.data.__file__).parent
    photos = [(root / name, short) for name, short in _SAMPLES]
    missing = [str(p) for p, _ in photos if not p.is_file()]
    if missing:
        raise SamplePhotosMissingError(
            f"scikit-image sample photos not found: {', '.join(missing)}; reinstall scikit-image"
        )
    return photos


def _half(pixels: np.ndarray) -> bytes:
    img = Image.fromarray(pixels)
    out = io.BytesIO()
    img.resize((img.width // 2, img.height // 2), Image.Resampling.LANCZOS).save(out, "PNG")
    return out.getvalue()


def run_demo(
    workdir: Path | None = None,
    *,
    home: Path | None = None,
    progress: Callable[[str], None] = print,
    echo: Callable[[str], None] = print,
) -> list[DemoRow]:
    """Run the demo in ``workdir`` (a new temporary folder by default) and print the table."""
    workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="blockimage-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    home = home or workdir / "home"
    originals, copies = workdir / "originals", workdir / "copies"
    originals.mkdir(exist_ok=True)
    copies.mkdir(exist_ok=True)
    progress(f"demo: working in {workdir}")
    rows: list[DemoRow] = []
    donor = np.asarray(Image.open(_donor_photo()).convert("RGB"))  # spliced from, never registered
    with Node(home) as node:
        for i, (src, name) in enumerate(sample_photos()):
            local = originals / f"{name}{src.suffix}"
            local.write_bytes(src.read_bytes())
            t0 = time.perf_counter()
            receipt = node.register(local, owner="demo-newsroom", out=workdir / "registered")
            progress(
                f"demo: registered {name} as {receipt.record.record_id} "
                f"({(time.perf_counter() - t0) * 1000:.0f} ms)"
            )
            assert receipt.output is not None
            registered = Path(receipt.output)
            pixels = np.asarray(Image.open(registered).convert("RGB"))
            kind = TAMPER_KINDS[i % len(TAMPER_KINDS)]
            edit = tampered_variant(pixels, kind, np.random.default_rng(i), donor=donor)
            variants = {
                "registered file": (registered.read_bytes(), "authentic"),
                "JPEG q80 re-encode": (_encode(pixels, "JPEG", 80), "benign"),
                "resized to 50%": (_half(pixels), "benign"),
                f"{kind} edit": (_encode(edit.pixels, edit.fmt, edit.quality), "tampered"),
            }
            for variant, (data, expected) in variants.items():
                path = copies / f"{name}-{variant.split()[0].lower()}.{_ext(data)}"
                path.write_bytes(data)
                rows.append(_verify(node, path, name, variant, expected))
        rows.append(_verify(node, _donor_photo(), _UNREGISTERED[1], "never registered", "unknown"))
    _print_table(rows, echo)
    return rows


def _donor_photo() -> Path:
    return sample_photos()[0][0].parent / _UNREGISTERED[0]


def _encode(pixels: np.ndarray, fmt: str, quality: int) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, fmt, quality=quality)
    return out.getvalue()


def _ext(data: bytes) -> str:
    return "jpg" if data[:2] == b"\xff\xd8" else "png"


def _verify(node: Node, path: Path, name: str, variant: str, expected: str) -> DemoRow:
    t0 = time.perf_counter()
    verdict = node.verify(path)
    ms = (time.perf_counter() - t0) * 1000
    boxes = " ".join(f"{r.w}x{r.h}@{r.x},{r.y}" for r in verdict.regions[:2])
    return DemoRow(
        name,
        variant,
        expected,
        verdict.verdict,
        verdict.matched_by,
        verdict.record_id,
        round(ms, 1),
        boxes,
    )


def _print_table(rows: list[DemoRow], echo: Callable[[str], None]) -> None:
    header = (
        f"{'image':<11} {'variant':<19} {'expected':<10} {'verdict':<10} "
        f"{'matched by':<14} {'ms':>6}  regions"
    )
    echo(header)
    echo("-" * len(header))
    for r in rows:
        mark = "" if r.ok else "  <- differs"
        echo(
            f"{r.image:<11} {r.variant:<19} {r.expected:<10} {r.verdict:<10} "
            f"{r.matched_by or '-':<14} {r.ms:>6.0f}  {r.regions}{mark}"
        )
    good = sum(r.ok for r in rows)
    echo(f"{good}/{len(rows)} verdicts as expected")

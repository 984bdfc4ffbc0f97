"""Synthetic benign and tampered variants of a photo, with exact masks, for evaluation; and
synthetic pictures and signed records to fill large homes.

Used by the verification and scale benchmarks (``benchmarks/verify_eval.py``,
``benchmarks/scale.py``), the tests and the demo.
Every function is deterministic given its ``rng``. Tampering kinds follow the literature's
usual set: copy-move, splicing from another photo, object removal (OpenCV inpainting), painted
shapes and overlaid text; each may be followed by a JPEG re-save, as happens when an edited
image is published. Places and sizes are random, with two concessions to realism: a removal
takes the most textured of six random places (an object, not empty sky), and text is drawn in
the colour that contrasts with what is under it.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from PIL import Image, ImageEnhance

from .fingerprint import fingerprint
from .records import Record, new_record_id, sign_record

__all__ = [
    "Variant",
    "textured_picture",
    "signed_record",
    "BENIGN_KINDS",
    "TAMPER_KINDS",
    "benign_variant",
    "tampered_variant",
    "jpeg_roundtrip",
]


@dataclass(frozen=True)
class Variant:
    kind: str
    pixels: np.ndarray  # RGB uint8
    mask: np.ndarray | None  # bool, same size as pixels: the changed pixels (None if benign)
    fmt: str = "PNG"  # how to save it
    quality: int = 95


def jpeg_roundtrip(img: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=quality)
    return np.asarray(Image.open(buf).convert("RGB"))


def _resize(img: np.ndarray, factor: float) -> np.ndarray:
    h, w = img.shape[:2]
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    return np.asarray(Image.fromarray(img).resize(size, Image.Resampling.LANCZOS))


def _enhance(kind: type, factor: float) -> Callable[[np.ndarray], np.ndarray]:
    return lambda img: np.asarray(kind(Image.fromarray(img)).enhance(factor))


def _gamma(g: float) -> Callable[[np.ndarray], np.ndarray]:
    table = np.clip(255.0 * (np.arange(256) / 255.0) ** g, 0, 255).astype(np.uint8)
    return lambda img: table[img]


def _crop(fraction: float) -> Callable[[np.ndarray], np.ndarray]:
    def crop(img: np.ndarray) -> np.ndarray:
        h, w = img.shape[:2]
        dy, dx = int(h * fraction), int(w * fraction)
        return np.ascontiguousarray(img[dy : h - dy, dx : w - dx])

    return crop


_BENIGN: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "jpeg95": lambda img: jpeg_roundtrip(img, 95),
    "jpeg85": lambda img: jpeg_roundtrip(img, 85),
    "jpeg75": lambda img: jpeg_roundtrip(img, 75),
    "jpeg60": lambda img: jpeg_roundtrip(img, 60),
    "jpeg50": lambda img: jpeg_roundtrip(img, 50),
    "resize50": lambda img: _resize(img, 0.5),
    "resize75+jpeg80": lambda img: jpeg_roundtrip(_resize(img, 0.75), 80),
    "upscale150": lambda img: _resize(img, 1.5),
    "brightness+15": _enhance(ImageEnhance.Brightness, 1.12),
    "contrast1.2": _enhance(ImageEnhance.Contrast, 1.2),
    "saturation1.3": _enhance(ImageEnhance.Color, 1.3),
    "gamma0.8": _gamma(0.8),
    "crop3%+jpeg85": lambda img: jpeg_roundtrip(_crop(0.03)(img), 85),
    "crop10%+jpeg85": lambda img: jpeg_roundtrip(_crop(0.05)(img), 85),
    "rotate2": lambda img: np.asarray(Image.fromarray(img).rotate(2, Image.Resampling.BICUBIC)),
}
BENIGN_KINDS = tuple(_BENIGN)
TAMPER_KINDS = ("copy-move", "splice", "removal", "paint", "text")


def benign_variant(img: np.ndarray, kind: str) -> Variant:
    return Variant(kind, _BENIGN[kind](img), None)


def _shape_mask(h: int, w: int, rng: np.random.Generator, area: float) -> np.ndarray:
    """A random ellipse or rectangle covering about ``area`` of the image."""
    mask = np.zeros((h, w), np.uint8)
    aspect = rng.uniform(0.5, 2.0)
    rh = int(np.sqrt(area * h * w / aspect))
    rw = int(rh * aspect)
    rh, rw = min(rh, h - 4), min(rw, w - 4)
    y, x = int(rng.integers(0, h - rh)), int(rng.integers(0, w - rw))
    if rng.random() < 0.5:
        cv2.ellipse(mask, (x + rw // 2, y + rh // 2), (rw // 2, rh // 2), 0, 0, 360, 1, -1)
    else:
        cv2.rectangle(mask, (x, y), (x + rw - 1, y + rh - 1), 1, -1)
    return mask.astype(bool)


def _moved(mask: np.ndarray, rng: np.random.Generator) -> tuple[int, int]:
    """A displacement that moves the mask's bounding box to a mostly different place."""
    ys, xs = np.nonzero(mask)
    h, w = mask.shape
    y0, y1, x0, x1 = ys.min(), ys.max(), xs.min(), xs.max()
    for _ in range(50):
        dy = int(rng.integers(-y0, h - y1))
        dx = int(rng.integers(-x0, w - x1))
        if abs(dy) > (y1 - y0) * 0.6 or abs(dx) > (x1 - x0) * 0.6:
            return dy, dx
    return (h - 1 - y1) if y0 < h / 2 else -y0, 0


def _shift(a: np.ndarray, dy: int, dx: int) -> np.ndarray:
    return np.roll(np.roll(a, dy, axis=0), dx, axis=1)


_WORDS = ("FAKE", "SOLD", "2024", "NO ENTRY", "VOTE", "EXCLUSIVE", "CONFIRMED")


def tampered_variant(
    img: np.ndarray,
    kind: str,
    rng: np.random.Generator,
    *,
    donor: np.ndarray | None = None,
    resave: bool = True,
) -> Variant:
    """A locally edited copy of ``img`` and the exact mask of the changed pixels.

    ``donor`` is the photo spliced from (kind "splice"). With ``resave``, half the variants are
    re-saved as JPEG (quality 75-95) after the edit.
    """
    h, w = img.shape[:2]
    out = img.copy()
    area = float(rng.uniform(0.01, 0.06))
    if kind == "copy-move":
        src = _shape_mask(h, w, rng, area)
        dy, dx = _moved(src, rng)
        mask = _shift(src, dy, dx)
        out[mask] = _shift(img, dy, dx)[mask]
    elif kind == "splice":
        if donor is None:
            raise ValueError("splice needs a donor photo")
        mask = _shape_mask(h, w, rng, area)
        patch = np.asarray(Image.fromarray(donor).resize((w, h), Image.Resampling.BILINEAR))
        dy, dx = int(rng.integers(-h // 3, h // 3)), int(rng.integers(-w // 3, w // 3))
        out[mask] = _shift(patch, dy, dx)[mask]
    elif kind == "removal":
        # People remove objects, not empty sky: of a few random places, take the most textured.
        candidates = [_shape_mask(h, w, rng, area * 0.6) for _ in range(6)]
        grey = img.astype(np.float32).mean(axis=2)
        mask = max(candidates, key=lambda m: float(grey[m].std()))
        bgr = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
        filled = cv2.inpaint(bgr, mask.astype(np.uint8), 5, cv2.INPAINT_TELEA)
        out = cv2.cvtColor(filled, cv2.COLOR_BGR2RGB)
    elif kind == "paint":
        mask = _shape_mask(h, w, rng, area * 0.5)
        colour = rng.integers(0, 256, 3).astype(np.uint8)
        out[mask] = colour
    elif kind == "text":
        canvas = np.zeros((h, w), np.uint8)
        word = _WORDS[int(rng.integers(len(_WORDS)))]
        scale = max(h, w) / 400 * rng.uniform(0.8, 1.6)
        thickness = max(2, int(scale * 2))
        (tw, th), _ = cv2.getTextSize(word, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
        x = int(rng.integers(0, max(1, w - tw)))
        y = int(rng.integers(th + 1, max(th + 2, h - 2)))
        cv2.putText(
            canvas, word, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, 1, thickness, cv2.LINE_AA
        )
        mask = canvas.astype(bool)
        # Overlaid text is meant to be read: white on dark backgrounds, black on light ones.
        light = float(img[mask].mean()) > 110 if mask.any() else True
        colour = np.array([10, 10, 10] if light else [255, 255, 255], np.uint8)
        out[mask] = colour
    else:
        raise ValueError(f"unknown tampering kind {kind!r}")
    if kind == "removal":
        mask = np.any(out != img, axis=2) | mask
    if resave and rng.random() < 0.5:
        q = int(rng.integers(75, 96))
        return Variant(f"{kind}+jpeg{q}", jpeg_roundtrip(out, q), mask, "JPEG", q)
    return Variant(kind, out, mask)


def textured_picture(rng: np.random.Generator, size: tuple[int, int] = (480, 640)) -> np.ndarray:
    """A distinct synthetic picture with corners and edges (ORB finds hundreds of keypoints):
    a smooth random background, then random rectangles, ellipses and lines, then mild noise."""
    h, w = size
    field = rng.integers(0, 256, (4, 5, 3), dtype=np.uint8)
    img = np.ascontiguousarray(cv2.resize(field, (w, h), interpolation=cv2.INTER_CUBIC))
    for _ in range(int(rng.integers(25, 45))):
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
        x1, y1 = int(rng.integers(0, w)), int(rng.integers(0, h))
        shape = rng.integers(0, 3)
        if shape == 0:
            cv2.rectangle(img, (x0, y0), (x1, y1), color, int(rng.choice([-1, 2, 4])))
        elif shape == 1:
            axes = (int(rng.integers(5, w // 6)), int(rng.integers(5, h // 6)))
            cv2.ellipse(img, (x0, y0), axes, float(rng.uniform(0, 180)), 0, 360, color, -1)
        else:
            cv2.line(img, (x0, y0), (x1, y1), color, int(rng.integers(1, 5)))
    noise = rng.normal(0, 4, img.shape)
    return np.clip(img + noise, 0, 255).astype(np.uint8)


def signed_record(
    data: bytes,
    pixels: np.ndarray,
    *,
    cid: str,
    owner: str,
    key: Ed25519PrivateKey,
    created_at: str,
    media_type: str = "image/jpeg",
) -> Record:
    """A signed record for a stored file, as registration would write it for an unmarked
    image (no watermark metrics, no tags): for filling homes at scale with the project's own
    fingerprinting, signing and log code."""
    fp = fingerprint(data, pixels)
    record = Record(
        record_id=new_record_id(),
        owner=owner,
        owner_key=key.public_key().public_bytes_raw().hex(),
        created_at=created_at,
        sha256_file=fp.sha256_file,
        sha256_pixels=fp.sha256_pixels,
        original_sha256_file=fp.sha256_file,
        pdq=fp.pdq,
        pdq_quality=fp.pdq_quality,
        cid=cid,
        width=int(pixels.shape[1]),
        height=int(pixels.shape[0]),
        media_type=media_type,
        tags=(),
        watermark=None,
    )
    return sign_record(record, key)

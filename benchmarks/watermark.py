"""Watermark robustness harness: BlockImage vs invisible-watermark's dwtDctSvd, same run.

For every real photo (long side 1024 px) and both methods: embed a random 64-bit payload, run
each attack, extract, and count exact recoveries (all 64 bits). Prints per-attack recovery
rates, PSNR / SSIM of the marked image, and embed / extract times; also the false-positive count
of BlockImage's extractor on the unmarked photos and their attacked versions.

Baseline: ``invisible-watermark`` (imwatermark) ``dwtDctSvd``, installed with
``pip install --no-deps invisible-watermark opencv-python-headless``. Its package imports
torch for RivaGAN; we stub that import, since dwtDctSvd never uses it.

Usage: .venv/bin/python benchmarks/watermark.py [--photos N] [--no-baseline] [--camera N]

A 12 MP section (--camera N photos, upscaled) adds JPEG 75 and the social-media path (long
side 1080 px + JPEG 80).
"""

from __future__ import annotations

import argparse
import io
import sys
import time
import types
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

sys.path.insert(0, str(Path(__file__).parent))
from photos import load, photo_paths  # noqa: E402

from blockimage import watermark  # noqa: E402
from blockimage.quality import psnr, ssim  # noqa: E402

KEY = bytes(range(32))
Attack = Callable[[np.ndarray], np.ndarray]


def _jpeg(q: int) -> Attack:
    def attack(img: np.ndarray) -> np.ndarray:
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, "JPEG", quality=q)
        return np.asarray(Image.open(buf).convert("RGB"))

    return attack


def _resize(img: np.ndarray, factor: float) -> np.ndarray:
    h, w = img.shape[:2]
    size = (round(w * factor), round(h * factor))
    return np.asarray(Image.fromarray(img).resize(size, Image.Resampling.BICUBIC))


def _down_up(img: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    small = Image.fromarray(img).resize((w // 2, h // 2), Image.Resampling.BICUBIC)
    return np.asarray(small.resize((w, h), Image.Resampling.BICUBIC))


def _noise(img: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(int(img[::97, ::89].sum()))
    return np.clip(img + rng.normal(0, 5, img.shape), 0, 255).astype(np.uint8)


def _brightness(img: np.ndarray) -> np.ndarray:
    return np.clip(img.astype(int) + 20, 0, 255).astype(np.uint8)


def _contrast(img: np.ndarray) -> np.ndarray:
    return np.asarray(ImageEnhance.Contrast(Image.fromarray(img)).enhance(1.2))


def _crop10(img: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    dy, dx = h // 20, w // 20  # 5 % off each side: 90 % of width and height remain
    return np.ascontiguousarray(img[dy : h - dy, dx : w - dx])


def _rotate2(img: np.ndarray) -> np.ndarray:
    return np.asarray(Image.fromarray(img).rotate(2, Image.Resampling.BICUBIC))


ATTACKS: dict[str, Attack] = {
    "none": lambda img: img,
    "jpeg90": _jpeg(90),
    "jpeg75": _jpeg(75),
    "jpeg50": _jpeg(50),
    "down50": lambda img: _resize(img, 0.5),
    "down-up": _down_up,
    "noise5": _noise,
    "bright+20": _brightness,
    "contrast1.2": _contrast,
    "crop10": _crop10,
    "rotate2": _rotate2,
}


class BlockImageMethod:
    name = "blockimage"

    def embed(self, img: np.ndarray, payload: int) -> np.ndarray:
        return watermark.embed(img, payload, KEY)

    def extract(self, img: np.ndarray) -> int | None:
        return watermark.extract(img, KEY)[0]


class DwtDctSvdMethod:
    """invisible-watermark's dwtDctSvd with a 64-bit payload (its API works on BGR arrays)."""

    name = "dwtDctSvd"

    def __init__(self) -> None:
        sys.modules.setdefault("torch", types.ModuleType("torch"))  # RivaGAN-only import
        from imwatermark import WatermarkDecoder, WatermarkEncoder

        self._enc, self._dec = WatermarkEncoder, WatermarkDecoder

    def embed(self, img: np.ndarray, payload: int) -> np.ndarray:
        enc = self._enc()
        enc.set_watermark("bytes", payload.to_bytes(8, "big"))
        return np.ascontiguousarray(enc.encode(img[:, :, ::-1].copy(), "dwtDctSvd")[:, :, ::-1])

    def extract(self, img: np.ndarray) -> int | None:
        dec = self._dec("bytes", 64)
        out = dec.decode(np.ascontiguousarray(img[:, :, ::-1]), "dwtDctSvd")
        return int.from_bytes(bytes(out), "big")


def run(
    method,
    photos: Iterable[np.ndarray],
    rng: np.random.Generator,
    attacks: dict[str, Attack] | None = None,
) -> dict:
    """Embed a random payload in each photo, then try every attack (default: ``ATTACKS``)."""
    attacks = ATTACKS if attacks is None else attacks
    ok = {a: 0 for a in attacks}
    psnrs, ssims, t_embed, t_extract = [], [], [], []
    n = 0
    for img in photos:
        n += 1
        payload = int(rng.integers(0, 2**63)) * 2 + 1
        t0 = time.perf_counter()
        marked = method.embed(img, payload)
        t_embed.append(time.perf_counter() - t0)
        psnrs.append(psnr(img, marked))
        ssims.append(ssim(img, marked))
        for name, attack in attacks.items():
            attacked = attack(marked)
            t0 = time.perf_counter()
            found = method.extract(attacked)
            if name == "none":
                t_extract.append(time.perf_counter() - t0)
            ok[name] += found == payload
    return {
        "recovery": {a: ok[a] / n for a in attacks},
        "found": ok,
        "psnr": (float(np.mean(psnrs)), float(np.min(psnrs))),
        "ssim": (float(np.mean(ssims)), float(np.min(ssims))),
        "embed_ms": 1000 * float(np.median(t_embed)),
        "extract_ms": 1000 * float(np.median(t_extract)),
    }


def false_positives(photos: list[np.ndarray], extra: int) -> tuple[int, int]:
    """Extractions from unmarked images that returned a payload: every photo under every
    attack, then ``extra`` random crops (30-100 % of each side) at random scales."""
    hits = tries = 0
    for img in photos:
        for attack in ATTACKS.values():
            tries += 1
            hits += watermark.extract(attack(img), KEY)[0] is not None
    rng = np.random.default_rng(11)
    for i in range(extra):
        img = photos[i % len(photos)]
        h, w = img.shape[:2]
        ch, cw = int(h * rng.uniform(0.3, 1.0)), int(w * rng.uniform(0.3, 1.0))
        y, x = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
        crop = _resize(np.ascontiguousarray(img[y : y + ch, x : x + cw]), rng.uniform(0.5, 1.5))
        tries += 1
        hits += watermark.extract(crop, KEY)[0] is not None
    return hits, tries


def _social(img: np.ndarray) -> np.ndarray:
    """The social-media path: long side to 1080 px, JPEG quality 80."""
    h, w = img.shape[:2]
    scale = 1080 / max(h, w)
    small = Image.fromarray(img).resize((round(w * scale), round(h * scale)), Image.LANCZOS)
    return _jpeg(80)(np.asarray(small))


CAMERA_ATTACKS: dict[str, Attack] = {
    "none": lambda x: x,
    "jpeg75": _jpeg(75),
    "1080+jpeg80": _social,
}


def camera_size(paths: list[Path]) -> None:
    """12 MP: each photo upscaled (Lanczos) to 12 MP, since the packages hold no photo that
    large; BlockImage only: this section measures our own cost and robustness at camera size."""

    def photos() -> Iterator[np.ndarray]:  # one 12 MP photo in memory at a time
        for path in paths:
            src = Image.open(path).convert("RGB")
            scale = (12e6 / (src.width * src.height)) ** 0.5
            size = (round(src.width * scale), round(src.height * scale))
            yield np.asarray(src.resize(size, Image.LANCZOS))

    r = run(BlockImageMethod(), photos(), np.random.default_rng(2), CAMERA_ATTACKS)
    n, ok = len(paths), r["found"]
    print(f"\n12 MP (each photo upscaled to 12 MP), blockimage, {n} photos")
    print("  exact recovery: " + "   ".join(f"{a} {ok[a]}/{n}" for a in CAMERA_ATTACKS))
    print(f"  PSNR mean/min {r['psnr'][0]:.1f}/{r['psnr'][1]:.1f}   "
          f"SSIM mean/min {r['ssim'][0]:.3f}/{r['ssim'][1]:.3f}   "
          f"embed median {r['embed_ms']:.0f} ms   "
          f"extract median {r['extract_ms']:.0f} ms")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=0, help="use only the first N photos")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument(
        "--fp-crops",
        type=int,
        default=1000,
        help="extra unmarked random crops for the false-positive count",
    )
    parser.add_argument(
        "--camera", type=int, default=6, help="photos for the 12 MP section (0: skip it)"
    )
    args = parser.parse_args()
    paths = photo_paths()[: args.photos or None]
    photos = [load(p) for p in paths]
    print(f"{len(photos)} real photos, long side 1024 px: " + ", ".join(p.stem for p in paths))
    methods = [BlockImageMethod()]
    if not args.no_baseline:
        methods.append(DwtDctSvdMethod())
    results = {m.name: run(m, photos, np.random.default_rng(1)) for m in methods}
    names = list(results)
    print(f"\n{'exact recovery':<14}" + "".join(f"{n:>12}" for n in names))
    for attack in ATTACKS:
        print(f"{attack:<14}" + "".join(f"{results[n]['recovery'][attack]:>12.0%}" for n in names))
    for label, key, fmt in (
        ("PSNR mean/min", "psnr", "{:.1f}/{:.1f}"),
        ("SSIM mean/min", "ssim", "{:.3f}/{:.3f}"),
    ):
        print(f"{label:<14}" + "".join(f"{fmt.format(*results[n][key]):>12}" for n in names))
    for label, key in (("embed ms", "embed_ms"), ("extract ms", "extract_ms")):
        print(f"{label:<14}" + "".join(f"{results[n][key]:>12.0f}" for n in names))
    if args.camera:
        camera_size(paths[: args.camera])
    hits, tries = false_positives(photos, args.fp_crops)
    attempts = tries * len(watermark._gain_ladder(watermark.DEFAULT_PARAMS))
    print(
        f"\nfalse positives of blockimage on unmarked images: {hits} of {tries} extractions "
        f"({attempts:,} decoding attempts, one per lattice gain)"
    )


if __name__ == "__main__":
    main()

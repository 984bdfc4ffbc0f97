"""Watermark robustness harness: BlockImage vs two baselines from invisible-watermark, one run.

For every real photo (long side 1024 px) and every method: embed a random payload, run each
attack, extract, and count exact recoveries (all 64 bits; RivaGAN carries 32, so its 32).
Prints per-attack recovery rates, PSNR / SSIM of the marked image, embed / extract times (and
BlockImage's extract time when its synchronisation search runs, per megapixel); then the
false positives of BlockImage's extractor on unmarked images: the photos under every attack
and random crops at random scales, counting every decoding attempt the extractor made.

Baselines, from the ``invisible-watermark`` wheel (``make bench-setup`` installs it with
--no-deps): ``dwtDctSvd`` (its package imports torch for RivaGAN, stubbed here: dwtDctSvd
never uses it), and ``rivaGan``, whose ONNX encoder and decoder ship in the wheel and run here
on onnxruntime without torch (the wheel's own wrapper only converts arrays with torch).

Usage: .venv/bin/python benchmarks/watermark.py [--photos N] [--no-baseline] [--camera N]
[--fp-crops N] [--fp-keys N]

A 12 MP section (--camera N photos, upscaled) adds JPEG 75, the social-media path (long side
1080 px + JPEG 80), crops and a rotation.
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


def _crop_sides(left: float, top: float, right: float, bottom: float) -> Attack:
    """Cut the given fractions of the width / height off each side."""

    def attack(img: np.ndarray) -> np.ndarray:
        h, w = img.shape[:2]
        y0, y1 = round(top * h), h - round(bottom * h)
        x0, x1 = round(left * w), w - round(right * w)
        return np.ascontiguousarray(img[y0:y1, x0:x1])

    return attack


def _rescaled(attack: Attack) -> Attack:
    """``attack``, then the result resized back to the original size (bicubic)."""

    def both(img: np.ndarray) -> np.ndarray:
        h, w = img.shape[:2]
        return np.asarray(Image.fromarray(attack(img)).resize((w, h), Image.Resampling.BICUBIC))

    return both


def _rotate(degrees: float) -> Attack:
    """Rotate (bicubic) and crop 4 % off each side, which removes the empty corners."""
    trim = _crop_sides(0.04, 0.04, 0.04, 0.04)
    return lambda img: trim(np.asarray(Image.fromarray(img).rotate(degrees, Image.BICUBIC)))


def _scale(factor: float) -> Attack:
    return lambda img: _resize(img, factor)


ATTACKS: dict[str, Attack] = {
    "none": lambda img: img,
    "jpeg90": _jpeg(90),
    "jpeg75": _jpeg(75),
    "jpeg50": _jpeg(50),
    "down50": _scale(0.5),
    "scale75": _scale(0.75),
    "scale150": _scale(1.5),
    "scale200": _scale(2.0),
    "down-up": _down_up,
    "noise5": _noise,
    "bright+20": _brightness,
    "contrast1.2": _contrast,
    "crop10": _crop10,  # 5 % off each side
    "crop10-left": _crop_sides(0.10, 0, 0, 0),
    "crop10-right": _crop_sides(0, 0, 0.10, 0),
    "crop10-top": _crop_sides(0, 0.10, 0, 0),
    "crop10-bottom": _crop_sides(0, 0, 0, 0.10),
    "crop10-corner": _crop_sides(0.10, 0.10, 0, 0),
    "crop10+rescale": _rescaled(_crop10),
    "crop10-corner+rescale": _rescaled(_crop_sides(0.10, 0.10, 0, 0)),
    "rotate2": _rotate(2),
    "rotate-2": _rotate(-2),
    "crop10+jpeg75": lambda img: _jpeg(75)(_crop10(img)),
}
# Attacks after which BlockImage's plain extraction fails and the synchronisation search runs
SYNC_ATTACKS = [a for a in ATTACKS if a.startswith(("crop", "rotate"))]


class BlockImageMethod:
    name = "blockimage"
    bits = 64

    def embed(self, img: np.ndarray, payload: int) -> np.ndarray:
        return watermark.embed(img, payload, KEY)

    def extract(self, img: np.ndarray) -> int | None:
        return watermark.extract(img, KEY)[0]


class DwtDctSvdMethod:
    """invisible-watermark's dwtDctSvd with a 64-bit payload (its API works on BGR arrays)."""

    name = "dwtDctSvd"
    bits = 64

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


class RivaGanMethod:
    """RivaGAN (Zhang et al., "Robust invisible video watermarking with attention", 2019) as
    the invisible-watermark wheel ships it: its ONNX encoder and decoder on onnxruntime, 32
    bits, fed as that wheel's wrapper feeds them (BGR, scaled to [-1, 1], one frame)."""

    name = "rivaGan"
    bits = 32

    def __init__(self) -> None:
        import importlib.util

        import onnxruntime

        spec = importlib.util.find_spec("imwatermark")
        if spec is None or spec.origin is None:
            raise SystemExit("invisible-watermark is not installed: run make bench-setup")
        folder = Path(spec.origin).parent
        options = onnxruntime.SessionOptions()
        self._encoder = onnxruntime.InferenceSession(
            str(folder / "rivagan_encoder.onnx"), options, providers=["CPUExecutionProvider"]
        )
        self._decoder = onnxruntime.InferenceSession(
            str(folder / "rivagan_decoder.onnx"), options, providers=["CPUExecutionProvider"]
        )

    @staticmethod
    def _frame(img: np.ndarray) -> np.ndarray:
        bgr = img[:, :, ::-1].astype(np.float32) / 127.5 - 1.0
        return np.ascontiguousarray(bgr.transpose(2, 0, 1)[None, :, None])  # 1 x 3 x 1 x H x W

    def embed(self, img: np.ndarray, payload: int) -> np.ndarray:
        bits = np.array([[(payload >> (31 - i)) & 1 for i in range(32)]], dtype=np.float32)
        out = self._encoder.run(None, {"frame": self._frame(img), "data": bits})[0]
        bgr = (np.clip(out[0, :, 0], -1.0, 1.0).transpose(1, 2, 0) + 1.0) * 127.5
        return np.ascontiguousarray(bgr.astype(np.uint8)[:, :, ::-1])

    def extract(self, img: np.ndarray) -> int | None:
        data = self._decoder.run(None, {"frame": self._frame(img)})[0][0]
        return int("".join("1" if v > 0.52 else "0" for v in data), 2)


def run(
    method,
    photos: Iterable[np.ndarray],
    rng: np.random.Generator,
    attacks: dict[str, Attack] | None = None,
) -> dict:
    """Embed a random payload in each photo, then try every attack (default: ``ATTACKS``)."""
    attacks = ATTACKS if attacks is None else attacks
    ok = {a: 0 for a in attacks}
    psnrs, ssims, t_embed, t_extract, t_sync = [], [], [], [], []
    n = 0
    for img in photos:
        n += 1
        payload = (int(rng.integers(0, 2**63)) * 2 + 1) % 2**method.bits
        t0 = time.perf_counter()
        marked = method.embed(img, payload)
        t_embed.append((time.perf_counter() - t0) / (img.shape[0] * img.shape[1] / 1e6))
        psnrs.append(psnr(img, marked))
        ssims.append(ssim(img, marked))
        for name, attack in attacks.items():
            attacked = attack(marked)
            t0 = time.perf_counter()
            found = method.extract(attacked)
            took = time.perf_counter() - t0
            if name == "none":
                t_extract.append(took)
            elif name in SYNC_ATTACKS:
                t_sync.append(took / (attacked.shape[0] * attacked.shape[1] / 1e6))
            ok[name] += found == payload
    return {
        "recovery": {a: ok[a] / n for a in attacks},
        "found": ok,
        "psnr": (float(np.mean(psnrs)), float(np.min(psnrs))),
        "ssim": (float(np.mean(ssims)), float(np.min(ssims))),
        "embed_ms": 1000 * float(np.median(t_embed)),  # per megapixel
        "extract_ms": 1000 * float(np.median(t_extract)),
        "sync_ms": 1000 * float(np.median(t_sync)) if t_sync else float("nan"),  # per MP
    }


def false_positives(photos: list[np.ndarray], extra: int) -> tuple[int, int, int]:
    """(payloads found, extractions, decoding attempts) on unmarked images: every photo under
    every attack, then ``extra`` random crops (30-100 % of each side) at random scales, some
    rotated. Every BCH + CRC decoding the extractor tries is counted (each lattice gain, each
    placement the synchronisation search proposes)."""
    from blockimage.watermark import _payload

    decode = _payload.decode_bits
    attempts = 0

    def counted(bits: np.ndarray, key: bytes) -> tuple[int | None, int]:
        nonlocal attempts
        attempts += 1
        return decode(bits, key)

    _payload.decode_bits = counted  # type: ignore[assignment]
    try:
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
            crop = np.ascontiguousarray(img[y : y + ch, x : x + cw])
            crop = _resize(crop, rng.uniform(0.5, 1.5))
            if i % 3 == 0:
                crop = np.asarray(Image.fromarray(crop).rotate(rng.uniform(-3, 3), Image.BICUBIC))
            tries += 1
            hits += watermark.extract(crop, KEY)[0] is not None
    finally:
        _payload.decode_bits = decode  # type: ignore[assignment]
    return hits, tries, attempts


def false_positives_by_key(photos: list[np.ndarray], keys: int) -> tuple[int, int]:
    """(payloads found, readings): every unmarked photo under every attack, read with ``keys``
    random keys each. A reading with another key is an independent trial of the decoder (the
    key draws the blocks' bits, dithers and whitening), so this counts many more of them than
    whole extractions could: each is one plain reading (the whole ladder of lattice gains, as
    the extractor's first step and each placement of its search do)."""
    from blockimage.watermark import DEFAULT_PARAMS, _decode, _luma, _strengths

    rng = np.random.default_rng(12)
    hits = readings = 0
    for img in photos:
        for attack in ATTACKS.values():
            s1 = _strengths(_luma(attack(img)), DEFAULT_PARAMS)
            for _ in range(keys):
                readings += 1
                hits += _decode(s1, rng.bytes(32), DEFAULT_PARAMS) is not None
    return hits, readings


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
    "crop10": _crop10,
    "crop10-corner+rescale": _rescaled(_crop_sides(0.10, 0.10, 0, 0)),
    "rotate2": _rotate(2),
    "crop10+jpeg75": lambda img: _jpeg(75)(_crop10(img)),
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
          f"embed median {r['embed_ms']:.0f} ms per MP   "
          f"extract median {r['extract_ms']:.0f} ms (unattacked), "
          f"{r['sync_ms']:.0f} ms per MP with the synchronisation search")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=0, help="use only the first N photos")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument(
        "--riva-photos",
        type=int,
        default=6,
        help="RivaGAN on the first N photos only (it takes ~6 s per extraction here)",
    )
    parser.add_argument(
        "--fp-crops",
        type=int,
        default=1000,
        help="extra unmarked random crops for the false-positive count",
    )
    parser.add_argument(
        "--camera", type=int, default=6, help="photos for the 12 MP section (0: skip it)"
    )
    parser.add_argument(
        "--fp-keys",
        type=int,
        default=200,
        help="random keys each unmarked attacked photo is read with (the decoder's trials)",
    )
    args = parser.parse_args()
    paths = photo_paths()[: args.photos or None]
    photos = [load(p) for p in paths]
    print(f"{len(photos)} real photos, long side 1024 px: " + ", ".join(p.stem for p in paths))
    methods: list = [BlockImageMethod()]
    if not args.no_baseline:
        methods += [DwtDctSvdMethod(), RivaGanMethod()]
    results = {
        m.name: run(m, photos[: args.riva_photos] if m.name == "rivaGan" else photos,
                    np.random.default_rng(1))
        for m in methods
    }  # fmt: skip
    names = list(results)
    print(f"\n{'exact recovery':<22}" + "".join(f"{n:>12}" for n in names))
    for attack in ATTACKS:
        print(f"{attack:<22}" + "".join(f"{results[n]['recovery'][attack]:>12.0%}" for n in names))
    for label, key, fmt in (
        ("PSNR mean/min", "psnr", "{:.1f}/{:.1f}"),
        ("SSIM mean/min", "ssim", "{:.3f}/{:.3f}"),
    ):
        print(f"{label:<22}" + "".join(f"{fmt.format(*results[n][key]):>12}" for n in names))
    for label, key in (
        ("embed ms/MP", "embed_ms"),
        ("extract ms", "extract_ms"),
        ("crop ms/MP", "sync_ms"),
    ):
        print(f"{label:<22}" + "".join(f"{results[n][key]:>12.0f}" for n in names))
    print(
        "(payload bits: " + ", ".join(f"{m.name} {m.bits}" for m in methods) + "; crop ms/MP: "
        "extraction after a crop or rotation, where BlockImage runs its synchronisation; "
        f"rivaGan on the first {min(args.riva_photos, len(photos))} photos)"
    )
    if args.camera:
        camera_size(paths[: args.camera])
    hits, tries, attempts = false_positives(photos, args.fp_crops)
    print(
        f"\nfalse positives of blockimage on unmarked images: {hits} of {tries:,} extractions "
        f"({attempts:,} decoding attempts: lattice gains x placements)"
    )
    if args.fp_keys:
        hits, readings = false_positives_by_key(photos, args.fp_keys)
        print(
            f"false positives of blockimage's decoder, unmarked photos read with random keys: "
            f"{hits} of {readings:,} readings (an extraction makes 1 to 17 readings: the plain "
            f"one, then 2 per placement of up to 4 of its search)"
        )


if __name__ == "__main__":
    main()

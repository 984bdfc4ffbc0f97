"""Blind forensics on real photos: the JPEG coefficients as read from the file, double JPEG
compression, traces of an earlier JPEG, the local noise level, and the evidence they give."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
from PIL import Image

from blockimage.analysis import blind_evidence
from blockimage.analysis.blind import load_model
from blockimage.analysis.jpeg import aligned_double_jpeg, dct_blocks, earlier_jpeg
from blockimage.analysis.noise import noise_level_map
from blockimage.imaging import jpeg_luma, work_size

NAMES = ("astronaut", "coffee", "chelsea", "rocket", "motorcycle")


def _jpeg(pixels: np.ndarray, quality: int, exif: bytes | None = None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=quality, **({"exif": exif} if exif else {}))
    return buf.getvalue()


def _png(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "PNG", compress_level=1)
    return buf.getvalue()


def _decoded(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def _luma(rgb: np.ndarray) -> np.ndarray:
    return rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)


@pytest.fixture(scope="module")
def pictures(photos):
    return {n: np.asarray(Image.open(photos[n]).convert("RGB")) for n in NAMES}


def _splice(host: np.ndarray, donor: np.ndarray) -> tuple[np.ndarray, tuple[int, int, int]]:
    """A square of ``donor`` pasted into ``host`` off the 8 x 8 grid: (image, (y, x, side))."""
    h, w = host.shape[:2]
    side = min(h, w) // 3
    y, x = h // 3 + 3, w // 3 + 5
    out = host.copy()
    out[y : y + side, x : x + side] = donor[11 : 11 + side, 13 : 13 + side]
    return out, (y, x, side)


def test_coefficients_are_the_files_own_as_libjpeg_reads_them(pictures, tmp_path):
    jpeglib = pytest.importorskip("jpeglib")
    for quality, name in ((50, "astronaut"), (75, "coffee"), (95, "chelsea")):
        path = tmp_path / f"{name}.jpg"
        path.write_bytes(_jpeg(pictures[name], quality))
        reference = jpeglib.read_dct(str(path))
        luma = jpeg_luma(path.read_bytes())
        assert luma is not None
        assert (luma.table == reference.qt[reference.quant_tbl_no[0]]).all()
        ours = dct_blocks(luma)
        rows, cols = ours.shape[:2]
        theirs = reference.Y[:rows, :cols].reshape(ours.shape)
        assert (ours == theirs).mean() > 0.98
        # Exact where the decoder clipped no pixel to 0 or 255 and the step is 3 or more (the
        # decoder's rounding to whole grey levels moves a coefficient by up to ~1).
        blocks = luma.plane[: rows * 8, : cols * 8].reshape(rows, 8, cols, 8)
        unclipped = (blocks.min(axis=(1, 3)) > 0) & (blocks.max(axis=(1, 3)) < 255)
        coarse = luma.table.reshape(64) >= 3
        same = ours[unclipped][:, coarse] == theirs[unclipped][:, coarse]
        assert same.mean() > 0.9995, (quality, same.mean())


def test_only_jpeg_files_give_a_luma(pictures):
    assert jpeg_luma(_png(pictures["rocket"])) is None
    buf = io.BytesIO()
    Image.fromarray(pictures["rocket"]).convert("CMYK").save(buf, "JPEG")
    assert jpeg_luma(buf.getvalue()) is None  # no luma without a colour transform


def test_single_and_double_compression_are_told_apart(pictures):
    for name, img in pictures.items():
        for quality in (75, 90):
            once = aligned_double_jpeg(jpeg_luma(_jpeg(img, quality)))
            assert not once.double, (name, quality, once.primary)
            assert once.last_quality == quality
        twice = aligned_double_jpeg(jpeg_luma(_jpeg(_decoded(_jpeg(img, 70)), 90)))
        assert twice.double and twice.last_quality == 90
        assert twice.quality is not None and abs(twice.quality - 70) <= 3, twice.quality


def test_a_region_pasted_into_a_double_jpeg_reads_as_compressed_once(pictures):
    host = _decoded(_jpeg(pictures["coffee"], 70))
    donor = _decoded(_jpeg(pictures["astronaut"], 85))
    spliced, (y, x, side) = _splice(host, donor)
    found = aligned_double_jpeg(jpeg_luma(_jpeg(spliced, 90)))
    assert found.double
    inside = found.llr[y // 8 + 1 : (y + side) // 8 - 1, x // 8 + 1 : (x + side) // 8 - 1]
    outside = np.ones(found.llr.shape, bool)
    outside[y // 8 - 1 : (y + side) // 8 + 2, x // 8 - 1 : (x + side) // 8 + 2] = False
    assert np.median(inside) > 5 and np.median(found.llr[outside]) < -1


def test_a_lossless_copy_of_a_jpeg_keeps_its_traces_and_a_paste_has_none(pictures):
    img = pictures["chelsea"]
    assert not earlier_jpeg(_luma(img)).double  # never compressed
    was_jpeg = earlier_jpeg(_luma(_decoded(_jpeg(img, 75))))
    assert was_jpeg.double and was_jpeg.quality is not None and abs(was_jpeg.quality - 75) <= 2
    spliced, (y, x, side) = _splice(_decoded(_jpeg(img, 80)), pictures["rocket"])
    found = earlier_jpeg(_luma(spliced))
    inside = found.llr[y // 8 + 1 : (y + side) // 8 - 1, x // 8 + 1 : (x + side) // 8 - 1]
    assert np.median(inside) > 3 and np.median(found.llr) < -1


def test_noise_level_follows_added_noise(pictures):
    rng = np.random.default_rng(0)
    grey = _luma(pictures["astronaut"])
    for sigma in (3.0, 6.0):
        noisy = grey + rng.normal(0, sigma, grey.shape).astype(np.float32)
        assert abs(float(np.median(noise_level_map(noisy))) - sigma) < 0.25 * sigma


def test_blind_evidence_names_and_maps_a_splice(pictures):
    host = _decoded(_jpeg(pictures["motorcycle"], 70))
    spliced, (y, x, side) = _splice(host, _decoded(_jpeg(pictures["astronaut"], 85)))
    data = _jpeg(spliced, 90)
    evidence = blind_evidence(_decoded(data), data)
    assert evidence is not None and evidence.heat_map is not None
    assert any("compressed twice" in f and "~70" in f for f in evidence.findings)
    region = next(f for f in evidence.findings if "was compressed once" in f)
    found = re.search(r"x=(\d+), y=(\d+) \((\d+)x(\d+) px\)", region)
    assert found, region
    rx, ry, rw, rh = (int(v) for v in found.groups())
    assert abs(rx - x) <= 24 and abs(ry - y) <= 24 and abs(rw - side) <= 48, region
    heat = np.asarray(Image.open(io.BytesIO(evidence.heat_map)))
    assert heat.shape == work_size(*spliced.shape[:2])[::-1]
    # the same picture untouched: compressed twice, nothing compressed once, no heat
    untouched = _jpeg(host, 90)
    quiet = blind_evidence(_decoded(untouched), untouched)
    assert quiet is not None and quiet.heat_map is None
    assert any("compressed twice" in f for f in quiet.findings)
    assert not any("compressed once" in f for f in quiet.findings)
    assert quiet.score < evidence.score


def test_the_heat_map_follows_the_exif_orientation(pictures):
    host = _decoded(_jpeg(pictures["coffee"], 70))
    spliced, (y, x, side) = _splice(host, _decoded(_jpeg(pictures["rocket"], 85)))
    exif = Image.Exif()
    exif[0x0112] = 6  # stored as is, displayed turned 90 degrees clockwise
    data = _jpeg(spliced, 90, exif.tobytes())
    shown = np.asarray(Image.open(io.BytesIO(data)).transpose(Image.Transpose.ROTATE_270))
    evidence = blind_evidence(shown, data)
    heat = np.asarray(Image.open(io.BytesIO(evidence.heat_map))).astype(float) / 255
    scale = heat.shape[0] / shown.shape[0]
    h = spliced.shape[0]
    # a stored (y, x) shows at (x, h - 1 - y) after a clockwise quarter turn
    cy, cx = (x + side / 2) * scale, (h - y - side / 2) * scale
    assert heat[int(cy), int(cx)] > 0.5
    assert heat[: int(cy - side * scale), :].mean() < 0.1


def test_the_shipped_model_states_its_error_rates():
    model = load_model()
    points = model.operating_points
    assert len(points) >= 10
    fpr = [p.false_positive_rate for p in points]
    tpr = [p.true_positive_rate for p in points]
    assert fpr == sorted(fpr, reverse=True) and tpr == sorted(tpr, reverse=True)
    assert all(p.true_positive_rate >= p.false_positive_rate for p in points)
    assert model.error_rates(0.99).threshold == points[-1].threshold
    assert model.error_rates(0.0).threshold == points[0].threshold


def test_verify_of_an_unregistered_splice_stays_unknown_with_the_evidence(home, pictures, tmp_path):
    import json

    from click.testing import CliRunner

    from blockimage.cli import cli

    host = _decoded(_jpeg(pictures["chelsea"], 70))
    spliced, _ = _splice(host, _decoded(_jpeg(pictures["rocket"], 85)))
    suspect = tmp_path / "suspect.jpg"
    suspect.write_bytes(_jpeg(spliced, 90))
    runner = CliRunner()
    report = tmp_path / "report.html"
    shown = runner.invoke(
        cli, ["--home", str(home), "verify", str(suspect), "--report", str(report)]
    )
    assert shown.exit_code == 0 and "verdict: UNKNOWN" in shown.stdout
    assert "of untouched images and" in shown.stdout and "was compressed once" in shown.stdout
    text = report.read_text()
    assert "Blind forensics: where the compression history differs" in text
    doc = json.loads(
        runner.invoke(cli, ["--home", str(home), "verify", str(suspect), "--json"]).stdout
    )
    assert doc["verdict"] == "unknown" and doc["record_id"] is None
    blind = doc["blind_evidence"]
    assert blind["score"] == doc["blind_tamper_score"] and blind["heat_map"]
    assert any("compressed twice" in line for line in blind["findings"])
    assert blind["false_positive_rate"] <= blind["true_positive_rate"]


def test_a_lossy_webp_gets_no_compression_history(pictures):
    buf = io.BytesIO()
    Image.fromarray(_decoded(_jpeg(pictures["chelsea"], 75))).save(buf, "WEBP", quality=80)
    data = buf.getvalue()
    evidence = blind_evidence(_decoded(data), data)
    assert evidence is not None and evidence.heat_map is None
    assert evidence.findings[0].startswith("Compression history not analysed")
    # the same pixels as an array (no file) are judged as they are: no JPEG traces left
    assert blind_evidence(_decoded(data)).findings[0].startswith("No JPEG traces")

"""The keyed DWT-SVD watermark: invisible, robust, keyed, and never a wrong payload."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageFilter

from blockimage import watermark
from blockimage.evaluation import jpeg_roundtrip
from blockimage.quality import psnr, ssim
from blockimage.watermark import _payload

KEY = bytes(range(32))
PAYLOAD = 0xB10C_1A6E_0123_4567


def at_1024(path) -> np.ndarray:
    img = Image.open(path).convert("RGB")
    scale = 1024 / max(img.size)
    return np.asarray(
        img.resize((round(img.width * scale), round(img.height * scale)), Image.Resampling.LANCZOS)
    )


@pytest.fixture(scope="module")
def marked(photos):
    """(original, marked) pairs for three real photos at 1024 px."""
    pairs = {}
    for name in ("astronaut", "rocket", "motorcycle"):
        original = at_1024(photos[name])
        pairs[name] = (original, watermark.embed(original, PAYLOAD, KEY))
    return pairs


jpeg = jpeg_roundtrip


def resize(img: np.ndarray, factor: float) -> np.ndarray:
    h, w = img.shape[:2]
    return np.asarray(
        Image.fromarray(img).resize(
            (round(w * factor), round(h * factor)), Image.Resampling.BICUBIC
        )
    )


ATTACKS = {
    "jpeg90": lambda m: jpeg(m, 90),
    "jpeg75": lambda m: jpeg(m, 75),
    "jpeg50": lambda m: jpeg(m, 50),
    "downscale to 50% (extracted small)": lambda m: resize(m, 0.5),
    "down and up": lambda m: resize(resize(m, 0.5), 2.0),
    "gaussian noise 5": lambda m: np.clip(
        m + np.random.default_rng(0).normal(0, 5, m.shape), 0, 255
    ).astype(np.uint8),
    "brightness +20": lambda m: np.clip(m.astype(int) + 20, 0, 255).astype(np.uint8),
    "contrast x1.2": lambda m: np.asarray(ImageEnhance.Contrast(Image.fromarray(m)).enhance(1.2)),
}


def test_unattacked_mark_gives_the_payload_back(marked):
    for original, m in marked.values():
        payload, confidence = watermark.extract(m, KEY)
        assert payload == PAYLOAD and confidence > 0.25
        assert m.shape == original.shape and m.dtype == np.uint8


@pytest.mark.parametrize("attack", ATTACKS, ids=list(ATTACKS))
def test_payload_survives(marked, attack):
    for name, (_, m) in marked.items():
        assert watermark.extract(ATTACKS[attack](m), KEY)[0] == PAYLOAD, name


def test_mark_is_invisible_by_psnr_and_ssim(marked):
    for name, (original, m) in marked.items():
        assert psnr(original, m) >= 40, name
        assert ssim(original, m) >= 0.98, name


def test_flat_and_blurred_pictures_stay_invisible_and_readable(photos):
    yy, xx = np.mgrid[0:600, 0:800]
    sky = np.dstack([100 + 60 * yy / 600, 150 + 40 * yy / 600, 230 - 20 * xx / 800])
    blurred = Image.fromarray(at_1024(photos["coffee"])).filter(ImageFilter.GaussianBlur(6))
    for picture in (sky.astype(np.uint8), np.asarray(blurred)):
        m = watermark.embed(picture, PAYLOAD, KEY)
        assert psnr(picture, m) >= 40 and ssim(picture, m) >= 0.98
        assert watermark.extract(jpeg(m, 75), KEY)[0] == PAYLOAD


def test_a_canonical_luma_made_once_gives_the_same_mark_and_reading(marked):
    """Registration makes the canonical luma once for its duplicate check and the embedding:
    passed in, it changes neither; one of the wrong size is refused."""
    original, marked_img = marked["rocket"]
    canonical = watermark.canonical_luma(original)
    assert np.array_equal(watermark.embed(original, PAYLOAD, KEY, canonical=canonical), marked_img)
    found = watermark.extract_details(
        marked_img, KEY, sync=False, canonical=watermark.canonical_luma(marked_img)
    )
    plain = watermark.extract_details(marked_img, KEY, sync=False)
    assert found.payload == plain.payload == PAYLOAD
    assert (found.confidence, found.gain) == (plain.confidence, plain.gain)
    assert np.array_equal(found.bits, plain.bits)
    with pytest.raises(ValueError, match="canonical"):
        watermark.embed(original, PAYLOAD, KEY, canonical=canonical[:-1])


def test_wrong_key_reads_nothing(marked):
    other = bytes(32)
    for _, m in marked.values():
        assert watermark.extract(m, other) == (None, 0.0)


def test_unmarked_photos_read_nothing(photos):
    for path in photos.values():
        img = np.asarray(Image.open(path).convert("RGB"))
        for variant in (img, jpeg(img, 75), resize(img, 0.5)):
            assert watermark.extract(variant, KEY)[0] is None


def test_greyscale_input_keeps_its_shape(photos):
    grey = np.asarray(Image.open(photos["chelsea"]).convert("L"))
    m = watermark.embed(grey, PAYLOAD, KEY)
    assert m.shape == grey.shape and m.dtype == np.uint8
    assert watermark.extract(m, KEY)[0] == PAYLOAD


def test_images_too_small_for_the_payload_are_refused():
    with pytest.raises(watermark.WatermarkCapacityError, match="at least 256 pixels"):
        watermark.embed(np.zeros((255, 800, 3), np.uint8), PAYLOAD, KEY)
    # The smallest accepted size works.
    img = np.asarray(
        Image.fromarray(
            np.random.default_rng(1).integers(0, 256, (8, 8, 3), dtype=np.uint8)
        ).resize((256, 256))
    )
    assert watermark.extract(watermark.embed(img, PAYLOAD, KEY), KEY)[0] == PAYLOAD


@pytest.mark.parametrize("bad", [-1, 1 << 64])
def test_payload_must_be_64_bits(bad):
    with pytest.raises(ValueError, match="64-bit"):
        watermark.embed(np.zeros((300, 300, 3), np.uint8), bad, KEY)


def test_code_corrects_ten_bit_errors_and_never_returns_a_wrong_payload():
    rng = np.random.default_rng(7)
    sent = _payload.encode_payload(PAYLOAD, KEY)
    for flips in (1, 5, 10):
        for _ in range(20):
            received = sent.copy()
            received[rng.choice(sent.size, flips, replace=False)] ^= 1
            assert _payload.decode_bits(received, KEY) == (PAYLOAD, flips)
    wrong = 0
    for _ in range(3000):  # far beyond the code's reach: decoding must fail, not mislead
        received = sent.copy()
        received[rng.choice(sent.size, rng.integers(11, 60), replace=False)] ^= 1
        payload, _ = _payload.decode_bits(received, KEY)
        wrong += payload is not None and payload != PAYLOAD
    assert wrong == 0


def test_coded_bits_depend_on_the_key():
    a = _payload.encode_payload(PAYLOAD, KEY)
    b = _payload.encode_payload(PAYLOAD, bytes(32))
    assert a.size == b.size == watermark.CODED_BITS and 0.3 < np.mean(a != b) < 0.7


def test_the_largest_singular_triplet_agrees_with_the_svd():
    from blockimage.watermark._dwtsvd import largest_singular_triplet

    rng = np.random.default_rng(3)
    blocks = (rng.standard_normal((4096, 4, 4)) * 20).astype(np.float32)
    blocks[:5] = 0.0  # flat blocks
    u, s, vt = np.linalg.svd(blocks.astype(np.float64))
    u1, s1, v1 = largest_singular_triplet(blocks)
    assert np.allclose(s1, s[:, 0], rtol=1e-5, atol=1e-5)
    separated = s[:, 0] > 1.01 * s[:, 1]
    ours = u1[:, :, None] * v1[:, None, :]
    theirs = u[:, :, 0][:, :, None] * vt[:, 0, :][:, None, :]
    assert np.allclose(ours[separated], theirs[separated], atol=1e-3)
    assert np.all(np.isfinite(u1)) and np.all(s1[:5] == 0)


@pytest.mark.parametrize("size", [(2100, 1400), (1155, 866), (400, 600), (2000, 300), (700, 300)])
def test_resampling_is_pillows_bilinear_filter(size):
    """The canonical grid is what Pillow's antialiased bilinear resampling made when the marks
    of earlier registrations were embedded; ours (sparse weights, OpenCV when enlarging)
    stays within 1e-4 grey levels of it, shrinking, enlarging or both."""
    from blockimage.watermark._dwtsvd import resample

    plane = (np.random.default_rng(5).random(size[::-1]) * 255).astype(np.float32)
    for width, height in ((512, 512), (size[0] * 2, size[1] * 2)):
        pillow = Image.fromarray(plane, "F").resize((width, height), Image.Resampling.BILINEAR)
        assert np.abs(resample(plane, width, height) - np.asarray(pillow)).max() < 1e-4


def test_the_largest_singular_value_alone_agrees_with_the_svd():
    """The reader's s1 (no vectors): within 1e-4 of the SVD's, ties and flat blocks included."""
    from blockimage.watermark._dwtsvd import largest_singular_value

    rng = np.random.default_rng(4)
    blocks = rng.standard_normal((4096, 4, 4)) * 20
    blocks[:5] = 0.0  # flat blocks
    blocks[5:50] = np.eye(4) * rng.uniform(1, 50, (45, 1, 1))  # four equal singular values
    near = rng.standard_normal((50, 4, 1)) @ rng.standard_normal((50, 1, 4))
    blocks[50:100] = near + near.transpose(0, 2, 1)  # symmetric: s1 = |lambda|, often close
    s = np.linalg.svd(blocks, compute_uv=False)
    s1 = largest_singular_value(blocks.astype(np.float32))
    assert np.allclose(s1, s[:, 0], rtol=1e-4, atol=1e-3)
    assert np.all(s1[:5] == 0)


def test_refine_puts_a_rough_placement_on_the_grid_to_a_fraction_of_a_pixel():
    """A placement off by a canonical pixel, 0.3 % in scale or 0.2 degrees (what the search's
    steps leave) is corrected from the template in the drawn view: the decoder needs a
    quarter of a pixel."""
    import cv2

    from blockimage.watermark import _dwtsvd, _sync

    rng = np.random.default_rng(1)
    base = cv2.GaussianBlur(rng.normal(128, 12, (825, 1100)).astype(np.float32), (0, 0), 1.0)
    luma = base + _dwtsvd.resample(_sync.canvas(KEY, 512) * 1.0, 1100, 825)
    left, top = 55, 41
    crop = np.ascontiguousarray(luma[top:-30, left:-20])
    sx, sy = 512 / 1100, 512 / 825
    true = np.array([[sx, 0.0, left * sx], [0.0, sy, top * sy]])
    centre = np.array([crop.shape[1] / 2, crop.shape[0] / 2, 1.0])
    corners = np.array([[0, 0, 1], [crop.shape[1], crop.shape[0], 1.0]]).T
    for du, dv, scale, turn in ((1.0, -0.8, 1.003, 0.0), (-0.6, 0.5, 0.997, 0.0),
                                (0.3, 0.2, 1.0, 0.0035), (0.0, 0.0, 1.0, 0.0)):  # fmt: skip
        rough = true.copy()
        rough[:, :2] *= scale
        rough[0, 1], rough[1, 0] = turn * sx, -turn * sy
        rough[:, 2] += (du, dv)
        refined = _sync.refine(*_sync.canonical_view(crop, rough, 512), rough, KEY)
        error = (refined - true) @ np.column_stack([centre, corners])
        assert np.all(np.abs(error) < 0.15), (du, dv, scale, turn, error)
        assert refined[0, 0] == pytest.approx(sx, rel=5e-4)
        assert refined[1, 1] == pytest.approx(sy, rel=5e-4)


def crop_sides(img: np.ndarray, left: float, top: float, right: float, bottom: float):
    h, w = img.shape[:2]
    return np.ascontiguousarray(
        img[round(top * h) : h - round(bottom * h), round(left * w) : w - round(right * w)]
    )


def rotated(img: np.ndarray, degrees: float) -> np.ndarray:
    """Turned, then 4 % cut off each side (the empty corners)."""
    turned = np.asarray(Image.fromarray(img).rotate(degrees, Image.Resampling.BICUBIC))
    return crop_sides(turned, 0.04, 0.04, 0.04, 0.04)


GEOMETRIC = {
    "crop 10% left": lambda m: crop_sides(m, 0.10, 0, 0, 0),
    "crop 10% bottom": lambda m: crop_sides(m, 0, 0, 0, 0.10),
    "crop 5% each side": lambda m: crop_sides(m, 0.05, 0.05, 0.05, 0.05),
    "crop 10% corner, resized back": lambda m: np.asarray(
        Image.fromarray(crop_sides(m, 0.10, 0.10, 0, 0)).resize(m.shape[1::-1], Image.BICUBIC)
    ),
    "rotate 2 degrees": lambda m: rotated(m, 2.0),
    "rotate -2 degrees": lambda m: rotated(m, -2.0),
    "crop 5% each side + JPEG 75": lambda m: jpeg(crop_sides(m, 0.05, 0.05, 0.05, 0.05), 75),
}


@pytest.mark.parametrize("attack", GEOMETRIC, ids=list(GEOMETRIC))
def test_payload_survives_crops_and_rotations(marked, attack):
    """The synchronisation template puts a cropped or turned copy back on the canonical grid."""
    for name, (_, m) in marked.items():
        assert watermark.extract(GEOMETRIC[attack](m), KEY)[0] == PAYLOAD, name


def test_without_the_template_a_crop_is_unreadable(photos):
    """What the second component buys: the same mark without it loses a 10 % crop."""
    original = at_1024(photos["astronaut"])
    plain = watermark.Params(sync_strength=0.0)
    m = watermark.embed(original, PAYLOAD, KEY, params=plain)
    crop = crop_sides(m, 0.10, 0, 0, 0)
    assert watermark.extract(m, KEY, params=plain)[0] == PAYLOAD
    assert watermark.extract(crop, KEY, params=plain)[0] is None
    assert watermark.extract(crop, KEY)[0] is None  # the default extractor finds no template
    with_template = watermark.embed(original, PAYLOAD, KEY)
    assert watermark.extract(crop_sides(with_template, 0.10, 0, 0, 0), KEY)[0] == PAYLOAD


def test_unmarked_crops_and_rotations_read_nothing(photos):
    """The synchronisation search runs on these (no plain mark), and still never names a
    payload: a wrong lattice decodes to nothing the BCH code and the CRC accept."""
    for path in photos.values():
        img = np.asarray(Image.open(path).convert("RGB"))
        for variant in (crop_sides(img, 0.1, 0.05, 0, 0), rotated(img, 2.0)):
            assert watermark.extract(variant, KEY) == (None, 0.0), path.name


def test_the_search_finds_crop_offset_scale_and_angle():
    """On a synthetic textured picture of 1100 x 825 pixels: the placement it reports is the
    crop's, to a sixth of a canonical pixel at the centre, and its scale to 0.1 %."""
    import cv2

    from blockimage.watermark import _dwtsvd, _sync

    rng = np.random.default_rng(0)
    base = cv2.GaussianBlur(rng.normal(128, 12, (825, 1100)).astype(np.float32), (0, 0), 1.0)
    luma = base + _dwtsvd.resample(_sync.canvas(KEY, 512) * 1.5, 1100, 825)
    sx, sy = 512 / 1100, 512 / 825
    for left, top in ((0, 0), (3, 1), (51, 40), (110, 82)):
        crop = np.ascontiguousarray(luma[top:, left:])
        found = _sync.locate(crop, KEY)[0]
        # the crop's centre, where the reading is best (an angle a hair off moves the corners)
        cx, cy = crop.shape[1] / 2, crop.shape[0] / 2
        u, v = found.matrix @ np.array([cx, cy, 1.0])
        assert abs((u - (left + cx) * sx + 32) % 64 - 32) < 0.17, (left, top, u)
        assert abs((v - (top + cy) * sy + 32) % 64 - 32) < 0.17, (left, top, v)
        assert found.matrix[0, 0] == pytest.approx(sx, rel=1e-3)
        assert found.matrix[1, 1] == pytest.approx(sy, rel=1e-3)
    # turned by 2 degrees: the rows of the matrix turn with it
    turned = cv2.warpAffine(luma, cv2.getRotationMatrix2D((550, 412), 2.0, 1.0), (1100, 825))
    found = _sync.locate(np.ascontiguousarray(turned[60:-60, 80:-80]), KEY)[0]
    angle = np.degrees(np.arctan2(-found.matrix[0, 1], found.matrix[0, 0]))
    assert abs(abs(angle) - 2.0) < 0.1


def test_readings_that_disagree_on_the_angle_also_get_one_rotation(monkeypatch):
    """A facade's stripes can tilt one axis's reading: when the two axes do not read as one
    rotation, each axis's angle is also tried for both, right after the reading itself and
    with the other axis's stripes kept where they were at the centre."""
    from blockimage.watermark import _sync

    readings = {0: [(12.0, 0.25, 128.0, 3.0)], 1: [(9.0, 0.02, 128.0, 5.0)]}
    calls = []

    def fake_axis(r, seq, length, count, near=None):
        calls.append(r.shape)
        return readings[0 if len(calls) % 2 else 1] if near is None else []

    monkeypatch.setattr(_sync, "_axis", fake_axis)
    luma = np.zeros((600, 800), np.float32)
    found = _sync.locate(luma, KEY)
    assert len(found) == 3 and found[0].z > found[1].z > found[2].z
    centre = np.array([400.0, 300.0, 1.0])
    for variant in found[1:]:
        tilt_u = -variant.matrix[0, 1] / variant.matrix[0, 0]
        tilt_v = -variant.matrix[1, 0] / variant.matrix[1, 1]
        assert tilt_u == pytest.approx(-tilt_v)  # one rotation
        assert variant.matrix @ centre == pytest.approx(found[0].matrix @ centre)
    assert {round(float(np.degrees(np.arctan(-v.matrix[0, 1] / v.matrix[0, 0]))), 2)
            for v in found} == {0.25, -0.02}  # fmt: skip

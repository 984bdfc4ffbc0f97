"""Content Credentials (C2PA, issue 17): our manifest signed into every registered JPEG and
PNG, and any manifest read at verification as evidence beside the verdict. Checked with
c2pa-python (c2pa-rs) as the reader."""

from __future__ import annotations

import base64
import hashlib
import io
import json

import c2pa
import numpy as np
import pytest
from PIL import Image
from tests.conftest import jpeg_bytes, png_bytes

from blockimage import Node
from blockimage.credentials import (
    SOFT_BINDING_ALG,
    make_identity,
    read,
    record_manifest,
    sign,
)


def manifest_of(data: bytes, media_type: str, anchors: str | None = None) -> tuple[str, dict]:
    """(validation state, active manifest) as c2pa-python reads them."""
    settings = {"verify": {"verify_trust": True}}
    if anchors:
        settings["trust"] = {"user_anchors": anchors}
    context = c2pa.Context.from_dict(settings)
    with c2pa.Reader(media_type, io.BytesIO(data), context=context) as reader:
        return reader.get_validation_state(), reader.get_active_manifest()


@pytest.fixture(scope="module")
def registered(tmp_path_factory, photos):
    """A home with a JPEG (rocket) and a PNG (astronaut) registered, their receipts and files."""
    work = tmp_path_factory.mktemp("c2pa")
    node = Node(work / "home")
    found = {}
    for name, media_type in (("rocket", "image/jpeg"), ("astronaut", "image/png")):
        receipt = node.register(photos[name], owner="alice", out=work)
        found[name] = (receipt, open(receipt.output, "rb").read(), media_type)
    yield node, found
    node.close()


@pytest.mark.parametrize("name", ["rocket", "astronaut"])
def test_registered_files_carry_our_signed_manifest(registered, photos, name):
    photos_name = {n: p.name for n, p in photos.items()}
    node, found = registered
    receipt, data, media_type = found[name]
    record = receipt.record
    # the file recorded and stored is the signed one
    assert hashlib.sha256(data).hexdigest() == record.sha256_file
    assert node.get(record.cid) == data
    anchors = node.keys.c2pa_identity().anchor_pem.decode()
    assert manifest_of(data, media_type)[0] == "Valid"  # signature checks, signer not trusted
    state, manifest = manifest_of(data, media_type, anchors)
    assert state == "Trusted"
    assertions = {a["label"]: a["data"] for a in manifest["assertions"]}
    actions = [a["action"] for a in assertions["c2pa.actions.v2"]["actions"]]
    assert actions == ["c2pa.opened", "c2pa.watermarked"]
    binding = assertions["c2pa.soft-binding"]
    assert binding["alg"] == SOFT_BINDING_ALG
    assert base64.b64decode(binding["blocks"][0]["value"]).hex() == record.record_id
    assert assertions["org.blockimage.record"]["record_id"] == record.record_id
    assert assertions["org.blockimage.record"]["log"] == node.ledger_origin
    # the ingredient is the file submitted, by its name
    assert [i["title"] for i in manifest["ingredients"]] == [photos_name[name]]


def test_verify_reports_trusted_credentials_beside_the_verdict(registered):
    node, found = registered
    receipt, data, _ = found["rocket"]
    verdict = node.verify(data)
    assert verdict.verdict == "authentic"
    credentials = verdict.content_credentials
    assert credentials["state"] == "trusted" and credentials["trusted"]
    assert credentials["record_id"] == receipt.record.record_id
    assert credentials["actions"] == ["c2pa.opened", "c2pa.watermarked"]
    assert "a trusted signer" in verdict.explanation[-1]
    assert json.loads(json.dumps(verdict.to_dict()))["content_credentials"] == credentials


def test_changed_pixels_under_the_manifest_are_reported_and_judged_from_the_pixels(registered):
    node, found = registered
    receipt, data, _ = found["rocket"]
    # Flip bytes inside the JPEG's entropy-coded data, after the manifest: the hard binding
    # no longer matches.
    damaged = bytearray(data)
    for at in range(len(data) - 4000, len(data) - 3000, 97):
        damaged[at] ^= 0x11
    verdict = node.verify(bytes(damaged))
    credentials = verdict.content_credentials
    assert credentials["state"] == "invalid" and not credentials["trusted"]
    assert any("dataHash.mismatch" in p["code"] for p in credentials["problems"])
    assert "do not validate" in verdict.explanation[-1]
    assert verdict.verdict in ("benign", "tampered")  # the ledger and pixels decide
    assert verdict.record_id == receipt.record.record_id


def test_a_copy_without_its_manifest_is_still_found_by_the_watermark(registered):
    node, found = registered
    receipt, data, _ = found["rocket"]
    pixels = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    verdict = node.verify(jpeg_bytes(pixels, 85))  # re-encoding strips the manifest
    assert verdict.content_credentials is None
    assert verdict.verdict == "benign" and verdict.matched_by == "watermark"
    assert verdict.record_id == receipt.record.record_id


def test_someone_elses_manifest_is_untrusted_evidence(registered, photos):
    node, _ = registered
    other = make_identity("Another newsroom")
    pixels = np.asarray(Image.open(photos["chelsea"]).convert("RGB"))
    original = jpeg_bytes(pixels, 90)
    manifest = record_manifest(
        record_id="0123456789abcdef", title="cat.jpg", owner="mallory", log_origin="x",
        parent=None,
    )  # fmt: skip
    signed = sign(original, "image/jpeg", manifest, other,
                  submitted=(original, "image/jpeg", "cat.jpg"))  # fmt: skip
    verdict = node.verify(signed)
    assert verdict.verdict == "unknown"
    credentials = verdict.content_credentials
    assert credentials["state"] == "valid" and not credentials["trusted"]
    assert credentials["issuer"] == "Another newsroom"
    assert "does not trust" in verdict.explanation[-1]
    # given its CA as an anchor, the same file is trusted
    assert read(signed, "image/jpeg", anchors=other.anchor_pem.decode())["trusted"]


@pytest.mark.parametrize("where", [20, 60, 200, 600])
def test_a_damaged_manifest_is_invalid_evidence_never_a_traceback(registered, where):
    node, found = registered
    _, data, _ = found["rocket"]
    start = data.index(b"jumb")
    damaged = bytearray(data)
    for at in range(start + where, start + where + 40):
        damaged[at] ^= 0xA5
    verdict = node.verify(bytes(damaged))
    credentials = verdict.content_credentials
    assert credentials is not None and credentials["state"] == "invalid"
    assert credentials["problems"] and not credentials["trusted"]


def test_register_without_credentials(tmp_path, photos):
    with Node(tmp_path / "h") as node:
        receipt = node.register(photos["coffee"], owner="bob", out=tmp_path, c2pa=False)
        data = open(receipt.output, "rb").read()
        assert b"jumb" not in data
        assert node.verify(data).content_credentials is None


def test_a_png_registered_from_an_array_is_signed(tmp_path, photos):
    pixels = np.asarray(Image.open(photos["motorcycle"]).convert("RGB"))
    with Node(tmp_path / "h") as node:
        receipt = node.register(png_bytes(pixels), owner="bob", out=tmp_path)
        data = open(receipt.output, "rb").read()
        verdict = node.verify(data)
    assert verdict.content_credentials["record_id"] == receipt.record.record_id
    assert verdict.content_credentials["trusted"]


def test_a_hostile_signers_odd_assertions_are_read_without_a_traceback(registered, photos):
    """A signer may write anything in its assertions: lists where objects belong, numbers
    where text belongs. The evidence keeps what has the expected form and drops the rest."""
    node, _ = registered
    odd = make_identity("Odd signer")
    plain = jpeg_bytes(np.asarray(Image.open(photos["coffee"]).convert("RGB")), 90)
    manifest = {
        "claim_generator_info": [{"name": "odd"}],
        "title": "odd.jpg",
        "assertions": [
            {"label": "c2pa.actions", "data": {"actions": [{"action": "c2pa.created",
             "digitalSourceType": "http://cv.iptc.org/newscodes/digitalsourcetype/digitalArt"}]}},
            {"label": "org.blockimage.record", "data": {"record_id": 12345}},
            {"label": "com.example.list", "data": {"items": [1, [2], {"3": None}]}},
        ],
    }  # fmt: skip
    import c2pa as lib

    signer = lib.Signer.from_info(lib.C2paSignerInfo(b"es256", odd.chain_pem, odd.key_pem, None))
    out = io.BytesIO()
    with lib.Builder(manifest) as builder:
        builder.sign(signer, "image/jpeg", io.BytesIO(plain), out)
    verdict = node.verify(out.getvalue())
    credentials = verdict.content_credentials
    assert credentials["record_id"] is None  # a number is not a record id
    assert credentials["actions"] == ["c2pa.created"] and credentials["state"] == "valid"

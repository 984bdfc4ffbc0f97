"""Content Credentials (C2PA, issue 17): our manifest signed into every registered JPEG, PNG
and WebP, derivatives' manifests carrying their parent's, a signer of one's own, and any
manifest read at verification as evidence beside the verdict. Checked with c2pa-python
(c2pa-rs) as the reader; tests/test_c2patool.py reads the same files with c2patool."""

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
    FINGERPRINT_ALG,
    SOFT_BINDING_ALG,
    CredentialsError,
    check_identity,
    make_identity,
    manifest_label,
    manifest_store,
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
    assert manifest["label"] == manifest_label(record.record_id)
    assertions = {a["label"]: a["data"] for a in manifest["assertions"]}
    actions = [a["action"] for a in assertions["c2pa.actions.v2"]["actions"]]
    assert actions == ["c2pa.opened", "c2pa.watermarked"]
    bindings = {
        a["data"]["alg"]: base64.b64decode(a["data"]["blocks"][0]["value"]).hex()
        for a in manifest["assertions"]
        if a["label"].startswith("c2pa.soft-binding")
    }
    assert bindings == {SOFT_BINDING_ALG: record.record_id, FINGERPRINT_ALG: record.pdq}
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
        if damaged[at] < 0x80 and damaged[at - 1] != 0xFF:  # never makes a marker
            damaged[at] ^= 0x01
    assert damaged != data
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


def signed_with_store(data: bytes, media_type: str, identity, *, thumbnail: bool):
    """(signed file, manifest store bytes) as c2pa-rs's Builder returns them."""
    manifest = record_manifest(
        record_id="0123456789abcdef", title="t", owner="o", log_origin="x", parent=None
    )
    manifest["assertions"].append({"label": "com.example.pad", "data": {"x": "y" * 70_000}})
    context = c2pa.Context.from_dict({"builder": {"thumbnail": {"enabled": thumbnail}}})
    signer = c2pa.Signer.from_info(
        c2pa.C2paSignerInfo(b"es256", identity.chain_pem, identity.key_pem, None)
    )
    out = io.BytesIO()
    with c2pa.Builder(manifest, context=context) as builder:
        ingredient = {"title": "t", "relationship": "parentOf", "label": "submitted"}
        builder.add_ingredient(ingredient, media_type, io.BytesIO(data))
        store = builder.sign(signer, media_type, io.BytesIO(data), out)
    return out.getvalue(), store


@pytest.mark.parametrize("fmt, media_type", [("JPEG", "image/jpeg"), ("PNG", "image/png"),
                                             ("WEBP", "image/webp")])  # fmt: skip
def test_the_manifest_store_read_from_a_file_is_the_one_signed_into_it(photos, fmt, media_type):
    """The store is what GET /manifests/{id} serves: byte for byte what c2pa-rs wrote, also
    when a JPEG needs several APP11 segments for it (over 64 KB: padded here)."""
    from blockimage.imaging import encode_image

    identity = make_identity()
    pixels = np.asarray(Image.open(photos["coffee"]).convert("RGB"))
    data = encode_image(pixels, fmt)
    assert manifest_store(data) is None
    signed, store = signed_with_store(data, media_type, identity, thumbnail=fmt == "JPEG")
    assert len(store) > 65_535
    assert manifest_store(signed) == store
    assert manifest_store(signed[: len(signed) // 2]) in (None, store)  # truncated: no guess


def test_webp_is_registered_as_lossless_webp_with_credentials(tmp_path, photos):
    pixels = np.asarray(Image.open(photos["chelsea"]).convert("RGB"))
    source = tmp_path / "cat.webp"
    Image.fromarray(pixels).save(source, "WEBP", quality=90)
    with Node(tmp_path / "h") as node:
        receipt = node.register(source, owner="bob", out=tmp_path)
        assert receipt.output.endswith(".bi.webp")
        data = open(receipt.output, "rb").read()
        assert receipt.record.media_type == "image/webp"
        anchors = node.keys.c2pa_identity().anchor_pem.decode()
        state, manifest = manifest_of(data, "image/webp", anchors)
        assert state == "Trusted" and manifest["label"] == manifest_label(receipt.record.record_id)
        verdict = node.verify(data)
        assert verdict.verdict == "authentic" and verdict.content_credentials["trusted"]


def test_a_derivative_carries_its_parents_manifest(tmp_path, photos):
    """register --parent: the parent record's registered file is an ingredient, with the
    parent's own manifest, so a C2PA reader follows the chain back to the registered parent
    even when the derivative was made by a tool that dropped the credentials."""
    with Node(tmp_path / "h") as node:
        parent = node.register(photos["rocket"], owner="alice", out=tmp_path)
        pixels = np.asarray(Image.open(parent.output).convert("RGB"))
        crop = tmp_path / "crop.jpg"
        crop.write_bytes(jpeg_bytes(pixels[40:-40, 60:-60], 90))  # credentials dropped
        child = node.register(crop, owner="alice", parent=parent.record.record_id, out=tmp_path)
        anchors = node.keys.c2pa_identity().anchor_pem.decode()
        data = open(child.output, "rb").read()
    state, manifest = manifest_of(data, "image/jpeg", anchors)
    assert state == "Trusted"
    ingredients = {i["title"]: i for i in manifest["ingredients"]}
    assert ingredients["crop.jpg"]["relationship"] == "parentOf"
    from_parent = ingredients[f"registered parent: record {parent.record.record_id}"]
    assert from_parent["relationship"] == "componentOf"
    assert from_parent["active_manifest"] == manifest_label(parent.record.record_id)
    assertions = {a["label"]: a["data"] for a in manifest["assertions"]}
    assert assertions["org.blockimage.record"]["parent"] == parent.record.record_id


def test_thumbnails_only_when_asked(tmp_path, photos):
    with Node(tmp_path / "h") as node:
        plain = node.register(photos["rocket"], owner="alice", out=tmp_path / "a")
        thumbs = node.register(photos["coffee"], owner="alice", out=tmp_path / "b", thumbnail=True)
        _, without = manifest_of(open(plain.output, "rb").read(), "image/jpeg")
        _, with_them = manifest_of(open(thumbs.output, "rb").read(), "image/png")
    assert "thumbnail" not in without and "thumbnail" in with_them


def test_init_imports_a_signer_of_ones_own(tmp_path, photos):
    from click.testing import CliRunner

    from blockimage.cli import cli

    mine = make_identity("Newsroom X")
    (tmp_path / "key.pem").write_bytes(mine.key_pem)
    (tmp_path / "chain.pem").write_bytes(mine.chain_pem)
    (tmp_path / "wrong.pem").write_bytes(make_identity().key_pem)
    home = str(tmp_path / "home")
    runner = CliRunner()

    def init(key: str, home: str = home):
        args = ["--home", home, "init", "--c2pa-key", str(tmp_path / key)]
        return runner.invoke(cli, [*args, "--c2pa-chain", str(tmp_path / "chain.pem")])

    refused = init("wrong.pem", str(tmp_path / "other"))
    assert refused.exit_code == 1 and "does not belong to the chain" in refused.output
    assert not (tmp_path / "other" / "keys" / "c2pa").exists()
    assert init("key.pem").exit_code == 0
    assert init("key.pem").exit_code == 0  # the same signer again: nothing to do
    again = init("wrong.pem")
    assert again.exit_code == 1
    with Node(home) as node:
        receipt = node.register(photos["rocket"], owner="alice", out=tmp_path)
        verdict = node.verify(open(receipt.output, "rb").read())
    credentials = verdict.content_credentials
    assert credentials["trusted"] and credentials["issuer"] == "Newsroom X"
    # a home that made its own signer keeps it
    replaced = runner.invoke(cli, ["--home", home, "init", "--c2pa-key", str(tmp_path / "key.pem"),
                                   "--c2pa-chain", str(tmp_path / "chain.pem")])  # fmt: skip
    assert replaced.exit_code == 0


def test_a_chain_c2pa_refuses_is_refused_at_import():
    """A self-signed certificate (a CA signing its own claims) cannot sign C2PA claims."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "self")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(1).not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=30)).sign(key, hashes.SHA256())
    )  # fmt: skip
    pem = serialization.Encoding.PEM
    key_pem = key.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(CredentialsError, match="end-entity certificate"):
        check_identity(key_pem, cert.public_bytes(pem), None)


@pytest.mark.parametrize("fmt, media_type", [("JPEG", "image/jpeg"), ("PNG", "image/png")])
def test_signing_keeps_the_coded_image_byte_for_byte(photos, fmt, media_type):
    """What lets registration skip decoding the signed file: c2pa-rs adds its containers
    and leaves every other segment or chunk as it was; a changed byte of the coded data, or
    another format, is "not the same" (and registration then compares decoded pixels)."""
    from blockimage.imaging import encode_image, same_image_data

    pixels = np.asarray(Image.open(photos["coffee"]).convert("RGB"))[:200, :300]
    data = encode_image(pixels, fmt)
    signed, _ = signed_with_store(data, media_type, make_identity(), thumbnail=False)
    assert signed != data and same_image_data(data, signed, fmt)
    changed = bytearray(signed)
    changed[-40] ^= 0x01  # in the scan (JPEG) or the image data (PNG)
    assert not same_image_data(data, bytes(changed), fmt)
    for cut in (len(signed) // 2, 5, 2):
        assert not same_image_data(data, signed[:cut], fmt)
    assert not same_image_data(data, signed, "WEBP")

"""C2PA soft-binding resolution: the resolver over a node, and `serve`'s Soft Binding
Resolution API driven by a client written from the C2PA specification (tests/c2pa_sbr.py), as
a C2PA tool that met a copy of our file with its credentials stripped would use it."""

from __future__ import annotations

import base64
import io

import c2pa
import httpx
import numpy as np
import pdqhash
import pytest
from PIL import Image
from tests.c2pa_sbr import SoftBindingClient, SoftBindingError
from tests.conftest import jpeg_bytes

from blockimage import Node
from blockimage.credentials import (
    FINGERPRINT_ALG,
    SOFT_BINDING_ALG,
    manifest_label,
    manifest_store,
    record_of_manifest,
)
from blockimage.errors import InvalidInputError
from blockimage.resolution import ManifestNotFoundError


def stripped(data: bytes, quality: int = 85) -> bytes:
    """The picture re-encoded by Pillow: what a platform that drops metadata serves."""
    pixels = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    out = jpeg_bytes(pixels, quality)
    assert manifest_store(out) is None
    return out


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def third_party_pdq(data: bytes) -> bytes:
    """PDQ as any tool computes it: the pdqhash package on the full-size picture."""
    pixels = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    bits, _ = pdqhash.compute(pixels)
    return np.packbits(bits.astype(np.uint8)).tobytes()


def test_manifest_ids_carry_their_record_id():
    for record_id in ("0123456789abcdef", "ffffffffffffffff", "0000000000000000"):
        label = manifest_label(record_id)
        assert label.startswith("urn:c2pa:") and record_of_manifest(label) == record_id
    assert record_of_manifest("urn:c2pa:3fad1ead-8ed5-44d0-873b-ea5f58adea82") is None
    assert record_of_manifest(manifest_label("0123456789abcdef") + "x") is None


@pytest.fixture(scope="module")
def resolver_home(tmp_path_factory, photos):
    """Two registrations with credentials (a JPEG, a PNG) and one without."""
    work = tmp_path_factory.mktemp("resolve")
    node = Node(work / "home")
    signed = node.register(photos["rocket"], owner="alice", out=work)
    png = node.register(photos["astronaut"], owner="alice", out=work)
    bare = node.register(photos["coffee"], owner="alice", out=work, c2pa=False)
    yield node, signed, png, bare
    node.close()


def test_resolver_by_binding_and_by_content(resolver_home):
    node, signed, png, bare = resolver_home
    resolver = node.resolver
    for receipt in (signed, png):
        record = receipt.record
        label = manifest_label(record.record_id)
        found = resolver.by_binding(SOFT_BINDING_ALG, b64(bytes.fromhex(record.record_id)))
        assert [(m.manifest_id, m.similarity) for m in found] == [(label, 100)]
        found = resolver.by_binding(FINGERPRINT_ALG, b64(bytes.fromhex(record.pdq)))
        assert found[0].manifest_id == label and found[0].similarity == 100
        copy = stripped(open(receipt.output, "rb").read())
        by_mark = resolver.by_content(node.load(copy), SOFT_BINDING_ALG)
        assert [m.manifest_id for m in by_mark] == [label]
        assert resolver.by_content(node.load(copy))[0].manifest_id == label
        store = resolver.manifest(label)
        assert store == manifest_store(open(receipt.output, "rb").read())
    # a record registered without credentials has no manifest to recover
    record = bare.record
    assert resolver.by_binding(SOFT_BINDING_ALG, b64(bytes.fromhex(record.record_id))) == []
    with pytest.raises(ManifestNotFoundError):
        resolver.manifest(manifest_label(record.record_id))
    with pytest.raises(ManifestNotFoundError):
        resolver.manifest("urn:c2pa:3fad1ead-8ed5-44d0-873b-ea5f58adea82")
    # unknown algorithm, not base64, wrong length: refused, never guessed
    for alg, value in (
        ("com.example.other", b64(b"12345678")),
        (SOFT_BINDING_ALG, "not base64!"),
        (SOFT_BINDING_ALG, b64(b"1234")),
        (FINGERPRINT_ALG, b64(b"12345678")),
    ):
        with pytest.raises(InvalidInputError):
            resolver.by_binding(alg, value)


def test_resolver_answers_nothing_for_an_unrelated_picture(resolver_home, photos):
    node, *_ = resolver_home
    unrelated = node.load(photos["chelsea"])
    assert node.resolver.by_content(unrelated) == []


@pytest.fixture(scope="module")
def sbr(server):
    client = SoftBindingClient(server.url)
    yield client
    client.close()


def test_spec_client_recovers_the_manifest_of_a_stripped_copy(server, sbr):
    record = server.receipt.record
    registered = httpx.get(f"{server.url}/api/ipfs/{record.cid}").content
    copy = stripped(registered)

    algorithms = sbr.supported_algorithms()
    assert SOFT_BINDING_ALG in algorithms["watermarks"]
    assert FINGERPRINT_ALG in algorithms["fingerprints"]

    # the tool holds only the stripped copy: it asks by content ...
    matches = sbr.by_content(copy, "image/jpeg")
    assert matches and matches[0]["similarityScore"] == 100
    manifest_id = matches[0]["manifestId"]
    assert sbr.by_content(copy, "image/jpeg", alg=SOFT_BINDING_ALG)[0]["manifestId"] == manifest_id
    assert sbr.by_content(copy, "image/jpeg", alg=FINGERPRINT_ALG)[0]["manifestId"] == manifest_id
    # ... or by a PDQ hash it computed itself, full size, with another PDQ implementation
    value = third_party_pdq(copy)
    for post in (False, True):
        found = sbr.by_binding(FINGERPRINT_ALG, value, post=post, max_results=5)
        assert [m["manifestId"] for m in found] == [manifest_id]
        assert 88 <= found[0]["similarityScore"] <= 100  # within PDQ's 31-bit match threshold

    # ... then fetches the manifest store, which c2pa-rs validates with the registered file
    store = sbr.manifest(manifest_id)
    assert store == manifest_store(registered)
    with c2pa.Reader("application/c2pa", io.BytesIO(store)) as reader:
        manifest = reader.get_active_manifest()
    assert manifest["label"] == manifest_id
    assertions = {a["label"]: a["data"] for a in manifest["assertions"]}
    assert assertions["org.blockimage.record"]["record_id"] == record.record_id
    with c2pa.Reader("image/png", io.BytesIO(registered), store) as reader:
        assert reader.get_validation_state() == "Valid"  # signed; the signer is not a root here
    # the record the manifest names says who registered it, with a checkable proof
    found = httpx.get(f"{server.url}/api/records/{record.record_id}").json()
    assert found["record"]["owner"] == "alice"

    # the watermark value names the same manifest (a tool that holds the key reads it)
    assert (
        sbr.by_binding(SOFT_BINDING_ALG, bytes.fromhex(record.record_id))[0]["manifestId"]
        == manifest_id
    )


def test_spec_client_is_refused_clearly(server, sbr, photos):
    assert sbr.by_binding(SOFT_BINDING_ALG, b"\x00" * 8) == []  # no such record: no match
    unrelated = open(photos["chelsea"], "rb").read()
    assert sbr.by_content(unrelated, "image/png") == []
    for call, status in (
        (lambda: sbr.by_binding("com.example.unknown", b"12345678"), 400),
        (lambda: sbr.by_binding(SOFT_BINDING_ALG, b"1234"), 400),
        (lambda: sbr.by_binding(SOFT_BINDING_ALG, b"\x00" * 8, max_results=0), 400),
        (lambda: sbr.by_content(b"not an image", "image/jpeg"), 415),
        (lambda: sbr.by_content(unrelated, "text/plain"), 415),
        (lambda: sbr.manifest("urn:c2pa:3fad1ead-8ed5-44d0-873b-ea5f58adea82"), 404),
        (lambda: sbr.manifest(manifest_label("0" * 16)), 404),
    ):
        with pytest.raises(SoftBindingError) as refused:
            call()
        assert refused.value.status == status
    answer = httpx.get(
        f"{server.url}/matches/byBinding", params={"alg": SOFT_BINDING_ALG, "value": "%%%"}
    )
    assert answer.status_code == 400 and "base64" in answer.json()["error"]
    answer = httpx.post(f"{server.url}/matches/byBinding", content=b"[1, 2]")
    assert answer.status_code == 400 and "error" in answer.json()

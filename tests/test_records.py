"""Canonical JSON and Ed25519 signatures of records."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from blockimage.records import (
    InvalidRecordSignatureError,
    Record,
    RecordFormatError,
    Tag,
    WatermarkMetrics,
    canonical_json,
    sign_record,
    verify_record_signature,
)


def make_record(key: Ed25519PrivateKey, **changes) -> Record:
    base = Record(
        record_id="0123456789abcdef",
        owner="alice",
        owner_key=key.public_key().public_bytes_raw().hex(),
        created_at="2026-11-25T00:00:00Z",
        sha256_file="a" * 64,
        sha256_pixels="b" * 64,
        original_sha256_file="c" * 64,
        pdq="d" * 64,
        pdq_quality=100,
        cid="bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4",
        width=640,
        height=480,
        media_type="image/png",
        tags=(Tag("espresso", 0.94),),
        watermark=WatermarkMetrics(44.1, 0.991, 1.0),
    )
    return replace(base, **changes)


def test_canonical_json_sorts_keys_and_keeps_utf8():
    assert canonical_json({"b": 1, "a": ["é", None, 1.5]}) == '{"a":["é",null,1.5],"b":1}'.encode()


def test_canonical_json_writes_numbers_as_python_does_not_as_rfc_8785():
    # records.py says so: the signatures of existing records cover these bytes. RFC 8785
    # would write 1 and 100000000000000000000 where Python writes 1.0 and 1e+20.
    assert canonical_json({"b": 1.0, "a": 1e20}) == b'{"a":1e+20,"b":1.0}'


def test_canonical_json_refuses_nan():
    with pytest.raises(ValueError):
        canonical_json({"x": float("nan")})


def test_signed_record_verifies_and_round_trips_through_its_leaf():
    key = Ed25519PrivateKey.generate()
    signed = sign_record(make_record(key), key)
    verify_record_signature(signed)
    again = Record.from_leaf(signed.leaf_bytes())
    assert again == signed
    assert again.leaf_bytes() == signed.leaf_bytes()


def test_changing_any_signed_field_breaks_the_signature():
    key = Ed25519PrivateKey.generate()
    signed = sign_record(make_record(key), key)
    for change in ({"owner": "mallory"}, {"cid": "x"}, {"tags": ()}, {"pdq_quality": 99}):
        with pytest.raises(InvalidRecordSignatureError, match="does not verify"):
            verify_record_signature(replace(signed, **change))


def test_signing_with_a_key_that_is_not_the_owner_key_is_refused():
    key, other = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    with pytest.raises(ValueError, match="owner_key"):
        sign_record(make_record(key), other)


def test_malformed_record_documents_are_rejected():
    key = Ed25519PrivateKey.generate()
    doc = sign_record(make_record(key), key).to_dict()
    del doc["cid"]
    with pytest.raises(RecordFormatError, match="missing fields: cid"):
        Record.from_dict(doc)
    with pytest.raises(RecordFormatError, match="record_id"):
        Record.from_dict({**sign_record(make_record(key), key).to_dict(), "record_id": "XYZ"})
    with pytest.raises(RecordFormatError, match="not a JSON record"):
        Record.from_leaf(b"\xff\xfe")


def test_receipts_round_trip_with_either_kind_of_ledger_proof():
    from blockimage.records import FabricProof, LogProof, Receipt

    key = Ed25519PrivateKey.generate()
    record = sign_record(make_record(key), key)
    merkle = LogProof(0, 1, "ab" * 32, (), record.leaf_bytes(), "note")
    fabric = FabricProof(
        "blockimage", "blockimage", "cd" * 32, 7, "VALID", record.leaf_bytes(), "Org1MSP", "ef" * 32
    )
    for proof in (merkle, fabric):
        receipt = Receipt(record, proof, None)
        again = Receipt.from_dict(json.loads(json.dumps(receipt.to_dict())))
        assert again == receipt and type(again.log) is type(proof)
    assert "ledger" not in merkle.to_dict()  # the contract's Merkle shape is unchanged
    assert fabric.to_dict()["ledger"] == "fabric"

"""Canonical JSON and Ed25519 signatures of records."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import rfc8785
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from blockimage.records import (
    InvalidRecordSignatureError,
    Record,
    RecordFormatError,
    Tag,
    WatermarkMetrics,
    canonical_json,
    jcs,
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


# -- RFC 8785 (records of format version 2) -------------------------------------------------------
def test_jcs_reproduces_the_rfc_8785_examples():
    # RFC 8785 section 3.2.2 (sorting, literals, numbers, string escapes), and appendix B values.
    doc = {
        "numbers": [333333333.33333329, 1e30, 4.50, 2e-3, 0.000000000000000000000000001],
        "string": "\u20ac$\u000f\u000aA'\u0042\u0022\u005c\\\"/",
        "literals": [None, True, False],
    }
    expected = (
        '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
        '"string":"\u20ac$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
    )
    assert jcs(doc) == expected.encode("utf-8")
    for number, text in [
        (0.0, "0"), (-0.0, "0"), (1.0, "1"), (9007199254740992.0, "9007199254740992"),
        (1e21, "1e+21"), (1e-7, "1e-7"), (0.000001, "0.000001"), (123456789012345680000.0,
        "123456789012345680000"), (5e-324, "5e-324"), (1.7976931348623157e308,
        "1.7976931348623157e+308"), (295147905179352830000.0, "295147905179352830000"),
    ]:  # fmt: skip
        assert jcs([number]) == f"[{text}]".encode(), number
    # Keys are sorted by UTF-16 code units: U+1F600 (surrogates D83D DE00) before U+E000,
    # the reverse of code point order.
    assert jcs({"\ue000": 2, "\U0001f600": 1}) == '{"\U0001f600":1,"\ue000":2}'.encode()
    with pytest.raises(ValueError):  # beyond I-JSON's exact integers
        jcs({"n": 2**53})


@given(
    st.recursive(
        st.none()
        | st.booleans()
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.integers(-(2**53) + 1, 2**53 - 1)
        | st.text(),
        lambda children: (
            st.lists(children, max_size=4)
            | st.dictionaries(st.text(max_size=6), children, max_size=4)
        ),
        max_leaves=12,
    )
)
def test_jcs_agrees_with_the_rfc8785_package(value):
    assert jcs(value) == rfc8785.dumps(value)


def test_a_new_record_is_signed_over_its_rfc_8785_bytes():
    key = Ed25519PrivateKey.generate()
    record = sign_record(make_record(key, watermark=WatermarkMetrics(46.0, 0.99, 1.0)), key)
    assert record.version == 2
    d = record.to_dict()
    assert d["version"] == 2
    assert record.leaf_bytes() == rfc8785.dumps(d)  # the leaf is JCS ...
    assert b'"psnr":46,' in record.leaf_bytes()  # ... 46 where json.dumps writes 46.0
    unsigned = {k: v for k, v in d.items() if k != "signature"}
    key.public_key().verify(bytes.fromhex(record.signature), rfc8785.dumps(unsigned))
    again = Record.from_leaf(record.leaf_bytes())  # 46 comes back an int; the bytes do not move
    assert again.leaf_bytes() == record.leaf_bytes()
    verify_record_signature(again)


def test_a_version_1_record_holding_1_0_still_verifies_in_its_own_encoding():
    key = Ed25519PrivateKey.generate()
    old = sign_record(make_record(key, version=1, watermark=WatermarkMetrics(46.0, 1.0, 1.0)), key)
    leaf = old.leaf_bytes()
    assert b'"version"' not in leaf and b'"psnr":46.0' in leaf and b'"nc":1.0' in leaf
    parsed = Record.from_leaf(leaf)
    assert parsed.version == 1 and parsed.leaf_bytes() == leaf
    verify_record_signature(parsed)
    with pytest.raises(InvalidRecordSignatureError):  # the same fields under version 2 bytes
        verify_record_signature(replace(parsed, version=2))
    with pytest.raises(RecordFormatError, match="version"):
        Record.from_dict({**old.to_dict(), "version": 3})

"""Fabric for real: the chaincode's own validation, concurrency, events, errors, the peer CLI,
and a node registering and verifying images on a Fabric ledger (scripts/fabric-network.sh)."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import tarfile
import threading
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from fabric_protos.common import common_pb2
from PIL import Image
from tests.conftest import ROOT, FabricNetwork, jpeg_bytes
from tests.test_ledger_contract import OWNER, fresh

from blockimage import Node
from blockimage.cli import cli
from blockimage.errors import DuplicateContentError
from blockimage.ledger import (
    AuditFailure,
    DuplicateRecordError,
    LedgerError,
    RecordNotFoundError,
)
from blockimage.ledger.fabric import FabricLedger, refusal_error
from blockimage.ledger.gateway import (
    CommitError,
    EndorsementError,
    Gateway,
    GatewayError,
    GatewayUnavailableError,
    find_transaction,
)
from blockimage.records import FabricProof, canonical_json, sign_record


@pytest.fixture
def ledger(fabric):
    lg = FabricLedger(fabric.settings())
    yield lg
    lg.close()


@pytest.fixture
def gateway(fabric):
    gw = fabric.settings().connect()
    yield gw
    gw.close()


def submit_raw(gateway: Gateway, leaf: bytes, when: str | None = None):
    stamp = (
        datetime.strptime(when, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc) if when else None
    )
    return gateway.submit("RegisterRecord", leaf, when=stamp)


# -- validation in the contract (bypassing the client's own checks) --------------------------------
def test_the_chaincode_accepts_a_valid_record_sent_raw(gateway):
    record = fresh()
    committed = submit_raw(gateway, record.leaf_bytes(), record.created_at)
    assert json.loads(committed.result)["record_id"] == record.record_id
    assert gateway.evaluate("GetRecord", record.record_id) == record.leaf_bytes()


@pytest.mark.parametrize(
    "breakage, message",
    [
        (lambda r: replace(r, owner="mallory").leaf_bytes(), "signature does not verify"),
        (lambda r: json.dumps(r.to_dict(), sort_keys=True).encode(), "not in canonical form"),
        (lambda r: canonical_json({k: v for k, v in r.to_dict().items() if k != "cid"}), '"cid"'),
        (
            lambda r: sign_record(replace(r, pdq_quality=101, signature=""), OWNER).leaf_bytes(),
            "pdq_quality",
        ),
        (
            lambda r: sign_record(
                replace(r, parent="00000000deadbeef", signature=""), OWNER
            ).leaf_bytes(),
            "parent record 00000000deadbeef does not exist",
        ),
        (lambda r: b"[1, 2]", "not an object"),
    ],
    ids=[
        "forged-signature",
        "not-canonical",
        "missing-field",
        "bad-range",
        "no-parent",
        "not-object",
    ],
)
def test_the_chaincode_refuses_invalid_records(gateway, breakage, message):
    record = fresh()
    with pytest.raises(EndorsementError, match=message):
        submit_raw(gateway, breakage(record), record.created_at)


def test_the_chaincode_takes_the_time_from_the_transaction(gateway):
    record = fresh()
    # created_at must equal the transaction's timestamp ...
    other = (datetime.now(timezone.utc) - timedelta(seconds=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    with pytest.raises(EndorsementError, match="is not the transaction's time"):
        submit_raw(gateway, record.leaf_bytes(), other)
    # ... and the transaction's timestamp must be close to the peer's clock.
    old = fresh(created_at="2020-01-01T00:00:00Z")
    with pytest.raises(EndorsementError, match="away from the peer's clock"):
        submit_raw(gateway, old.leaf_bytes(), old.created_at)


def test_the_chaincode_refuses_content_already_registered_under_another_id(ledger):
    first = fresh()
    ledger.append(first)
    copy = fresh(sha256_pixels=first.sha256_pixels)
    with pytest.raises(
        DuplicateContentError, match=f"already registered as record {first.record_id}"
    ):
        ledger.append(copy)


@pytest.mark.parametrize(
    "message, kind",
    [
        ("NOT_FOUND: record 00000000deadbeef not found", RecordNotFoundError),
        ("EXISTS: record 00000000deadbeef already exists", DuplicateRecordError),
        ("DUPLICATE_CONTENT: record x: content ... is already registered", DuplicateContentError),
        ("FORBIDDEN: event on record x is not signed by its current owner", LedgerError),
        ('INVALID: field "cid" is missing or not a string', LedgerError),
        # The peer's own words, not the contract's: never guessed from "not found".
        ("chaincode definition for 'blockimage' not found", LedgerError),
    ],
)
def test_refusals_become_errors_by_their_code_not_their_wording(message, kind):
    error = refusal_error(EndorsementError(message), "GetRecord")
    assert type(error) is kind
    code, _, text = message.partition(": ")
    assert text in str(error) and not str(error).startswith(code)


# -- concurrency --------------------------------------------------------------------------------
def test_concurrent_registrations_all_commit_in_one_log(fabric):
    ledgers = [FabricLedger(fabric.settings()) for _ in range(6)]
    before = ledgers[0].size()
    records = [[fresh() for _ in range(4)] for _ in ledgers]
    errors: list[BaseException] = []

    def work(lg, batch):
        try:
            for r in batch:
                lg.append(r)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=p) for p in zip(ledgers, records, strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    listed = list(ledgers[0].records(before))
    assert [i for i, _ in listed] == list(range(before, before + 24))
    assert {r.record_id for _, r in listed} == {r.record_id for b in records for r in b}
    for lg in ledgers:
        lg.close()


def test_a_write_conflict_is_retried_and_the_same_record_commits_once(fabric):
    # Two submitters send the same record at the same moment: both endorsements read "no such
    # record" (each waits for the other's endorsement before it submits, so the race is the
    # same every time), the second transaction to commit is invalidated by an MVCC read
    # conflict, and the client retries it with a fresh proposal, which the chaincode then
    # refuses as a duplicate.
    ledgers = [FabricLedger(fabric.settings()) for _ in range(2)]
    conflicts: list[CommitError] = []
    both_endorsed = threading.Barrier(2, timeout=60)

    class EndorseTogether:
        """The gateway's stub, except that the first endorsement waits for the other's."""

        def __init__(self, stub):
            self.stub, self.first = stub, True

        def Endorse(self, *args, **kwargs):  # noqa: N802 (the gRPC method's name)
            endorsed = self.stub.Endorse(*args, **kwargs)
            if self.first:
                self.first = False
                both_endorsed.wait()
            return endorsed

        def __getattr__(self, name):
            return getattr(self.stub, name)

    for lg in ledgers:
        lg._gateway._stub = EndorseTogether(lg._gateway._stub)
        submit = lg._gateway.submit

        def spy(*args, _submit=submit, **kwargs):
            try:
                return _submit(*args, **kwargs)
            except CommitError as exc:
                conflicts.append(exc)
                raise

        lg._gateway.submit = spy
    record = fresh()
    outcomes: list[object] = []

    def work(lg):
        try:
            outcomes.append(lg.append(record))
        except DuplicateRecordError as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=work, args=(lg,)) for lg in ledgers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert sorted(type(o).__name__ for o in outcomes) == ["DuplicateRecordError", "FabricProof"]
    assert ledgers[0].find_by_sha256(record.sha256_file) == [record]
    assert len(conflicts) == 1 and conflicts[0].conflict
    assert "MVCC_READ_CONFLICT" in str(conflicts[0])
    for lg in ledgers:
        lg.close()


# -- events: transfers and notes, signed by the current owner ------------------------------------
# -- errors ---------------------------------------------------------------------------------------
def test_a_network_that_is_down_gives_a_clear_error_quickly(fabric):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = fabric.settings()
    settings.gateway = f"127.0.0.1:{port}"
    lg = FabricLedger(settings)
    with pytest.raises(GatewayUnavailableError, match=f"127.0.0.1:{port}"):
        lg.size()
    lg.close()


def test_missing_identity_files_are_named(fabric, tmp_path):
    settings = fabric.settings()
    settings.key = tmp_path / "nope.pem"
    with pytest.raises(Exception, match="nope.pem"):
        FabricLedger(settings)


def test_a_receipt_that_does_not_match_the_block_fails_the_check(ledger, monkeypatch):
    record = fresh()
    ledger.append(record)
    real = ledger._evaluate

    def forged(function, *args):
        data = real(function, *args)
        return (
            data.replace(b'"owner":"alice"', b'"owner":"mallo"')
            if function == "GetRecord"
            else data
        )

    monkeypatch.setattr(ledger, "_evaluate", forged)
    with pytest.raises(AuditFailure, match="did not write these bytes"):
        ledger.proof(record.record_id)


def test_the_block_data_hash_is_recomputed_from_the_block(ledger):
    """The proof's block_data_hash is the header's; the check recomputes it from the block's
    envelopes (Fabric's ComputeBlockDataHash), so a peer that edits a transaction is caught."""
    record = fresh()
    proof = ledger.append(record)
    block = ledger._gateway.block_by_tx_id(proof.tx_id)
    assert hashlib.sha256(b"".join(block.data.data)).hexdigest() == proof.block_data_hash
    edited = common_pb2.Block()
    edited.CopyFrom(block)
    envelope = bytearray(edited.data.data[0])
    envelope[-1] ^= 1
    edited.data.data[0] = bytes(envelope)
    with pytest.raises(GatewayError, match="not to the header's data hash"):
        find_transaction(edited, proof.tx_id, ledger.settings.chaincode)
    assert find_transaction(block, proof.tx_id, ledger.settings.chaincode).position >= 0


# -- the peer CLI and the package -----------------------------------------------------------------
def test_peer_cli_prints_the_record(fabric, ledger):
    record = fresh()
    ledger.append(record)
    env = {**os.environ, **fabric.env, "PATH": f"{fabric.bin}:{os.environ['PATH']}"}
    out = subprocess.run(
        [
            "peer",
            "chaincode",
            "query",
            "-C",
            fabric.env["FABRIC_CHANNEL"],
            "-n",
            "blockimage",
            "-c",
            json.dumps({"Args": ["GetRecord", record.record_id]}),
        ],
        env=env,
        check=True,
        capture_output=True,
    ).stdout
    assert out.strip() == record.leaf_bytes()


def test_package_builds_a_ccaas_chaincode_package(tmp_path):
    out = tmp_path / "cc.tar.gz"
    subprocess.run(
        [str(ROOT / "scripts/fabric-network.sh"), "package", "cc.example.org:9999", str(out)],
        check=True,
        capture_output=True,
    )
    with tarfile.open(out) as outer:
        meta = json.load(outer.extractfile("metadata.json"))
        inner = tarfile.open(fileobj=outer.extractfile("code.tar.gz"))
        connection = json.load(inner.extractfile("connection.json"))
    assert meta == {"type": "ccaas", "label": "blockimage_1"}
    assert connection["address"] == "cc.example.org:9999"


# -- a node on Fabric ------------------------------------------------------------------------------
def test_a_node_registers_and_verifies_on_fabric(fabric, photo_file, tmp_path, monkeypatch):
    for name, value in fabric.node_env().items():
        monkeypatch.setenv(name, value)
    runner = CliRunner()
    home = tmp_path / "home"
    src = photo_file("coffee")
    result = runner.invoke(
        cli,
        [
            "--home",
            str(home),
            "--json",
            "register",
            str(src),
            "--owner",
            "alice",
            "--out",
            str(tmp_path / "out"),
        ],
    )
    assert result.exit_code == 0, result.output
    receipt = json.loads(result.output)
    receipt = receipt[0] if isinstance(receipt, list) else receipt
    assert receipt["log"]["ledger"] == "fabric" and receipt["log"]["validation_code"] == "VALID"
    marked = Path(receipt["output"])

    with Node(home) as node:
        assert isinstance(node.ledger, FabricLedger)
        pixels = np.array(Image.open(marked).convert("RGB"))
        edited = pixels.copy()
        edited[100:160, 200:280] = [250, 20, 20]
        tampered = tmp_path / "tampered.jpg"
        tampered.write_bytes(jpeg_bytes(edited, 92))
        verdict = node.verify(tampered)
        assert verdict.verdict == "tampered" and verdict.record_id == receipt["record_id"]
        assert isinstance(verdict.record.log, FabricProof)
        assert verdict.record.log.tx_id == receipt["log"]["tx_id"]
    report = tmp_path / "report.html"
    result = runner.invoke(
        cli, ["--home", str(home), "verify", str(marked), "--report", str(report)]
    )
    assert result.exit_code == 0 and "AUTHENTIC" in result.output
    page = report.read_text()
    assert receipt["log"]["tx_id"] in page and "Hyperledger Fabric" in page
    result = runner.invoke(cli, ["--home", str(home), "history", receipt["record_id"]])
    assert result.exit_code == 0 and receipt["record_id"] in result.output
    result = runner.invoke(
        cli, ["--home", str(home), "export", receipt["record_id"], "-o", str(tmp_path / "b.car")]
    )
    assert result.exit_code == 1 and "Merkle log proof" in result.output


def test_audit_on_fabric_checks_every_record_and_image(tmp_path, photo_file, monkeypatch):
    # A network of its own: audit needs every record's image in this node's store.
    network = FabricNetwork(tmp_path / "net")
    try:
        for name, value in network.node_env().items():
            monkeypatch.setenv(name, value)
        home = tmp_path / "home"
        with Node(home) as node:
            for name in ("astronaut", "rocket"):
                node.register(photo_file(name), owner="alice", out=tmp_path / "out")
        result = CliRunner().invoke(cli, ["--home", str(home), "audit"])
        assert result.exit_code == 0, result.output
        assert "ok: 2 records, 0 checkpoints, 2 stored images verified" in result.output
        assert "Fabric channel blockimage" in result.output
        # An image missing from the store is named.
        with Node(home) as node:
            cid = next(node.ledger.records())[1].cid
        for block in (home / "blocks").rglob("*"):
            if block.is_file() and cid in block.name:
                block.unlink()
        result = CliRunner().invoke(cli, ["--home", str(home), "audit"])
        assert result.exit_code == 1 and cid in result.output
    finally:
        network.stop()


def test_gateway_signatures_are_low_s_and_verify(gateway, fabric):
    # Fabric rejects ECDSA signatures whose S is in the upper half of the group order; about
    # half of raw signatures are, so 64 messages would catch a missing normalisation.
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    n = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
    cert = x509.load_pem_x509_certificate(fabric.settings().cert.read_bytes())
    for i in range(64):
        message = f"message {i}".encode()
        signature = gateway.sign(message)
        assert decode_dss_signature(signature)[1] <= n // 2
        cert.public_key().verify(signature, message, ec.ECDSA(hashes.SHA256()))


# -- several nodes, one ledger ---------------------------------------------------------------------
def test_two_nodes_share_a_channel_and_a_kubo_store_and_each_catches_up(
    fabric, kubo, tmp_path, photo_file, monkeypatch
):
    """Node B never saw A's registrations: its own derived indexes catch up from the channel
    (PDQ from the records, keypoints from the images in the shared Kubo store)."""
    for name, value in fabric.node_env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("BLOCKIMAGE_STORAGE", "kubo")
    monkeypatch.setenv("BLOCKIMAGE_KUBO_API", kubo.api)
    with Node(tmp_path / "a") as node_a:
        receipt = node_a.register(photo_file("chelsea"), owner="agency", out=tmp_path / "out")
    img = np.asarray(Image.open(receipt.output).convert("RGB"))
    h, w = img.shape[:2]
    crop = np.ascontiguousarray(img[int(h * 0.1) :, : w - int(w * 0.1)])
    rotated = np.asarray(Image.fromarray(img).rotate(1, Image.Resampling.BICUBIC))
    lines = []
    with Node(tmp_path / "b", progress=lines.append) as node_b:
        by_features = node_b.verify(jpeg_bytes(crop, 85))
        by_pdq = node_b.verify(jpeg_bytes(rotated, 85))
        for matcher in node_b.matchers[2:]:  # PDQ and keypoints: both followed the channel
            assert matcher.index().state()[0] == node_b.ledger.size()
    assert (by_features.matched_by, by_features.record_id) == (
        "keypoints",
        receipt.record.record_id,
    )
    assert (by_pdq.matched_by, by_pdq.record_id) == ("pdq", receipt.record.record_id)
    assert not (tmp_path / "b" / "blocks").exists()  # B stored nothing of its own

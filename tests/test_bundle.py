"""Evidence bundles (CARv1): export, offline verification, tampering, and `ipfs dag import`."""

from __future__ import annotations

import json
import os
from dataclasses import replace

import dag_cbor
import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from blockimage.bundle import InvalidBundleError, make_bundle, verify_bundle
from blockimage.cli import cli
from blockimage.ledger.log import MerkleLog
from blockimage.ledger.proofs import log_origin, note_verifier_key
from blockimage.records import sign_record
from blockimage.storage.car import read_car, write_car


@pytest.fixture
def bundle(node, photo_file):
    receipt = node.register(photo_file("coffee"), owner="alice")
    node.register(photo_file("chelsea"), owner="bob")  # a second leaf: a real inclusion path
    return receipt, node.export_bundle(receipt.record.record_id)


def test_bundle_verifies_offline_and_names_the_record(bundle):
    receipt, data = bundle
    report = verify_bundle(data)
    assert report.record == receipt.record
    assert report.tree_size == 2 and report.image_bytes == os.path.getsize(receipt.output)


def test_cli_export_and_verify_bundle_need_no_home_for_checking(
    home, photo_file, tmp_path, monkeypatch
):
    runner = CliRunner()
    image = photo_file("rocket")
    out = json.loads(
        runner.invoke(
            cli, ["--home", str(home), "--json", "register", str(image), "--owner", "alice"]
        ).stdout
    )
    car = tmp_path / "evidence.car"
    assert (
        runner.invoke(
            cli, ["--home", str(home), "export", out["record_id"], "-o", str(car)]
        ).exit_code
        == 0
    )
    log_key = runner.invoke(cli, ["--home", str(home), "log-key"]).stdout.strip()
    monkeypatch.setenv("BLOCKIMAGE_HOME", str(tmp_path / "nowhere"))
    result = runner.invoke(cli, ["verify-bundle", str(car), "--json", "--log-key", log_key])
    assert result.exit_code == 0 and json.loads(result.stdout)["ok"] is True
    assert not (tmp_path / "nowhere").exists()
    # Without a pinned key the evidence checks but is not trusted: exit 1, and the key named.
    result = runner.invoke(cli, ["verify-bundle", str(car), "--json"])
    doc = json.loads(result.stdout)
    assert result.exit_code == 1 and doc["ok"] is False and doc["trusted"] is False
    assert doc["log_key"] == log_key and "--log-key" in result.stderr and log_key in result.stderr
    # ... pinned in a home's config.toml instead.
    (home / "config.toml").write_text(f'[trust]\nlogs = ["{log_key}"]\n')
    result = runner.invoke(cli, ["--home", str(home), "verify-bundle", str(car)])
    assert result.exit_code == 0 and result.stdout.startswith("ok: record")
    assert "(pinned)" in result.stdout


def test_a_self_signed_forgery_is_not_trusted_even_under_the_genuine_origin(bundle, tmp_path):
    """A forger signs a record and checkpoint with a key of their own: the bundle is internally
    consistent, so only the pinned key tells it apart; reusing the genuine log's origin name
    with another key is refused outright."""
    receipt, genuine = bundle
    doc = dag_cbor.decode(read_car(genuine).blocks[read_car(genuine).roots[0]])
    genuine_key = note_verifier_key(doc["log"]["origin"], doc["log"]["public_key"])
    forger = Ed25519PrivateKey.generate()
    forger_public = forger.public_key().public_bytes_raw()
    owner = Ed25519PrivateKey.generate()
    record = sign_record(
        replace(
            receipt.record, owner="mallory", owner_key=owner.public_key().public_bytes_raw().hex()
        ),
        owner,
    )
    car = read_car(genuine)
    image_blocks = [(c, b) for c, b in car.blocks.items() if c != car.roots[0]]
    image = write_car([bytes(doc["image"])], image_blocks)
    for origin in (log_origin(forger_public), doc["log"]["origin"]):
        log = MerkleLog(tmp_path / f"{origin.replace('/', '_')}.db", forger, origin=origin)
        forged = make_bundle(log.append(record), image, origin=origin, log_public_key=forger_public)
        if origin == doc["log"]["origin"]:
            with pytest.raises(InvalidBundleError, match="names its log"):
                verify_bundle(forged)
            continue
        report = verify_bundle(forged)  # consistent in itself ...
        assert report.record.owner == "mallory"
        assert not report.signed_by([genuine_key])  # ... but not signed by the pinned log
        assert report.signed_by([report.log_key])
        result = CliRunner().invoke(
            cli,
            ["verify-bundle", str(_write(tmp_path / "f.car", forged)), "--log-key", genuine_key],
        )
        assert result.exit_code == 1 and "not pinned" in result.stderr


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


def test_a_changed_image_block_is_caught(bundle):
    _, data = bundle
    car = read_car(data)
    leaf_cid = next(c for c in car.blocks if c[1] == 0x55)  # a raw leaf of the image
    blocks = dict(car.blocks)
    tampered = bytearray(blocks[leaf_cid])
    tampered[10] ^= 1
    raw = data.replace(bytes(blocks[leaf_cid]), bytes(tampered))
    with pytest.raises(InvalidBundleError, match="corrupt"):
        verify_bundle(raw)


def test_a_forged_record_or_proof_is_caught(bundle):
    _, data = bundle
    car = read_car(data)
    doc = dag_cbor.decode(car.blocks[car.roots[0]])

    def rebuilt(**changes) -> bytes:
        from blockimage.storage.unixfs import DAG_CBOR, block_cid

        evidence = dag_cbor.encode({**doc, **changes})
        root = block_cid(evidence, DAG_CBOR)
        others = [(c, b) for c, b in car.blocks.items() if c != car.roots[0]]
        return write_car([root], [(root, evidence), *others])

    with pytest.raises(InvalidBundleError, match="owner signature"):
        verify_bundle(rebuilt(leaf=doc["leaf"].replace(b'"alice"', b'"mallory"')))
    proof = {**doc["proof"], "inclusion_path": [bytes(32)]}
    with pytest.raises(InvalidBundleError, match="inclusion proof"):
        verify_bundle(rebuilt(proof=proof))
    zero = {"origin": log_origin(bytes(32)), "public_key": bytes(32)}
    with pytest.raises(InvalidBundleError, match="checkpoint"):
        verify_bundle(rebuilt(log=zero))
    with pytest.raises(InvalidBundleError, match="not a valid CAR"):
        verify_bundle(data[:20])


def test_kubo_dag_import_accepts_the_bundle_and_serves_the_image(bundle, kubo, tmp_path):
    receipt, data = bundle
    car = tmp_path / "bundle.car"
    car.write_bytes(data)
    imported = kubo.run("dag", "import", "--stats", str(car), text=True).stdout
    root = read_car(data).roots[0]
    from blockimage.storage.unixfs import cid_text

    assert cid_text(root) in imported and "Pinned root" in imported
    served = kubo.run("cat", receipt.record.cid).stdout
    assert served == open(receipt.output, "rb").read()

"""Our Content Credentials read by c2patool, the C2PA project's command-line reader, built here
from its own crates.io release (scripts/c2patool.sh: c2patool 0.27.22 over c2pa-rs 0.90.22;
we write with c2pa-python, which bundles c2pa-rs 0.91): registered JPEG, PNG and WebP files, a
derivative's chain, damaged bytes, and the manifest store `serve` hands out for recovery."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tests.conftest import jpeg_bytes

from blockimage import Node
from blockimage.credentials import FINGERPRINT_ALG, SOFT_BINDING_ALG, manifest_label

ROOT = Path(__file__).resolve().parent.parent
C2PATOOL = ROOT / ".cache" / "c2patool" / "bin" / "c2patool"


def c2patool(path: Path, *args: str, anchors: Path | None = None) -> dict:
    trust = ["trust", "--trust_anchors", str(anchors)] if anchors else []
    done = subprocess.run(
        [str(C2PATOOL), str(path), *args, *trust], capture_output=True, text=True, timeout=120,
        env={"HOME": str(path.parent), "RUST_BACKTRACE": "0"},  # no user settings file
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def files(tmp_path_factory, photos):
    assert C2PATOOL.exists(), "no c2patool: run scripts/c2patool.sh build (make test does)"
    work = tmp_path_factory.mktemp("c2patool")
    chelsea = np.asarray(Image.open(photos["chelsea"]).convert("RGB"))
    Image.fromarray(chelsea).save(work / "cat.webp", "WEBP", quality=90)
    with Node(work / "home") as node:
        found = {
            "jpeg": node.register(photos["rocket"], owner="alice", out=work),
            "png": node.register(photos["astronaut"], owner="alice", out=work),
            "webp": node.register(work / "cat.webp", owner="alice", out=work),
        }
        parent = found["jpeg"]
        pixels = np.asarray(Image.open(parent.output).convert("RGB"))
        (work / "crop.jpg").write_bytes(jpeg_bytes(pixels[30:-30, 50:-50], 90))
        found["derivative"] = node.register(
            work / "crop.jpg", owner="alice", parent=parent.record.record_id, out=work
        )
        anchors = work / "ca.pem"
        anchors.write_bytes(node.keys.c2pa_identity().anchor_pem)
        stores = {k: node.resolver.manifest(manifest_label(r.record.record_id))
                  for k, r in found.items()}  # fmt: skip
    return work, found, anchors, stores


@pytest.mark.parametrize("kind", ["jpeg", "png", "webp"])
def test_c2patool_validates_our_manifest_and_reads_its_bindings(files, kind):
    work, found, anchors, _ = files
    record = found[kind].record
    report = c2patool(Path(found[kind].output), anchors=anchors)
    assert report["validation_state"] == "Trusted"
    assert report["active_manifest"] == manifest_label(record.record_id)
    manifest = report["manifests"][report["active_manifest"]]
    bindings = {
        a["data"]["alg"]: base64.b64decode(a["data"]["blocks"][0]["value"]).hex()
        for a in manifest["assertions"]
        if a["label"].startswith("c2pa.soft-binding")
    }
    assert bindings == {SOFT_BINDING_ALG: record.record_id, FINGERPRINT_ALG: record.pdq}
    ours = next(a["data"] for a in manifest["assertions"] if a["label"] == "org.blockimage.record")
    assert ours["record_id"] == record.record_id and ours["owner"] == "alice"
    # without our anchor: the signature checks, the signer is not trusted
    assert c2patool(Path(found[kind].output))["validation_state"] == "Valid"


def test_c2patool_follows_a_derivative_to_its_registered_parent(files):
    _, found, anchors, _ = files
    report = c2patool(Path(found["derivative"].output), anchors=anchors)
    assert report["validation_state"] == "Trusted"
    parent_label = manifest_label(found["jpeg"].record.record_id)
    assert parent_label in report["manifests"]  # the parent's manifest travels with it
    manifest = report["manifests"][report["active_manifest"]]
    from_parent = [i for i in manifest["ingredients"] if i.get("active_manifest") == parent_label]
    assert len(from_parent) == 1 and from_parent[0]["relationship"] == "componentOf"


def test_c2patool_sees_changed_bytes_as_we_do(files, tmp_path):
    _, found, anchors, _ = files
    data = bytearray(Path(found["jpeg"].output).read_bytes())
    for at in range(len(data) - 4000, len(data) - 3000, 97):
        if data[at] < 0x80 and data[at - 1] != 0xFF:
            data[at] ^= 0x01
    damaged = tmp_path / "damaged.jpg"
    damaged.write_bytes(bytes(data))
    report = c2patool(damaged, anchors=anchors)
    failures = [f["code"] for f in report["validation_results"]["activeManifest"]["failure"]]
    assert report["validation_state"] == "Invalid" and "assertion.dataHash.mismatch" in failures
    with Node(tmp_path / "reader") as node:
        ours = node.verify(bytes(data)).content_credentials
    assert ours["state"] == "invalid"
    assert "assertion.dataHash.mismatch" in [p["code"] for p in ours["problems"]]


@pytest.mark.parametrize("kind", ["jpeg", "png", "webp", "derivative"])
def test_the_store_served_for_recovery_validates_in_c2patool(files, kind, tmp_path):
    """GET /manifests/{id} serves this store; c2patool takes it as an external manifest for
    the registered file and finds it whole and trusted."""
    _, found, anchors, stores = files
    sidecar = tmp_path / "recovered.c2pa"
    sidecar.write_bytes(stores[kind])
    output = Path(found[kind].output)
    report = c2patool(output, "--external-manifest", str(sidecar), anchors=anchors)
    assert report["validation_state"] == "Trusted"
    assert report["active_manifest"] == manifest_label(found[kind].record.record_id)

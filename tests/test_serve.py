"""`blockimage serve` over real HTTP (httpx against a running server process): the contract's
routes, who may write, limits, hostile uploads, path tricks, the evidence a client can check,
concurrency, a saturated pool and a graceful shutdown."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import signal
import struct
import subprocess
import sys
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from PIL import Image
from tests.conftest import jpeg_bytes, png_bytes, tree_snapshot
from tests.test_hostile import png_with_chunk_before_pixels

from blockimage import Node
from blockimage.evaluation import tampered_variant
from blockimage.ledger.checkpoint import Checkpoint
from blockimage.ledger.proofs import (
    check_consistency,
    check_log_proof,
    open_log_checkpoint,
    parse_verifier_key,
)
from blockimage.records import Receipt
from blockimage.tokens import TokenStore


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def upload(data: bytes, name: str = "image.png") -> dict:
    return {"file": (name, data, "application/octet-stream")}


def registered_bytes(server) -> bytes:
    with httpx.Client(base_url=server.url) as client:
        return client.get(f"/api/ipfs/{server.receipt.record.cid}").content


def records(server) -> int:
    return httpx.get(server.url + "/healthz").json()["records"]


def log_key(server) -> tuple[str, bytes]:
    """(origin, key) from `blockimage log-key`, as a third party would be given it."""
    done = subprocess.run(
        [sys.executable, "-m", "blockimage", "--home", str(server.home), "log-key"],
        capture_output=True,
        text=True,
        check=True,
    )
    return parse_verifier_key(done.stdout)


def photo_pixels(photos, name: str) -> np.ndarray:
    return np.asarray(Image.open(photos[name]).convert("RGB"))


# -- the routes of the contract -------------------------------------------------------------------
def test_openapi_documents_every_route_with_the_data_model(server):
    doc = httpx.get(server.url + "/openapi.json").json()
    for route in (
        "/api/verify",
        "/api/register",
        "/api/records/{record_id}",
        "/api/ipfs/{cid}",
        "/api/checkpoint",
        "/api/consistency",
        "/healthz",
    ):
        assert route in doc["paths"], route
    schemas = doc["components"]["schemas"]
    verdict = schemas["Verdict"]["properties"]
    assert verdict["verdict"]["enum"] == ["authentic", "benign", "tampered", "unknown"]
    assert set(schemas["Record"]["required"]) >= {"record_id", "cid", "signature", "pdq"}
    register = doc["paths"]["/api/register"]["post"]
    assert register["security"] == [{"bearer": []}]
    assert {"401", "403", "409", "413", "415"} <= set(register["responses"])
    assert "text/html" in httpx.get(server.url + "/docs").headers["content-type"]


def test_verify_finds_the_record_and_the_stored_bytes_are_the_registered_file(server):
    data = registered_bytes(server)
    record = server.receipt.record
    assert hashlib.sha256(data).hexdigest() == record.sha256_file
    got = httpx.post(server.url + "/api/verify", files=upload(data))
    assert got.status_code == 200 and got.headers["content-type"] == "application/json"
    verdict = got.json()
    assert verdict["verdict"] == "authentic" and verdict["record_id"] == record.record_id
    # the record and its proof are the receipt's: a client checks them with the log key alone
    receipt = Receipt.from_dict(verdict["record"])
    origin, key = log_key(server)
    assert check_log_proof(receipt.log, key, origin=origin) == receipt.record


def test_a_tampered_copy_is_tampered_with_regions_and_the_html_report(server, photos):
    marked = np.asarray(Image.open(io.BytesIO(registered_bytes(server))).convert("RGB"))
    edit = tampered_variant(marked, "paint", np.random.default_rng(3))
    verdict = httpx.post(server.url + "/api/verify", files=upload(png_bytes(edit.pixels))).json()
    assert verdict["verdict"] == "tampered" and verdict["regions"]
    report = httpx.post(
        server.url + "/api/verify?report=html", files=upload(png_bytes(edit.pixels), "edit.png")
    )
    assert report.status_code == 200 and report.headers["content-type"].startswith("text/html")
    assert "TAMPERED" in report.text and "edit.png" in report.text


def test_a_record_comes_with_history_events_and_a_fresh_checked_proof(server):
    record_id = server.receipt.record.record_id
    doc = httpx.get(f"{server.url}/api/records/{record_id}").json()
    assert doc["record"]["record_id"] == record_id and doc["history"][0]["record_id"] == record_id
    assert doc["events"] == []
    receipt = Receipt.from_dict(doc["record"])
    origin, key = log_key(server)
    assert check_log_proof(receipt.log, key, origin=origin).record_id == record_id


def test_checkpoint_and_consistency_proofs_check_against_the_log_key(server, photos):
    origin, key = log_key(server)
    first = httpx.get(server.url + "/api/checkpoint").json()
    old: Checkpoint = open_log_checkpoint(first["checkpoint"], key, origin=origin)
    assert old.tree_size == first["tree_size"] >= 1
    # one more record, then prove the old tree is a prefix of the new one
    jpeg = jpeg_bytes(photo_pixels(photos, "rocket"), 90)
    got = httpx.post(
        server.url + "/api/register",
        files=upload(jpeg, "rocket.jpg"),
        data={"owner": "bob"},
        headers=bearer(server.tokens["bob"]),
    )
    assert got.status_code == 200, got.text
    note = httpx.get(server.url + "/api/checkpoint").json()["checkpoint"]
    new = open_log_checkpoint(note, key, origin=origin)
    proof = httpx.get(
        server.url + "/api/consistency", params={"old": old.tree_size, "new": new.tree_size}
    ).json()
    assert proof["new_size"] == new.tree_size
    check_consistency(old, new, [bytes.fromhex(h) for h in proof["proof"]])
    bad = httpx.get(server.url + "/api/consistency", params={"old": new.tree_size + 5})
    assert bad.status_code == 400 and "OLD_SIZE" in bad.json()["error"]


# -- who may write ---------------------------------------------------------------------------
def test_registering_needs_the_owners_own_token(server, photos):
    image = upload(jpeg_bytes(photo_pixels(photos, "coffee"), 90), "coffee.jpg")
    before = records(server)
    url = server.url + "/api/register"
    none = httpx.post(url, files=image, data={"owner": "alice"})
    assert none.status_code == 401 and none.headers["www-authenticate"] == "Bearer"
    assert "token" in none.json()["error"]
    wrong = server.tokens["alice"][:-4] + "AAAA"
    for token in (wrong, "bit_000000000000_" + "A" * 43, server.operator[:-1], "x"):
        assert (
            httpx.post(url, files=image, data={"owner": "alice"}, headers=bearer(token)).status_code
            == 401
        )
    other = httpx.post(
        url, files=image, data={"owner": "alice"}, headers=bearer(server.tokens["bob"])
    )
    assert other.status_code == 403 and "only as bob" in other.json()["error"]
    assert records(server) == before  # nothing was written
    # the operator's token (keys/api_token) registers as anyone
    carol = httpx.post(url, files=image, data={"owner": "carol"}, headers=bearer(server.operator))
    assert carol.status_code == 200 and carol.json()["owner"] == "carol"
    again = httpx.post(
        url, files=image, data={"owner": "alice"}, headers=bearer(server.tokens["alice"])
    )
    assert again.status_code == 409 and "already registered" in again.json()["error"]


def test_a_revoked_token_is_refused_at_once(server, photos):
    store = TokenStore(server.home / "keys")
    entry, token = store.create("dora")
    assert stat_mode(store.path) == 0o600 and token not in store.path.read_text()
    image = upload(jpeg_bytes(photo_pixels(photos, "chelsea"), 90), "chelsea.jpg")
    store.revoke(entry.id)
    got = httpx.post(
        server.url + "/api/register", files=image, data={"owner": "dora"}, headers=bearer(token)
    )
    assert got.status_code == 401


def stat_mode(path) -> int:
    return os.stat(path).st_mode & 0o777


def test_token_commands_show_a_token_once_and_keep_only_its_hash(tmp_path):
    from click.testing import CliRunner

    from blockimage.cli import cli

    home = str(tmp_path / "h")
    made = CliRunner().invoke(cli, ["--home", home, "--json", "token", "create", "--owner", "ann"])
    doc = json.loads(made.stdout)
    listed = CliRunner().invoke(cli, ["--home", home, "--json", "token", "list"])
    assert json.loads(listed.stdout) == [
        {"id": doc["id"], "owner": "ann", "created_at": json.loads(listed.stdout)[0]["created_at"]}
    ]
    assert doc["token"] not in (tmp_path / "h" / "keys" / "api_tokens.json").read_text()
    assert TokenStore(tmp_path / "h" / "keys").owner_of(doc["token"]) == "ann"
    revoked = CliRunner().invoke(cli, ["--home", home, "token", "revoke", doc["id"]])
    assert (
        revoked.exit_code == 0
        and TokenStore(tmp_path / "h" / "keys").owner_of(doc["token"]) is None
    )
    again = CliRunner().invoke(cli, ["--home", home, "token", "revoke", doc["id"]])
    assert again.exit_code == 1 and again.stderr.startswith("blockimage: error: no token")


# -- limits and hostile uploads ----------------------------------------------------------------
def bomb_png() -> bytes:
    out = io.BytesIO()
    Image.new("1", (9999, 9999)).save(out, "PNG", optimize=True)
    return out.getvalue()


def short_jpeg_claiming_81_mp() -> bytes:
    small = bytearray(jpeg_bytes(np.full((300, 300, 3), 90, np.uint8)))
    sof = small.index(b"\xff\xc0")
    small[sof + 5 : sof + 9] = struct.pack(">HH", 9000, 9000)
    return bytes(small)


def damaged_tiff() -> bytes:
    out = io.BytesIO()
    noise = np.random.default_rng(5).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(out, "TIFF", compression="tiff_deflate")
    data = bytearray(out.getvalue())
    for at in range(40, 200, 7):
        data[at] ^= 0x5A
    return bytes(data)


HOSTILE = {
    "text": (b"hello, not an image\n", 415),
    "html with an image name": (b"<html><script>alert(1)</script></html>", 415),
    "empty": (b"", 422),
    "truncated jpeg": (jpeg_bytes(np.full((64, 64, 3), 7, np.uint8))[:200], 422),
    "png bomb 9999x9999": (bomb_png(), 413),
    "jpeg header claiming 81 MP": (short_jpeg_claiming_81_mp(), 413),
    "png with a zTXt bomb": (
        png_with_chunk_before_pixels(
            b"zTXt", b"key\x00\x00" + zlib.compress(b"\x00" * (64 * 1024 * 1024), 9)
        ),
        422,
    ),
    "damaged tiff": (damaged_tiff(), 422),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_uploads_are_one_json_error_with_their_status(server, name):
    data, status = HOSTILE[name]
    before = records(server)
    for route, extra in (("/api/verify", {}), ("/api/register", {"owner": "alice"})):
        got = httpx.post(
            server.url + route,
            files=upload(data, "x.png"),
            data=extra,
            headers=bearer(server.tokens["alice"]),
            timeout=60,
        )
        assert got.status_code == status, (route, got.text)
        assert list(got.json()) == ["error"] and "Traceback" not in got.text
        assert "blockimage-uploads" not in got.text  # names the upload, not the server's file
    assert records(server) == before


@pytest.mark.parametrize("shape", [(1, 1), (3, 2), (100, 20000)])
def test_tiny_and_thin_images_verify(server, shape):
    got = httpx.post(server.url + "/api/verify", files=upload(png_bytes(np.zeros(shape, np.uint8))))
    assert got.status_code == 200 and got.json()["verdict"] == "unknown"


def test_uploads_over_the_cap_are_413_before_and_while_reading(server):
    big = os.urandom(3 * 1024 * 1024)  # the fixture's cap is 2 MB
    got = httpx.post(server.url + "/api/verify", files=upload(big))
    assert got.status_code == 413 and "2,097,152" in got.json()["error"]

    def chunks():  # no Content-Length: the cap is counted while reading
        boundary = b'--b\r\nContent-Disposition: form-data; name="file"; filename="x"\r\n\r\n'
        yield boundary
        for _ in range(48):
            yield b"\0" * 65536
        yield b"\r\n--b--\r\n"

    streamed = httpx.post(
        server.url + "/api/verify",
        content=chunks(),
        headers={"content-type": "multipart/form-data; boundary=b"},
    )
    assert streamed.status_code == 413
    assert not list_uploads()


def list_uploads() -> list[str]:
    """Upload files left in any serve process's private upload folder (each request removes
    its own when it ends)."""
    import glob
    import tempfile

    return glob.glob(os.path.join(tempfile.gettempdir(), "blockimage-uploads-*", "*"))


def test_malformed_requests_are_json_errors(server):
    url = server.url + "/api/verify"
    assert httpx.post(url, content=b"raw bytes").status_code == 415
    missing = httpx.post(url, data={"other": "x"}, files={"other_file": ("a", b"b")})
    assert missing.status_code == 422 and "'file'" in missing.json()["error"]
    assert httpx.post(url + "?report=pdf", files=upload(b"x")).status_code == 422
    bad_parent = httpx.post(
        server.url + "/api/register",
        files=upload(b"x"),
        data={"owner": "alice", "parent": "../../x"},
        headers=bearer(server.tokens["alice"]),
    )
    assert bad_parent.status_code in (415, 422)


@pytest.mark.parametrize(
    "path",
    [
        "/api/ipfs/../../keys/node.key",
        "/api/ipfs/..%2F..%2Fkeys%2Fnode.key",
        "/api/ipfs/%2e%2e%2fconfig.toml",
        "/api/ipfs/bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku",  # not stored
        "/api/ipfs/blocks",
        "/api/records/..%2F..%2Fledger.db",
        "/api/records/ABCDEF0123456789",
        "/api/records/0000000000000000",
        "/static/../keys/node.key",
        "/static/%2e%2e/%2e%2e/keys/node.key",
    ],
)
def test_ids_and_cids_that_try_path_tricks_are_404(server, path):
    got = httpx.get(server.url + path)
    assert got.status_code == 404, got.text
    assert (
        b"PRIVATE KEY" not in got.content and got.json()["error"]
        if got.headers.get("content-type", "").startswith("application/json")
        else True
    )


def test_the_page_works_without_javascript(server):
    page = httpx.get(server.url + "/")
    assert page.status_code == 200 and 'action="/verify"' in page.text
    assert server.receipt.record.record_id in page.text  # recent registrations
    assert "script-src 'self'" in page.headers["content-security-policy"]
    answer = httpx.post(server.url + "/verify", files=upload(registered_bytes(server)))
    assert answer.status_code == 200 and "<html" in answer.text and ">AUTHENTIC<" in answer.text
    fragment = httpx.post(server.url + "/verify?fragment=1", files=upload(b"not an image"))
    assert fragment.status_code == 415 and "<html" not in fragment.text
    assert "not an image" in fragment.text


# -- concurrency, saturation, shutdown ------------------------------------------------------------
def test_eight_clients_registering_and_verifying_at_once(server, photos):
    rng = np.random.default_rng(8)
    base = photo_pixels(photos, "motorcycle")
    images = []
    for i in range(4):  # four different pictures: crops of one photo at different places
        y, x = 40 * i, 60 * i
        images.append(jpeg_bytes(np.ascontiguousarray(base[y : y + 300, x : x + 400]), 92))
    marked = registered_bytes(server)
    jobs = [("register", images[i % 4], "alice") for i in range(8)]  # each picture twice
    jobs += [("verify", marked, None)] * 8
    rng.shuffle(jobs)

    def call(job):
        kind, data, owner = job
        with httpx.Client(base_url=server.url, timeout=120) as client:
            if kind == "verify":
                return kind, client.post("/api/verify", files=upload(data))
            return kind, client.post(
                "/api/register",
                files=upload(data, "m.jpg"),
                data={"owner": owner},
                headers=bearer(server.tokens[owner]),
            )

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(call, jobs))
    registered = [
        r.json()["record_id"] for kind, r in results if kind == "register" and r.status_code == 200
    ]
    duplicates = [r for kind, r in results if kind == "register" and r.status_code == 409]
    assert len(registered) == 4 and len(duplicates) == 4, [r.text for _, r in results]
    assert all(
        r.status_code == 200 and r.json()["verdict"] == "authentic"
        for kind, r in results
        if kind == "verify"
    )
    with Node(server.home) as node:  # raises AuditFailure at the first fault
        report = node.audit()
        assert report.records_checked == report.cids_checked >= 5
        assert not report.indexes_rebuilt
        # A duplicate refused by the re-check under the ledger's lock had stored its blocks
        # already: no record points at them, and gc removes them (README: gc).
        assert report.unreferenced_files <= len(duplicates)
        node.gc()
        assert node.audit().unreferenced_files == 0


def test_a_saturated_pool_answers_503_and_shutdown_finishes_requests_in_flight(
    tmp_path, photos, start_server
):
    with Node(tmp_path / "h") as node:
        node.register(photos["coffee"], owner="alice", out=tmp_path)
    srv = start_server(tmp_path / "h", "--workers", "1", "--queue", "0")
    srv.wait_workers(1)
    slow = png_bytes(np.random.default_rng(0).integers(0, 256, (2000, 2000, 3), np.uint8))
    tiny = png_bytes(np.random.default_rng(1).integers(0, 256, (32, 32, 3), np.uint8))
    answers: list[httpx.Response] = []
    first = threading.Thread(
        target=lambda: answers.append(
            httpx.post(srv.url + "/api/verify", files=upload(slow), timeout=120)
        )
    )
    first.start()
    # One worker, no queue: while the slow request runs, any other is refused at once.
    deadline = time.monotonic() + 60
    while httpx.get(srv.url + "/healthz").json()["image_work"]["active"] == 0:
        assert time.monotonic() < deadline and not answers
        time.sleep(0.02)
    probe = httpx.post(srv.url + "/api/verify", files=upload(tiny), timeout=120)
    assert probe.status_code == 503 and not answers
    assert probe.headers["retry-after"] == "2" and "busy" in probe.json()["error"]
    # SIGTERM while the slow request runs: it is answered, then the server exits cleanly.
    srv.process.send_signal(signal.SIGTERM)
    first.join(timeout=120)
    assert answers and answers[0].status_code == 200 and answers[0].json()["verdict"] == "unknown"
    assert srv.process.wait(timeout=60) == 0
    log = srv.log.read_text()
    assert "Traceback" not in log and "POST /api/verify 200" in log


def test_a_killed_worker_is_replaced(tmp_path, start_server):
    srv = start_server(tmp_path / "h", "--workers", "1")
    srv.wait_workers(1)
    pid = int(re.search(r"image worker (\d+) ready", srv.log.read_text()).group(1))
    os.kill(pid, signal.SIGKILL)  # as the kernel's OOM killer would
    tiny = upload(png_bytes(np.zeros((40, 40, 3), np.uint8)))
    lost = httpx.post(srv.url + "/api/verify", files=tiny, timeout=60)
    assert lost.status_code == 503 and lost.headers["retry-after"] == "2"
    assert "stopped" in lost.json()["error"]
    srv.wait_workers(2)  # the new pool's worker
    assert httpx.post(srv.url + "/api/verify", files=tiny, timeout=60).status_code == 200
    assert srv.stop() == 0 and "Traceback" not in srv.log.read_text()


def test_serve_refuses_a_broken_home_in_one_line(tmp_path, photos):
    home = tmp_path / "h"
    Node(home).close()
    (home / "keys" / "node.key").write_bytes(b"garbage")
    done = subprocess.run(
        [sys.executable, "-m", "blockimage", "--home", str(home), "serve", "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1 and done.stderr.startswith("blockimage: error: ")
    assert done.stderr.count("\n") == 1


def test_nothing_is_left_in_the_home_by_refused_requests(server, photos):
    snapshot = tree_snapshot(server.home / "blocks")
    for data, _ in list(HOSTILE.values())[:3]:
        httpx.post(
            server.url + "/api/register",
            files=upload(data),
            data={"owner": "alice"},
            headers=bearer(server.tokens["alice"]),
        )
    assert tree_snapshot(server.home / "blocks") == snapshot

"""The command line: contract commands, --json, exit statuses, and kill-safety."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from click.testing import CliRunner
from PIL import Image
from tests.conftest import jpeg_bytes, tree_snapshot

from blockimage import Node
from blockimage.cli import cli


def run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_init_prints_home_and_node_key(home):
    result = run("init", "--home", str(home), "--json")
    assert result.exit_code == 0
    doc = json.loads(result.stdout)
    assert doc["home"] == str(home) and len(doc["node_public_key"]) == 64
    assert (home / "config.toml").exists() and (home / "ledger.db").exists()


def test_register_verify_history_get_audit_round_trip(home, photo_file, tmp_path):
    image = photo_file("coffee")
    result = run("--home", str(home), "register", str(image), "--owner", "alice", "--json")
    assert result.exit_code == 0, result.stderr
    receipt = json.loads(result.stdout)
    out = Path(receipt["output"])
    assert out.exists() and out.name == "coffee.bi.png"

    result = run("verify", str(out), "--home", str(home), "--json")
    verdict = json.loads(result.stdout)
    assert result.exit_code == 0
    assert (verdict["verdict"], verdict["matched_by"], verdict["record_id"]) == (
        "authentic",
        "sha256_file",
        receipt["record_id"],
    )
    assert verdict["record"]["log"]["root_hash"] and verdict["history"]

    result = run("--home", str(home), "--json", "history", receipt["record_id"])
    assert [r["record_id"] for r in json.loads(result.stdout)] == [receipt["record_id"]]

    target = tmp_path / "fetched.png"
    assert run("--home", str(home), "get", receipt["cid"], "-o", str(target)).exit_code == 0
    assert target.read_bytes() == out.read_bytes()
    result = run("--home", str(home), "get", receipt["cid"])
    assert result.stdout_bytes == out.read_bytes()

    result = run("--home", str(home), "audit")
    assert result.exit_code == 0 and result.stdout.startswith("ok: 1 records")


def test_verify_of_an_unregistered_photo_is_unknown_with_status_0(home, photos):
    result = run("--home", str(home), "verify", str(photos["rocket"]))
    assert result.exit_code == 0 and "verdict: UNKNOWN" in result.stdout


def test_several_images_give_a_list_of_receipts(home, photo_file):
    images = [str(photo_file(n)) for n in ("coffee", "chelsea")]
    result = run(
        "--home", str(home), "--json", "register", *images, "--owner", "alice", "--jobs", "1"
    )  # fmt: skip
    assert result.exit_code == 0
    assert len(json.loads(result.stdout)) == 2
    assert "[2/2] registering" in result.stderr


def test_a_batch_on_worker_processes_keeps_input_order_and_refuses_duplicates(
    home, photo_file, tmp_path
):
    names = ("coffee", "chelsea", "rocket", "astronaut")
    images = [str(photo_file(n)) for n in names]
    again = tmp_path / "coffee-again.png"
    again.write_bytes(open(images[0], "rb").read())  # the same file twice in one batch
    result = run(
        "--home", str(home), "--json", "register", *images, str(again),
        "--owner", "alice", "--jobs", "2",
    )  # fmt: skip
    assert result.exit_code == 1  # one image refused, the others registered
    receipts = json.loads(result.stdout)
    assert len(receipts) == 4 and "1 of 5 images were not registered" in result.stderr
    assert "already registered" in result.stderr
    order = [Path(r["output"]).name.split(".")[0] for r in receipts]  # input order
    assert order in (
        ["coffee", "chelsea", "rocket", "astronaut"],  # the first copy won the race
        ["chelsea", "rocket", "astronaut", "coffee-again"],  # the second did
    )
    with Node(home) as node:
        assert node.ledger.size() == 4 and node.audit().records_checked == 4


def test_bad_image_exits_1_with_one_line_and_writes_nothing(home, tmp_path):
    run("--home", str(home), "init")
    before = tree_snapshot(home)
    bad = tmp_path / "notes.png"
    bad.write_text("this is not a picture")
    result = run("--home", str(home), "register", str(bad), "--owner", "alice")
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1 and "not an image" in result.stderr
    assert tree_snapshot(home) == before
    missing = run("--home", str(home), "verify", str(tmp_path / "nope.jpg"))
    assert missing.exit_code == 1 and "no such file" in missing.stderr


def test_usage_errors_exit_2(home, photo_file):
    image = str(photo_file("coffee"))
    assert run("--home", str(home), "register", image).exit_code == 2  # no --owner
    bad_owner = run("--home", str(home), "register", image, "--owner", "../etc")
    assert bad_owner.exit_code == 2 and "not a valid owner name" in bad_owner.stderr
    assert run("--home", str(home), "history", "xyz").exit_code == 2
    assert run("--home", str(home), "get", "not-a-cid").exit_code == 2


def test_unknown_record_and_duplicate_registration_exit_1(home, photo_file):
    assert run("--home", str(home), "history", "00000000deadbeef").exit_code == 1
    image = str(photo_file("coffee"))
    assert run("--home", str(home), "register", image, "--owner", "alice").exit_code == 0
    again = run("--home", str(home), "register", image, "--owner", "bob")
    assert again.exit_code == 1 and "already registered as record" in again.stderr


def test_audit_exits_1_and_names_the_fault_after_a_hand_edit(home, photo_file):
    run("--home", str(home), "register", str(photo_file("coffee")), "--owner", "alice")
    db = sqlite3.connect(home / "ledger.db")
    db.execute("UPDATE leaves SET owner='mallory'")
    db.commit()
    db.close()
    result = run("--home", str(home), "audit", "--json")
    assert result.exit_code == 1
    assert json.loads(result.stdout)["ok"] is False
    assert "leaf 0" in result.stderr and "column owner is 'mallory'" in result.stderr


def test_python_dash_m_and_environment_home(home, photos):
    env = {**os.environ, "BLOCKIMAGE_HOME": str(home)}
    done = subprocess.run(
        [sys.executable, "-m", "blockimage", "--json", "verify", str(photos["coffee"])],
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["verdict"] == "unknown"
    assert (home / "ledger.db").exists()


def test_sigkill_during_registration_never_corrupts_the_ledger(home, tmp_path):
    """SIGKILL a batch registration while an image is in flight, several times; each time the
    log audits clean, nothing half-written remains, and every output file verifies."""
    rng = np.random.default_rng(3)
    images = []
    for i in range(24):  # distinct pictures (copies of one photo would be refused by PDQ)
        field = rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)
        picture = np.asarray(Image.fromarray(field).resize((900, 900), Image.Resampling.BICUBIC))
        path = tmp_path / f"img{i:02d}.jpg"
        path.write_bytes(jpeg_bytes(picture, 90))
        images.append(path)
    env = {**os.environ, "BLOCKIMAGE_HOME": str(home)}
    registered = 0
    for round_, (after, jitter) in enumerate([(2, 0.0), (3, 0.02), (2, 0.05), (4, 0.01)]):
        with Node(home) as node:  # what is not on the ledger yet
            todo = [
                str(p)
                for p in images
                if not node.ledger.find_by_sha256(hashlib.sha256(p.read_bytes()).hexdigest())
            ]
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "blockimage",
                "register",
                *todo,
                "--owner",
                "alice",
                "--jobs",
                "1",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stderr is not None
        for _ in range(after):  # "[k/N] registering ..." is printed as image k starts
            proc.stderr.readline()
        time.sleep(jitter)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        with Node(home) as node:
            now = node.audit().records_checked
            outputs = list(tmp_path.glob("*.bi.jpg"))
            assert len(outputs) <= now  # an output is renamed into place only after commit
            for out in outputs:
                assert node.verify(out).verdict == "authentic", out
        assert registered < now < len(images), f"round {round_}: kill did not land mid-batch"
        registered = now


def test_a_configured_backbone_that_is_missing_is_one_line_not_a_traceback(home, photos):
    result = CliRunner().invoke(
        cli,
        ["--home", str(home), "verify", str(photos["coffee"])],
        env={"BLOCKIMAGE_BACKBONE": "resnet50"},
    )
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert result.stderr.startswith("blockimage: error: ") and result.stderr.count("\n") == 1
    assert "models import resnet50" in result.stderr


def test_analyze_reads_through_the_node_limits_and_names_its_model(home, photos, monkeypatch):
    result = run("analyze", str(photos["coffee"]), "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["model"] == "efficientnet-lite0"
    monkeypatch.setenv("BLOCKIMAGE_MAX_FILE_BYTES", "1000")
    refused = run("--home", str(home), "analyze", str(photos["coffee"]))
    assert refused.exit_code == 1 and "file too large" in refused.stderr
    assert not home.exists()  # analyze reads a home's settings; it never creates one


def test_concurrent_registrations_of_one_picture_give_one_original(home, photo_file, tmp_path):
    """Four processes register the same photo at once (and a fifth a re-encoding of it): the
    duplicate check and the append are one step, so exactly one original results."""
    image = photo_file("chelsea")
    reencoded = tmp_path / "chelsea-q95.jpg"
    reencoded.write_bytes(jpeg_bytes(np.asarray(Image.open(image).convert("RGB")), 95))
    run("--home", str(home), "init")
    env = {**os.environ, "BLOCKIMAGE_HOME": str(home)}
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "blockimage",
                "register",
                str(src),
                "--owner",
                f"u{i}",
                "--out",
                str(tmp_path / f"out{i}"),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for i, src in enumerate([image] * 4 + [reencoded])
    ]
    results = [(p.wait(), p.stderr.read()) for p in procs]
    assert sorted(code for code, _ in results) == [0, 1, 1, 1, 1]
    for code, stderr in results:
        if code:
            assert stderr.count("\n") == 1, stderr
            assert "already registered" in stderr or "matches registered record" in stderr
    with Node(home) as node:
        assert node.ledger.size() == 1 and node.audit().records_checked == 1
    assert len(list(tmp_path.glob("out*/*.bi.*"))) == 1


def test_sigkill_of_a_parallel_batch_stops_its_workers_and_loses_nothing(home, tmp_path):
    rng = np.random.default_rng(9)
    images = []
    for i in range(10):
        field = rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)
        picture = np.asarray(Image.fromarray(field).resize((900, 900), Image.Resampling.BICUBIC))
        path = tmp_path / f"p{i}.jpg"
        path.write_bytes(jpeg_bytes(picture, 90))
        images.append(str(path))
    tag = f"blockimage-test-{os.getpid()}-{time.monotonic_ns()}"
    env = {**os.environ, "BLOCKIMAGE_HOME": str(home), "BLOCKIMAGE_KILL_TAG": tag}
    proc = subprocess.Popen(
        [sys.executable, "-m", "blockimage", "register", *images, "--owner", "alice",
         "--jobs", "2"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stderr is not None
    proc.stderr.readline()  # "[1/10] registered ...": the workers are at work
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    def tagged() -> list[int]:
        found = []
        for entry in Path("/proc").iterdir():
            try:
                if entry.name.isdigit() and tag.encode() in (entry / "environ").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
        return found

    deadline = time.monotonic() + 10
    while tagged() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert tagged() == []  # no worker goes on registering after its batch was killed
    with Node(home) as node:
        done = node.audit().records_checked
        assert 1 <= done < len(images)
        for out in tmp_path.glob("*.bi.jpg"):
            assert node.verify(out).verdict == "authentic"


HEAVY = ("cv2", "onnxruntime", "scipy", "skimage", "faiss", "pywt")
_PROBE = """
import json, sys
from blockimage.cli import main
sys.argv = ["blockimage", *json.loads(sys.argv[1])]
try:
    main()
except SystemExit:
    pass
heavy = sorted(m for m in sys.modules if m.split(".")[0] in {heavy!r})
print("HEAVY=" + json.dumps(sorted({{m.split(".")[0] for m in heavy}})))
"""


def test_help_version_history_get_and_audit_import_no_heavy_library(home, photo_file):
    """The commands that read the ledger or print text start without cv2, onnxruntime, scipy,
    skimage, faiss or PyWavelets (each import costs a CLI start 0.1-0.5 s)."""
    receipt = Node(home).register(photo_file("coffee"), owner="alice")
    probe = _PROBE.format(heavy=set(HEAVY))
    at = ["--home", str(home)]
    got = str(home / "got.jpg")
    commands = [["--help"], ["--version"], [*at, "history", receipt.record.record_id],
                [*at, "get", receipt.record.cid, "-o", got], [*at, "audit"]]  # fmt: skip
    for args in commands:
        done = subprocess.run([sys.executable, "-c", probe, json.dumps(args)],
                              capture_output=True, text=True, timeout=120)  # fmt: skip
        last = done.stdout.strip().splitlines()[-1]
        assert last == "HEAVY=[]", (args, last, done.stderr[-500:])
    assert (home / "got.jpg").read_bytes() == Node(home).get(receipt.record.cid)


def test_every_rejected_registration_leaves_the_home_and_the_output_folder_as_they_were(
    home, photo_file, tmp_path
):
    out = tmp_path / "out"
    first = run("--home", str(home), "register", str(photo_file("coffee")), "--owner", "alice",
                "--out", str(out))  # fmt: skip
    assert first.exit_code == 0
    big = tmp_path / "big.png"
    big.write_bytes(photo_file("chelsea").read_bytes())
    cases = {
        "duplicate": ([str(photo_file("coffee")), "--owner", "bob"], "already registered"),
        "unknown parent": (
            [str(photo_file("rocket")), "--owner", "bob", "--parent", "0123456789abcdef"],
            "0123456789abcdef",
        ),
        "oversize file": ([str(big), "--owner", "bob"], "limit 2,000"),
        "a batch with one bad input": (
            [str(photo_file("astronaut")), str(tmp_path / "missing.png"), "--owner", "bob"],
            "missing.png",
        ),
    }
    for name, (args, needle) in cases.items():
        if name != "oversize file":
            (home / "config.toml").write_text("")
        else:
            (home / "config.toml").write_text("[limits]\nmax_file_bytes = 2000\n")
        before, before_out = tree_snapshot(home), tree_snapshot(out)
        result = run("--home", str(home), "register", *args, "--out", str(out))
        assert result.exit_code == 1, (name, result.output)
        assert needle in result.stderr, (name, result.stderr)
        assert tree_snapshot(home) == before, name
        assert tree_snapshot(out) == before_out, name
    bad_owner = run("--home", str(home), "register", str(photo_file("rocket")), "--owner", "-x")
    assert bad_owner.exit_code == 2 and tree_snapshot(out) == before_out

"""`blockimage demo` runs on the shipped sample photos and reports every verdict."""

from __future__ import annotations

import json

from click.testing import CliRunner

from blockimage import Node
from blockimage.cli import cli


def test_demo_registers_and_verifies_the_sample_photos(tmp_path):
    home = tmp_path / "given-home"  # --home before the command is the demo's home
    result = CliRunner().invoke(
        cli,
        ["--home", str(home), "demo", "--workdir", str(tmp_path / "work"), "--json"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)
    assert len(rows) == 21 and "verdicts as expected" in result.stderr
    kinds = {}
    for row in rows:
        kinds.setdefault(row["variant"], []).append(row)
    assert all(
        r["verdict"] == "authentic" and r["matched_by"] == "sha256_file"
        for r in kinds["registered file"]
    )
    assert all(r["verdict"] == "benign" for r in kinds["JPEG q80 re-encode"])
    assert all(r["verdict"] == "benign" for r in kinds["resized to 50%"])
    assert [r["verdict"] for r in kinds["never registered"]] == ["unknown"]
    edits = [r for r in rows if r["variant"].endswith(" edit")]
    assert len(edits) == 5 and all(r["verdict"] == "tampered" and r["regions"] for r in edits)
    assert all(r["ok"] for r in rows)
    assert len({r["record_id"] for r in kinds["registered file"]}) == 5
    with Node(home) as node:
        assert node.ledger.size() == 5
    assert not (tmp_path / "work" / "home").exists()

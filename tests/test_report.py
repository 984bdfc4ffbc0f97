"""`verify --report`: a self-contained HTML report for tampered, benign and unknown verdicts."""

from __future__ import annotations

import re

import numpy as np
from click.testing import CliRunner
from PIL import Image
from tests.conftest import png_bytes

from blockimage.cli import cli
from blockimage.evaluation import tampered_variant


def test_report_of_a_tampered_copy_shows_images_regions_record_and_proof(
    home, photo_file, tmp_path
):
    runner = CliRunner()
    image = photo_file("astronaut")
    assert (
        runner.invoke(cli, ["--home", str(home), "register", str(image), "--owner", "ed"]).exit_code
        == 0
    )
    marked = np.asarray(Image.open(image.with_name("astronaut.bi.png")).convert("RGB"))
    edit = tampered_variant(marked, "paint", np.random.default_rng(1))
    suspect = tmp_path / "suspect.png"
    suspect.write_bytes(png_bytes(edit.pixels))
    report = tmp_path / "out" / "report.html"
    report.parent.mkdir()
    result = runner.invoke(
        cli, ["--home", str(home), "verify", str(suspect), "--report", str(report)]
    )
    assert result.exit_code == 0 and "verdict: TAMPERED" in result.stdout
    text = report.read_text()
    assert '<span class="verdict verdict-tampered" role="status">TAMPERED</span>' in text
    assert "<button" not in text and "<script" not in text  # no copy buttons: no script
    assert len(re.findall(r'src="data:image/jpeg;base64,', text)) == 3  # suspect, original, map
    assert "Changed regions" in text and "Ledger proof" in text and "Provenance history" in text
    assert "http://" not in text and "https://" not in text  # nothing to fetch: self-contained
    assert not list(report.parent.glob(".*.tmp"))


def test_report_of_an_unknown_image_has_no_record(home, photos, tmp_path):
    report = tmp_path / "r.html"
    result = CliRunner().invoke(
        cli, ["--home", str(home), "verify", str(photos["rocket"]), "--report", str(report)]
    )
    assert result.exit_code == 0
    text = report.read_text()
    assert "UNKNOWN" in text and "Registered record" not in text
    assert text.count("data:image/jpeg;base64,") == 1

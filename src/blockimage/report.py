"""A self-contained HTML verification report (``blockimage verify --report FILE.html``).

One file, images inline as data URIs, no scripts, printable: the verdict and its evidence, the
suspect beside the registered original and a heat map of the differences with the changed
regions boxed, the signed record, its ledger proof and its history. Pure: evidence in, text out.
"""

from __future__ import annotations

import base64
import html
import io
from datetime import datetime, timezone

import cv2
import numpy as np
from PIL import Image

from .records import FabricProof, LogProof, Record, Verdict
from .verification import Evidence

__all__ = ["render_report"]

_COLOURS = {
    "authentic": "#1b7f3b",
    "benign": "#2b6cb0",
    "tampered": "#b91c1c",
    "unknown": "#6b7280",
}
_THUMB = 900


def _data_uri(pixels: np.ndarray, *, quality: int = 88) -> str:
    img = Image.fromarray(pixels)
    img.thumbnail((_THUMB, _THUMB), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _overlay(evidence: Evidence) -> np.ndarray | None:
    """The suspect with the difference heat map blended in and the regions boxed."""
    cmp = evidence.comparison
    if cmp is None:
        return None
    heat = np.clip(cmp.heat / 3.0 * 255, 0, 255).astype(np.uint8)
    coloured = cv2.cvtColor(cv2.applyColorMap(heat, cv2.COLORMAP_INFERNO), cv2.COLOR_BGR2RGB)
    alpha = np.clip(cmp.heat / 2.0, 0.0, 0.75)[:, :, None]
    out = (evidence.suspect * (1 - alpha) + coloured * alpha).astype(np.uint8)
    thickness = max(2, max(out.shape[:2]) // 300)
    for r in evidence.verdict.regions:
        cv2.rectangle(out, (r.x, r.y), (r.x + r.w - 1, r.y + r.h - 1), (0, 255, 255), thickness)
    return out


def _row(name: str, value: object, *, mono: bool = False) -> str:
    text = html.escape(str(value))
    cell = f"<code>{text}</code>" if mono else text
    return f"<tr><th>{html.escape(name)}</th><td>{cell}</td></tr>"


def _record_table(record: Record) -> str:
    rows = [
        _row("Record id", record.record_id, mono=True),
        _row("Owner", record.owner),
        _row("Owner key (Ed25519)", record.owner_key, mono=True),
        _row("Registered", record.created_at),
        _row("Size", f"{record.width} x {record.height} ({record.media_type})"),
        _row("IPFS CID", record.cid, mono=True),
        _row("SHA-256 of file", record.sha256_file, mono=True),
        _row("SHA-256 of pixels", record.sha256_pixels, mono=True),
        _row("SHA-256 of submitted file", record.original_sha256_file, mono=True),
        _row("PDQ", f"{record.pdq} (quality {record.pdq_quality})", mono=True),
    ]
    if record.watermark:
        wm = record.watermark
        rows.append(_row("Watermark", f"PSNR {wm.psnr:.1f} dB, SSIM {wm.ssim:.4f}, NC {wm.nc:.3f}"))
    if record.tags:
        rows.append(_row("Tags", ", ".join(f"{t.label} ({t.score:.2f})" for t in record.tags)))
    if record.parent:
        rows.append(_row("Derived from", record.parent, mono=True))
    rows.append(_row("Owner signature", record.signature, mono=True))
    return "<table>" + "".join(rows) + "</table>"


def _similarity(verdict: Verdict) -> str:
    sim = verdict.similarity
    parts = [
        ("PSNR (aligned)", f"{sim.psnr:.2f} dB" if sim.psnr is not None else None),
        ("SSIM (aligned)", f"{sim.ssim:.4f}" if sim.ssim is not None else None),
        ("PDQ distance", f"{sim.pdq_distance} / 256" if sim.pdq_distance is not None else None),
        (
            "Watermark bits intact",
            f"{sim.watermark_bits_ok:.1%}" if sim.watermark_bits_ok is not None else None,
        ),
    ]
    rows = "".join(_row(k, v) for k, v in parts if v is not None)
    return f"<table>{rows}</table>" if rows else ""


def render_report(evidence: Evidence, *, suspect_name: str = "suspect image") -> str:
    """The HTML report of one verification."""
    v = evidence.verdict
    colour = _COLOURS[v.verdict]
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    figures = [("Suspect: " + suspect_name, evidence.suspect)]
    if evidence.original is not None:
        figures.append(("Registered original (fetched from storage)", evidence.original))
    overlay = _overlay(evidence)
    if overlay is not None:
        figures.append(("Differences after alignment (changed regions boxed)", overlay))
    figure_html = "".join(
        f'<figure><img src="{_data_uri(px)}" alt="{html.escape(cap)}">'
        f"<figcaption>{html.escape(cap)}</figcaption></figure>"
        for cap, px in figures
    )
    evidence_items = "".join(f"<li>{html.escape(line)}</li>" for line in v.explanation)
    regions = ""
    if v.regions:
        regions = (
            "<h2>Changed regions</h2><table><tr><th>#</th><th>x, y</th><th>w x h</th>"
            "<th>score</th></tr>"
            + "".join(
                f"<tr><td>{i}</td><td>{r.x}, {r.y}</td><td>{r.w} x {r.h}</td>"
                f"<td>{r.score:.2f}</td></tr>"
                for i, r in enumerate(v.regions, 1)
            )
            + "</table>"
        )
    record_html = proof_html = history_html = ""
    if v.record is not None:
        record_html = "<h2>Registered record</h2>" + _record_table(v.record.record)
        log = v.record.log
        proof_html = (
            _fabric_proof_html(log) if isinstance(log, FabricProof) else _log_proof_html(log)
        )
    if v.history:
        history_html = (
            "<h2>Provenance history</h2><table><tr><th>Registered</th>"
            "<th>Record</th><th>Owner</th><th>Relation</th></tr>"
            + "".join(
                f"<tr><td>{html.escape(r.created_at)}</td><td><code>{r.record_id}"
                f"</code></td><td>{html.escape(r.owner)}</td><td>"
                + (f"derived from <code>{r.parent}</code>" if r.parent else "original")
                + "</td></tr>"
                for r in v.history
            )
            + "</table>"
        )
    if v.events:
        history_html += (
            "<h2>Transfers and notes</h2><table><tr><th>When</th><th>Event</th></tr>"
            + "".join(
                f"<tr><td>{html.escape(str(e.get('at') or ''))}</td><td>"
                + (
                    f"transfer to {html.escape(e['to'])} (key <code>{e['to_key']}</code>)"
                    if e["kind"] == "transfer"
                    else f"note: {html.escape(e['note'])}"
                )
                + "</td></tr>"
                for e in v.events
            )
            + "</table>"
        )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>BlockImage verification: {v.verdict}</title>
<style>
body {{ font: 15px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #111; }}
.verdict {{ display: inline-block; padding: .3em .9em; border-radius: .4em; color: #fff;
  background: {colour}; font-size: 1.6em; font-weight: 700; letter-spacing: .05em; }}
.figures {{ display: flex; flex-wrap: wrap; gap: 1em; }}
figure {{ margin: 0; flex: 1 1 320px; }} figure img {{ width: 100%; border: 1px solid #ccc; }}
figcaption {{ font-size: .85em; color: #444; }}
table {{ border-collapse: collapse; margin: .5em 0 1em; }}
th, td {{ border: 1px solid #ddd; padding: .25em .6em; text-align: left; vertical-align: top; }}
code, pre {{ font-size: .8em; word-break: break-all; white-space: pre-wrap; }}
@media print {{ body {{ margin: 0; }} figure {{ break-inside: avoid; }} }}
</style></head><body>
<h1>Image verification report</h1>
<p>{html.escape(suspect_name)} &middot; verified {now} by BlockImage</p>
<p><span class="verdict">{v.verdict.upper()}</span>
{f" &middot; matched by {html.escape(v.matched_by)}" if v.matched_by else ""}</p>
<h2>Evidence</h2><ul>{evidence_items}</ul>{_similarity(v)}
<div class="figures">{figure_html}</div>
{regions}{record_html}{proof_html}{history_html}
</body></html>
"""


def _log_proof_html(log: LogProof) -> str:
    return (
        "<h2>Ledger proof</h2><p>The record is leaf "
        f"{log.leaf_index} of a Merkle log of {log.tree_size} leaves (RFC 9162). Anyone can "
        "recompute the root from SHA-256(0x00 || leaf) and the inclusion path, and check "
        "the checkpoint's Ed25519 signature by the node key.</p>"
        + "<table>"
        + _row("Root hash", log.root_hash, mono=True)
        + _row("Inclusion path", " ".join(log.inclusion_path) or "(single leaf)", mono=True)
        + "</table><pre>"
        + html.escape(log.checkpoint)
        + "</pre>"
    )


def _fabric_proof_html(proof: FabricProof) -> str:
    return (
        "<h2>Ledger proof</h2><p>The record was written on Hyperledger Fabric by the transaction "
        "below. Anyone with read access to the channel can fetch the block, check that the "
        "transaction is marked VALID and wrote these record bytes, and check the owner's "
        "signature inside them.</p><table>"
        + _row("Channel", proof.channel)
        + _row("Chaincode", proof.chaincode)
        + _row("Transaction", proof.tx_id, mono=True)
        + _row("Block", str(proof.block_number))
        + _row("Block data hash", proof.block_data_hash, mono=True)
        + _row("Validation", proof.validation_code)
        + _row("Submitted by", proof.msp_id)
        + "</table>"
    )

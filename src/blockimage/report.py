"""A self-contained HTML verification report (``blockimage verify --report FILE.html``).

One file, images inline as data URIs, no scripts, printable: the verdict and its evidence, the
suspect beside the registered original and a heat map of the differences with the changed
regions boxed (for an unknown image, the blind forensics' heat map), the signed record, its
ledger proof and its history. Pure: evidence in, text out.
The web page (:mod:`blockimage.web`) shows the same body (:func:`render_body`) with the same
style sheet (:data:`REPORT_CSS`), with copy buttons beside the ids.
"""

from __future__ import annotations

import base64
import html
import io
import json
from datetime import datetime, timezone

import cv2
import numpy as np
from PIL import Image

from .records import FabricProof, LogProof, Record, Verdict
from .verification import Evidence

__all__ = ["REPORT_CSS", "render_body", "render_report"]

_THUMB = 900

# One style sheet for the report and the page. Badge colours keep white text above 4.5:1
# contrast (WCAG AA).
REPORT_CSS = """
.verdict { display: inline-block; padding: .3em .9em; border-radius: .4em; color: #fff;
  font-size: 1.6em; font-weight: 700; letter-spacing: .05em; }
.verdict-authentic { background: #1b7f3b; } .verdict-benign { background: #2b6cb0; }
.verdict-tampered { background: #b91c1c; } .verdict-unknown { background: #4b5563; }
.figures { display: flex; flex-wrap: wrap; gap: 1em; }
figure { margin: 0; flex: 1 1 280px; min-width: 0; }
figure img { width: 100%; border: 1px solid #ccc; }
figcaption { font-size: .85em; color: #374151; }
table { border-collapse: collapse; margin: .5em 0 1em; max-width: 100%; }
th, td { border: 1px solid #ddd; padding: .25em .6em; text-align: left; vertical-align: top; }
code, pre { font-size: .8em; word-break: break-all; white-space: pre-wrap; }
ol.timeline { list-style: none; padding-left: 1.2em; border-left: 3px solid #9ca3af; }
ol.timeline li { margin: 0 0 .8em; position: relative; }
ol.timeline li::before { content: ""; position: absolute; left: -1.75em; top: .35em;
  width: .8em; height: .8em; border-radius: 50%; background: #374151; }
ol.timeline time { font-weight: 600; }
button.copy { font-size: .75em; margin-left: .4em; }
@media print { figure { break-inside: avoid; } button.copy { display: none; } }
"""


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


def _blind_overlay(evidence: Evidence) -> np.ndarray | None:
    """The suspect with the blind forensics' heat map (compression history) blended in."""
    blind = evidence.verdict.blind_evidence
    if blind is None or blind.heat_map is None:
        return None
    heat = np.asarray(Image.open(io.BytesIO(blind.heat_map)).convert("L"))
    h, w = evidence.suspect.shape[:2]
    heat = cv2.resize(heat, (w, h), interpolation=cv2.INTER_LINEAR)
    coloured = cv2.cvtColor(cv2.applyColorMap(heat, cv2.COLORMAP_INFERNO), cv2.COLOR_BGR2RGB)
    alpha = (heat.astype(np.float32) / 255 * 0.75)[:, :, None]
    return (evidence.suspect * (1 - alpha) + coloured * alpha).astype(np.uint8)


def _row(name: str, value: object, *, mono: bool = False, copy: bool = False) -> str:
    text = html.escape(str(value))
    cell = f"<code>{text}</code>" if mono else text
    if copy:  # the page's script copies data-copy; the report has no script and no button
        cell += (
            f'<button type="button" class="copy" data-copy="{text}" '
            f'aria-label="Copy {html.escape(name)}">Copy</button>'
        )
    return f'<tr><th scope="row">{html.escape(name)}</th><td>{cell}</td></tr>'


def _record_table(record: Record, *, copy: bool = False) -> str:
    rows = [
        _row("Record id", record.record_id, mono=True, copy=copy),
        _row("Owner", record.owner),
        _row("Owner key (Ed25519)", record.owner_key, mono=True),
        _row("Registered", record.created_at),
        _row("Size", f"{record.width} x {record.height} ({record.media_type})"),
        _row("IPFS CID", record.cid, mono=True, copy=copy),
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
    """The HTML report of one verification: one file, no scripts."""
    v = evidence.verdict
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>BlockImage verification: {v.verdict}</title>
<style>
body {{ font: 15px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #111;
  padding: 0 1em; }}
{REPORT_CSS}
</style></head><body>
<h1>Image verification report</h1>
<p>{html.escape(suspect_name)} &middot; verified {now} by BlockImage</p>
{render_body(evidence, suspect_name=suspect_name)}
</body></html>
"""


def render_body(
    evidence: Evidence, *, suspect_name: str = "suspect image", copy: bool = False
) -> str:
    """The report's content (an HTML fragment, styled by :data:`REPORT_CSS`): the badge, the
    evidence, the images, the regions, the record, its proof and its history as a timeline.
    ``copy`` adds copy buttons beside the record id, the CID and the proof (for the page)."""
    v = evidence.verdict
    figures = [("Suspect: " + suspect_name, evidence.suspect)]
    if evidence.original is not None:
        figures.append(("Registered original (fetched from storage)", evidence.original))
    overlay = _overlay(evidence)
    if overlay is not None:
        figures.append(("Differences after alignment (changed regions boxed)", overlay))
    blind = _blind_overlay(evidence)
    if blind is not None:
        caption = "Blind forensics: where the compression history differs (not a verdict)"
        figures.append((caption, blind))
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
    record_html = proof_html = ""
    if v.record is not None:
        record_html = "<h2>Registered record</h2>" + _record_table(v.record.record, copy=copy)
        log = v.record.log
        proof_html = (
            _fabric_proof_html(log) if isinstance(log, FabricProof) else _log_proof_html(log)
        )
        if copy:
            proof_json = html.escape(json.dumps(log.to_dict()))
            proof_html += (
                f'<p><button type="button" class="copy" data-copy="{proof_json}">'
                "Copy the proof (JSON)</button></p>"
            )
    matched = f" &middot; matched by {html.escape(v.matched_by)}" if v.matched_by else ""
    return f"""<p><span class="verdict verdict-{v.verdict}" role="status">{v.verdict.upper()}</span>
{matched}</p>
<h2>Evidence</h2><ul>{evidence_items}</ul>{_similarity(v)}
<div class="figures">{figure_html}</div>
{regions}{record_html}{proof_html}{_timeline(v)}"""


def _timeline(v: Verdict) -> str:
    """The provenance history, oldest first: registrations, then transfers and notes."""
    if not v.history and not v.events:
        return ""
    items = [
        f"<li><time>{html.escape(r.created_at)}</time> "
        + ("derived from <code>" + html.escape(r.parent) + "</code>" if r.parent else "registered")
        + f" by {html.escape(r.owner)} as <code>{html.escape(r.record_id)}</code></li>"
        for r in v.history
    ]
    items += [
        f"<li><time>{html.escape(str(e.get('at') or ''))}</time> "
        + (
            f"transferred to {html.escape(e['to'])} (key <code>{html.escape(e['to_key'])}</code>)"
            if e["kind"] == "transfer"
            else f"note: {html.escape(e['note'])}"
        )
        + "</li>"
        for e in v.events
    ]
    return '<h2>Provenance history</h2><ol class="timeline">' + "".join(items) + "</ol>"


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

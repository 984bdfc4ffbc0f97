"""The ``blockimage`` command line (README: Usage). Thin: parse, call Node, render.

Exit status: 0 when the command did its job (a verdict of ``tampered`` or ``unknown`` included),
1 for a problem with the input or a failed integrity check (one line on stderr: every
:class:`~blockimage.errors.BlockImageError`), 2 for usage.
"""

from __future__ import annotations

import errno
import json
import sqlite3
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from . import __version__
from .errors import BlockImageError, InvalidInputError
from .files import write_atomic
from .keys import OWNER_NAME_RE
from .ledger import AuditFailure
from .records import RECORD_ID_RE, Receipt, Record, Verdict

if TYPE_CHECKING:
    from .node import Node

F = TypeVar("F", bound=Callable[..., Any])


class OwnerName(click.ParamType):
    name = "owner"

    def convert(self, value: Any, param: Any, ctx: Any) -> str:
        if not OWNER_NAME_RE.match(str(value)):
            self.fail(
                f"{value!r} is not a valid owner name (1-64 of letters, digits, '.', '_', '@', "
                "'-', starting with a letter or digit)",
                param,
                ctx,
            )
        return str(value)


class RecordId(click.ParamType):
    name = "record_id"

    def convert(self, value: Any, param: Any, ctx: Any) -> str:
        text = str(value).lower()
        if not RECORD_ID_RE.match(text):
            self.fail(f"{value!r} is not a record id (16 hex digits)", param, ctx)
        return text


class Cid(click.ParamType):
    name = "cid"

    def convert(self, value: Any, param: Any, ctx: Any) -> str:
        from .storage.unixfs import parse_cid

        try:
            parse_cid(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)
        return str(value)


def _common(f: F) -> F:
    """--home and --json on every subcommand (they may also be given before it)."""
    f = click.option(
        "--json", "as_json", is_flag=True, default=None, help="Print one JSON document."
    )(f)
    f = click.option(
        "--home",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="Node home (default $BLOCKIMAGE_HOME or ~/.blockimage).",
    )(f)
    return f


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Node home (default $BLOCKIMAGE_HOME or ~/.blockimage).",
)
@click.option("--json", "as_json", is_flag=True, default=False, help="Print one JSON document.")
@click.version_option(__version__, prog_name="blockimage")
@click.pass_context
def cli(ctx: click.Context, home: Path | None, as_json: bool) -> None:
    """BlockImage: register images and verify where they came from and whether they changed."""
    ctx.obj = {"home": home, "json": as_json}


def _opts(ctx: click.Context, home: Path | None, as_json: bool | None) -> tuple[Path | None, bool]:
    root = ctx.find_root().obj or {}
    return (
        home if home is not None else root.get("home"),
        as_json if as_json is not None else bool(root.get("json")),
    )


def _progress(message: str) -> None:
    click.echo(f"blockimage: {message}", err=True)


@contextmanager
def _node(home: Path | None) -> Iterator[Node]:
    from .node import Node

    with _errors():
        node = Node(home, progress=_progress)
    try:
        with _errors():
            yield node
    finally:
        node.close()


@contextmanager
def _errors() -> Iterator[None]:
    try:
        yield
    except BlockImageError as exc:
        click.echo(f"blockimage: error: {exc}", err=True)
        sys.exit(1)
    except OSError as exc:  # the environment: a read-only or full disk, a path that cannot be
        click.echo(f"blockimage: error: {_os_error(exc)}", err=True)
        sys.exit(1)
    except sqlite3.Error as exc:  # a database file damaged beyond what the checks expect
        click.echo(f"blockimage: error: database error: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo("blockimage: interrupted", err=True)
        sys.exit(130)


def _os_error(exc: OSError) -> str:
    what = exc.strerror or exc.__class__.__name__
    where = exc.filename or ""
    if exc.errno == errno.ENOSPC:
        what += " (nothing was registered or replaced)"
    return f"{what}: {where}" if where else what


def _print_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))


# -- init -----------------------------------------------------------------------------------------
@cli.command()
@click.option(
    "--c2pa-key",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="Sign Content Credentials with this PEM private key (ES256/384/512 or Ed25519) ...",
)
@click.option(
    "--c2pa-chain",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="... and this PEM certificate chain (signer first) ...",
)
@click.option(
    "--c2pa-anchor",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="... whose root verifiers trust (default: the chain's last certificate).",
)
@_common
@click.pass_context
def init(
    ctx: click.Context,
    c2pa_key: Path | None,
    c2pa_chain: Path | None,
    c2pa_anchor: Path | None,
    home: Path | None,
    as_json: bool | None,
) -> None:
    """Create the node home (keys, config, empty ledger and store).

    The home makes its own Content Credentials signer (a local CA and a claim-signing
    certificate) unless --c2pa-key and --c2pa-chain bring yours, checked by signing and
    validating a test manifest first.
    """
    home, as_json = _opts(ctx, home, as_json)
    if (c2pa_key is None) != (c2pa_chain is None):
        raise click.UsageError("--c2pa-key and --c2pa-chain go together")
    if c2pa_key is not None and c2pa_chain is not None:
        _import_c2pa(home, c2pa_key, c2pa_chain, c2pa_anchor)
    with _node(home) as node:
        if as_json:
            _print_json({"home": str(node.home), "node_public_key": node.node_public_key})
        else:
            click.echo(f"home: {node.home}")
            click.echo(f"node public key: {node.node_public_key}")


def _import_c2pa(home: Path | None, key: Path, chain: Path, anchor: Path | None) -> None:
    from .config import resolve_home
    from .credentials import check_identity
    from .keys import KeyStore

    with _errors():
        identity = check_identity(
            key.read_bytes(), chain.read_bytes(), anchor.read_bytes() if anchor else None
        )
        folder = resolve_home(home)
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)  # as the node makes it
        KeyStore(folder / "keys").import_c2pa_identity(identity)


# -- register -------------------------------------------------------------------------------------
@cli.command()
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--owner", required=True, type=OwnerName(), help="Owner name (key kept in home).")
@click.option(
    "--parent", type=RecordId(), default=None, help="Register as a derivative of this record."
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Directory for the registered images (default: beside each input).",
)
@click.option(
    "--jobs",
    type=click.IntRange(min=1),
    default=None,
    help="Worker processes for several images (default: the number of cores).",
)
@click.option(
    "--c2pa/--no-c2pa",
    default=True,
    show_default=True,
    help="Sign Content Credentials (C2PA) into the registered file (JPEG, PNG, WebP).",
)
@click.option(
    "--thumbnail",
    is_flag=True,
    default=False,
    help="Put thumbnails in the Content Credentials (about 35 ms more per 1 MP JPEG).",
)
@_common
@click.pass_context
def register(
    ctx: click.Context,
    images: tuple[Path, ...],
    owner: str,
    parent: str | None,
    out: Path | None,
    jobs: int | None,
    c2pa: bool,
    thumbnail: bool,
    home: Path | None,
    as_json: bool | None,
) -> None:
    """Register IMAGE(s): watermark, analyse, fingerprint, store, record.

    Every input is checked first (readable, an accepted image, within the limits): a bad one
    stops the batch before anything is written. A failure while registering one image (a
    duplicate, say) is reported and the others go on; the exit status is then 1. With --json,
    one receipt object for one image, a list of receipts for several.
    """
    home, as_json = _opts(ctx, home, as_json)
    _probe_inputs(home, images)
    from .batch import default_jobs

    jobs = jobs or default_jobs()
    if len(images) > 1 and jobs > 1:
        credentials = {"c2pa": c2pa, "thumbnail": thumbnail}
        _register_in_parallel(home, images, owner, parent, out, jobs, bool(as_json), credentials)
        return
    failed = 0
    with _node(home) as node:
        receipts: list[Receipt] = []
        for i, image in enumerate(images, 1):
            if len(images) > 1:
                click.echo(f"[{i}/{len(images)}] registering {image}", err=True)
            try:
                receipts.append(
                    node.register(
                        image, owner=owner, parent=parent, out=out, c2pa=c2pa, thumbnail=thumbnail
                    )
                )
            except BlockImageError as exc:
                if len(images) == 1:
                    raise
                click.echo(f"blockimage: error: {image}: {exc}", err=True)
                failed += 1
                continue
            if not as_json:
                _print_receipt(receipts[-1])
        if as_json:
            docs = [r.to_dict() for r in receipts]
            _print_json(docs[0] if len(images) == 1 else docs)
    if failed:
        click.echo(f"blockimage: {failed} of {len(images)} images were not registered", err=True)
        sys.exit(1)


def _register_in_parallel(
    home: Path | None,
    images: tuple[Path, ...],
    owner: str,
    parent: str | None,
    out: Path | None,
    jobs: int,
    as_json: bool,
    credentials: dict[str, bool],
) -> None:
    """A batch on ``jobs`` worker processes: a progress bar on a terminal, a line per image
    otherwise; receipts in input order with --json; exit 1 if any image was refused."""
    from tqdm import tqdm

    from .batch import register_batch
    from .config import resolve_home

    with _node(home):  # the home, its keys and its ledger, made once before the workers start
        pass
    receipts: dict[int, Receipt] = {}
    failed = 0
    bar = tqdm(total=len(images), unit="image", file=sys.stderr, disable=not sys.stderr.isatty())
    with _errors(), bar:
        for i, result in register_batch(
            resolve_home(home), images, owner=owner, parent=parent, out=out, jobs=jobs,
            **credentials,
        ):  # fmt: skip
            bar.update()
            if isinstance(result, BlockImageError):
                failed += 1
                bar.write(f"blockimage: error: {images[i]}: {result}", file=sys.stderr)
                continue
            receipts[i] = result
            if bar.disable:
                click.echo(f"[{len(receipts) + failed}/{len(images)}] registered {images[i]}",
                           err=True)  # fmt: skip
            if not as_json:
                _print_receipt(result)
    if as_json:
        _print_json([receipts[i].to_dict() for i in sorted(receipts)])
    if failed:
        click.echo(f"blockimage: {failed} of {len(images)} images were not registered", err=True)
        sys.exit(1)


def _probe_inputs(home: Path | None, images: tuple[Path, ...]) -> None:
    """Refuse unusable inputs before the node (and its home) is opened."""
    from .config import load_settings, resolve_home
    from .inputs import probe_file

    with _errors():
        settings = load_settings(resolve_home(home))  # read only: no home is created
        for image in images:
            probe_file(
                image, max_pixels=settings.max_pixels, max_file_bytes=settings.max_file_bytes
            )


def _print_receipt(r: Receipt) -> None:
    rec = r.record
    click.echo(f"registered {rec.record_id}")
    click.echo(f"  owner      {rec.owner}")
    click.echo(f"  created    {rec.created_at}")
    click.echo(f"  cid        {rec.cid}")
    click.echo(f"  sha256     {rec.sha256_file}")
    click.echo(f"  pdq        {rec.pdq} (quality {rec.pdq_quality})")
    if rec.watermark:
        wm = rec.watermark
        click.echo(f"  watermark  PSNR {wm.psnr:.1f} dB, SSIM {wm.ssim:.4f}, NC {wm.nc:.3f}")
    if rec.tags:
        click.echo("  tags       " + ", ".join(f"{t.label} {t.score:.2f}" for t in rec.tags))
    if rec.parent:
        click.echo(f"  parent     {rec.parent}")
    click.echo(f"  ledger     {r.log.summary()}")
    if r.output:
        click.echo(f"  output     {r.output}")


# -- verify ---------------------------------------------------------------------------------------
@cli.command()
@click.argument("image", type=click.Path(path_type=Path))
@click.option(
    "--report",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write a self-contained HTML report to this file.",
)
@_common
@click.pass_context
def verify(
    ctx: click.Context, image: Path, report: Path | None, home: Path | None, as_json: bool | None
) -> None:
    """Find the registered record IMAGE comes from and judge it."""
    from .config import load_settings, resolve_home
    from .inputs import load_image

    home, as_json = _opts(ctx, home, as_json)
    with _errors():  # the input first: a bad one is refused before a home is created
        settings = load_settings(resolve_home(home))
        suspect = load_image(
            image, max_pixels=settings.max_pixels, max_file_bytes=settings.max_file_bytes
        )
    with _node(home) as node:
        evidence = node.verify_detailed(suspect)
        verdict = evidence.verdict
        if report is not None:
            from .report import render_report

            write_atomic(report, render_report(evidence, suspect_name=image.name).encode())
            click.echo(f"report written to {report}", err=True)
        if as_json:
            _print_json(verdict.to_dict())
        else:
            _print_verdict(verdict)


def _print_verdict(v: Verdict) -> None:
    click.echo(f"verdict: {v.verdict.upper()}")
    if v.record:
        rec = v.record.record
        click.echo(f"  record     {rec.record_id} (matched by {v.matched_by})")
        click.echo(f"  owner      {rec.owner}, registered {rec.created_at}")
        click.echo(f"  cid        {rec.cid}")
    sim = {k: val for k, val in vars(v.similarity).items() if val is not None}
    if sim:
        click.echo("  similarity " + ", ".join(f"{k}={val}" for k, val in sim.items()))
    for region in v.regions:
        click.echo(
            f"  region     x={region.x} y={region.y} w={region.w} h={region.h} "
            f"score={region.score:.2f}"
        )
    if v.blind_tamper_score is not None:
        click.echo(f"  blind tamper score {v.blind_tamper_score:.2f}")
    for line in v.explanation:
        click.echo(f"  - {line}")
    if len(v.history) > 1:
        click.echo("  history:")
        for rec in v.history:
            click.echo(
                f"    {rec.created_at} {rec.record_id} by {rec.owner}"
                + (f" (derived from {rec.parent})" if rec.parent else "")
            )


# -- analyze --------------------------------------------------------------------------------------
@cli.command()
@click.argument("image", type=click.Path(path_type=Path))
@_common
@click.pass_context
def analyze(ctx: click.Context, image: Path, home: Path | None, as_json: bool | None) -> None:
    """Content tags and blind forensic evidence of IMAGE: the tamper score with its error
    rates, the findings (double JPEG compression, traces of an earlier JPEG) and, in --json,
    the heat map (no registration; the home is only read, for its backbone and limits)."""
    from .analysis import analyze_image
    from .analysis.classifier import backbone_model
    from .config import load_settings, resolve_home
    from .inputs import load_image
    from .verification import blind_sentence

    home, as_json = _opts(ctx, home, as_json)
    with _errors():
        root = resolve_home(home)
        settings = load_settings(root)
        item = load_image(
            image, max_pixels=settings.max_pixels, max_file_bytes=settings.max_file_bytes
        )
        analysis = analyze_image(
            item.image.pixels, backbone_model(settings.backbone, root / "models"), data=item.data
        )
    tags, blind = analysis.tags, analysis.blind
    if as_json:
        _print_json(
            {
                "image": str(image),
                "tags": [vars(t) for t in tags],
                "blind_tamper_score": analysis.blind_tamper_score,
                "model": analysis.model,
                "blind_evidence": blind.to_dict() if blind else None,
            }
        )
        return
    click.echo("tags: " + ", ".join(f"{t.label} ({t.score:.2f})" for t in tags))
    if blind is None:
        click.echo("blind tamper score: none (the image is too small to judge)")
    else:
        click.echo(blind_sentence(blind))
        for line in blind.findings:
            click.echo(f"  - {line}")


# -- models ---------------------------------------------------------------------------------------
@cli.group()
def models() -> None:
    """Manage the analysis backbones (the default EfficientNet-Lite0 ships with BlockImage)."""


@models.command("import")
@click.argument("name", type=click.Choice(["resnet50"]))
@click.argument("weights", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@_common
@click.pass_context
def models_import(
    ctx: click.Context, name: str, weights: Path, home: Path | None, as_json: bool | None
) -> None:
    """Convert torchvision WEIGHTS (.pth) of NAME to ONNX in the node home."""
    from .analysis.convert import import_resnet50
    from .config import resolve_home

    home, as_json = _opts(ctx, home, as_json)
    with _errors():
        path = import_resnet50(weights, resolve_home(home) / "models")
    if as_json:
        _print_json({"backbone": name, "model": str(path)})
    else:
        click.echo(
            f"wrote {path}; use it with BLOCKIMAGE_BACKBONE={name} or, in config.toml, "
            f'[analysis] backbone = "{name}"'
        )


# -- history --------------------------------------------------------------------------------------
@cli.command()
@click.argument("record_id", type=RecordId())
@_common
@click.pass_context
def history(ctx: click.Context, record_id: str, home: Path | None, as_json: bool | None) -> None:
    """The record RECORD_ID and every later event about it: derivatives (in log order), each
    followed by its transfers and notes (in log order). Everything listed is checked."""
    home, as_json = _opts(ctx, home, as_json)
    with _node(home) as node:
        records = node.history(record_id)
        events = {r.record_id: node.events(r.record_id) for r in records}
        if as_json:
            _print_json([{**r.to_dict(), "events": events[r.record_id]} for r in records])
        else:
            for rec in records:
                _print_record_line(rec)
                for event in events[rec.record_id]:
                    click.echo(f"    {_event_line(event)}")


def _print_event(record_id: str, event: dict[str, Any], as_json: bool) -> None:
    if as_json:
        _print_json(event)
    else:
        click.echo(f"{record_id}  {_event_line(event)}")


def _event_line(event: dict[str, Any]) -> str:
    when = event.get("at") or "?"
    if event["kind"] == "transfer":
        return f"{when}  transfer to {event['to']} (key {event['to_key'][:16]}…)"
    return f"{when}  note: {event['note']}"


# -- transfer / note ------------------------------------------------------------------------------
@cli.command()
@click.argument("record_id", type=RecordId())
@click.option("--to", "to", type=OwnerName(), required=True, help="The new owner's name.")
@click.option(
    "--to-key",
    default=None,
    metavar="HEX",
    help="The new owner's Ed25519 public key (64 hex digits); default: the key this home "
    "holds for that owner (made if missing).",
)
@_common
@click.pass_context
def transfer(
    ctx: click.Context,
    record_id: str,
    to: str,
    to_key: str | None,
    home: Path | None,
    as_json: bool | None,
) -> None:
    """Move RECORD_ID to a new owner: a signed event by the current owner (whose key must be in
    this home), on the ledger for anyone to check."""
    home, as_json = _opts(ctx, home, as_json)
    with _node(home) as node:
        event = node.transfer(record_id, to, to_key=to_key.lower() if to_key else None)
        _print_event(record_id, event, as_json)


@cli.command()
@click.argument("record_id", type=RecordId())
@click.argument("text")
@_common
@click.pass_context
def note(
    ctx: click.Context, record_id: str, text: str, home: Path | None, as_json: bool | None
) -> None:
    """Add a signed note about RECORD_ID (by its current owner) to the ledger."""
    home, as_json = _opts(ctx, home, as_json)
    with _node(home) as node:
        event = node.note(record_id, text)
        _print_event(record_id, event, as_json)


def _print_record_line(rec: Record) -> None:
    kind = f"derivative of {rec.parent}" if rec.parent else "original"
    click.echo(f"{rec.created_at}  {rec.record_id}  {rec.owner:<16} {kind:<28} {rec.cid}")


# -- get ------------------------------------------------------------------------------------------
@cli.command()
@click.argument("cid", type=Cid())
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write to this file instead of standard output.",
)
@_common
@click.pass_context
def get(
    ctx: click.Context, cid: str, output: Path | None, home: Path | None, as_json: bool | None
) -> None:
    """Print the bytes stored under CID (every block re-hashed on the way)."""
    home, as_json = _opts(ctx, home, as_json)
    with _node(home) as node:
        data = node.get(cid)
        if output is not None:
            write_atomic(output, data)
        if as_json:
            _print_json({"cid": cid, "size": len(data), "output": str(output) if output else None})
        elif output is None:
            sys.stdout.buffer.write(data)
            sys.stdout.buffer.flush()


# -- export / verify-bundle ----------------------------------------------------------------------
@cli.command()
@click.argument("record_id", type=RecordId())
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="The CAR file to write.",
)
@_common
@click.pass_context
def export(
    ctx: click.Context, record_id: str, output: Path, home: Path | None, as_json: bool | None
) -> None:
    """Write an evidence bundle (CARv1): the image's blocks, the signed record and its proof."""
    home, as_json = _opts(ctx, home, as_json)
    with _node(home) as node:
        data = node.export_bundle(record_id)
        write_atomic(output, data)
        if as_json:
            _print_json({"record_id": record_id, "output": str(output), "bytes": len(data)})
        else:
            click.echo(f"wrote {output} ({len(data):,} bytes)")


@cli.command("verify-bundle")
@click.argument("bundle", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option(
    "--log-key",
    "log_keys",
    multiple=True,
    metavar="KEY",
    help="A log key to trust (`blockimage log-key` of the log, or its 64 hex digits); "
    "repeatable. Added to [trust] logs of the home's config.toml, if it has one.",
)
@_common
@click.pass_context
def verify_bundle_command(
    ctx: click.Context,
    bundle: Path,
    log_keys: tuple[str, ...],
    home: Path | None,
    as_json: bool | None,
) -> None:
    """Check an evidence bundle offline: signatures, Merkle proof, image hashes, and that a
    pinned log key signed it. No node is opened (and no home is made)."""
    from .bundle import InvalidBundleError, verify_bundle
    from .config import load_settings, resolve_home
    from .inputs import read_file

    home, as_json = _opts(ctx, home, as_json)
    with _errors():
        # An image of at most 256 MiB (the DAG walk's bound) and its evidence.
        data = read_file(bundle, max_bytes=300 * 1024 * 1024)
        root = resolve_home(home)
        if (root / "config.toml").exists():
            log_keys += load_settings(root).trusted_logs
    try:
        report = verify_bundle(data)
    except InvalidBundleError as exc:
        if as_json:
            _print_json({"ok": False, "trusted": False, "fault": str(exc)})
        click.echo(f"blockimage: bundle INVALID: {exc}", err=True)
        sys.exit(1)
    with _errors():
        trusted = report.signed_by(log_keys)
    rec = report.record
    fault = None
    if not trusted:
        fault = (
            f"the bundle checks, but it was signed by log key {report.log_key}, which is not "
            "pinned: if the log operator publishes that key (`blockimage log-key` on their "
            "node), pass it with --log-key or add it to [trust] logs in config.toml"
        )
    if as_json:
        _print_json(
            {
                "ok": trusted,
                "trusted": trusted,
                **({"fault": fault} if fault else {}),
                "record": rec.to_dict(),
                "image_bytes": report.image_bytes,
                "tree_size": report.tree_size,
                "root_hash": report.root_hash,
                "log_origin": report.log_origin,
                "log_public_key": report.log_public_key,
                "log_key": report.log_key,
                "events": list(report.events),
            }
        )
    else:
        click.echo(
            f"{'ok' if trusted else 'NOT TRUSTED'}: record {rec.record_id} by {rec.owner} "
            f"({rec.created_at})"
        )
        click.echo(f"  owner signature valid (key {rec.owner_key})")
        click.echo(
            f"  included in log {report.log_origin} at tree size {report.tree_size}, "
            f"root {report.root_hash}"
        )
        click.echo(
            f"  checkpoint signed by log key {report.log_key}"
            + (" (pinned)" if trusted else " (NOT pinned)")
        )
        click.echo(
            f"  image {rec.cid} ({report.image_bytes:,} bytes) matches SHA-256 {rec.sha256_file}"
        )
        for event in report.events:
            click.echo(f"  event (included, signed by the owner then): {_event_line(event)}")
    if fault:
        click.echo(f"blockimage: {fault}", err=True)
        sys.exit(1)


# -- the log's own evidence: checkpoint, consistency, log key, receipts ---------------------------
@cli.command()
@_common
@click.pass_context
def checkpoint(ctx: click.Context, home: Path | None, as_json: bool | None) -> None:
    """The log's latest signed checkpoint (C2SP signed note)."""
    home, as_json = _opts(ctx, home, as_json)
    with _node(home) as node:
        note = node.checkpoint()
        if as_json:
            _print_json({"checkpoint": note})
        else:
            click.echo(note, nl=False)


@cli.command()
@click.argument("old_size", type=click.IntRange(min=1))
@click.argument("new_size", type=click.IntRange(min=1), required=False)
@_common
@click.pass_context
def consistency(
    ctx: click.Context, old_size: int, new_size: int | None, home: Path | None, as_json: bool | None
) -> None:
    """RFC 9162 consistency proof from tree size OLD_SIZE to NEW_SIZE (default: the latest
    checkpoint's), one hex hash a line."""
    home, as_json = _opts(ctx, home, as_json)
    with _node(home) as node:
        new, proof = node.consistency(old_size, new_size)
        if as_json:
            _print_json({"old_size": old_size, "new_size": new, "proof": proof})
        else:
            for h in proof:
                click.echo(h)


@cli.command("log-key")
@_common
@click.pass_context
def log_key(ctx: click.Context, home: Path | None, as_json: bool | None) -> None:
    """The log's verifier key in Go note form (name+keyhash+base64): publish it; checkers pin
    it (`verify-bundle --log-key`, golang.org/x/mod/sumdb/note)."""
    home, as_json = _opts(ctx, home, as_json)
    with _node(home) as node:
        if as_json:
            _print_json(
                {
                    "log_key": node.log_key,
                    "origin": node.ledger_origin,
                    "public_key": node.node_public_key,
                }
            )
        else:
            click.echo(node.log_key)


@cli.command("verify-receipt")
@click.argument("receipt_file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@_common
@click.pass_context
def verify_receipt(
    ctx: click.Context, receipt_file: Path, home: Path | None, as_json: bool | None
) -> None:
    """Check a saved receipt (register --json output) against this log now: the record's
    signature, its inclusion proof, and that today's log extends the receipt's checkpoint."""
    from .inputs import read_file
    from .ledger.proofs import InvalidProofError

    home, as_json = _opts(ctx, home, as_json)
    with _errors():
        text = read_file(receipt_file, max_bytes=16 * 1024 * 1024)
        try:
            receipt = Receipt.from_dict(json.loads(text))
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidInputError(f"{receipt_file} is not a receipt: {exc}") from None
    with _node(home) as node:
        try:
            latest = node.verify_receipt(receipt)
        except InvalidProofError as exc:
            if as_json:
                _print_json({"ok": False, "fault": str(exc)})
            click.echo(f"blockimage: receipt INVALID: {exc}", err=True)
            sys.exit(1)
    rec, log = receipt.record, receipt.log
    if as_json:
        _print_json(
            {
                "ok": True,
                "record_id": rec.record_id,
                "receipt_tree_size": getattr(log, "tree_size", None),
                "tree_size": latest.tree_size,
                "root_hash": latest.root_hash.hex(),
            }
        )
        return
    click.echo(f"ok: record {rec.record_id} by {rec.owner} ({rec.created_at})")
    click.echo(f"  owner signature valid; included at {log.summary()}")
    click.echo(
        f"  the log today (size {latest.tree_size}, root {latest.root_hash.hex()}) extends the "
        "receipt's checkpoint (consistency proof checked)"
    )


# -- audit ----------------------------------------------------------------------------------------
@cli.command()
@click.option(
    "--from",
    "start",
    type=click.IntRange(min=0),
    default=0,
    help="Resume at this leaf (the leaves before it were audited already).",
)
@_common
@click.pass_context
def audit(ctx: click.Context, start: int, home: Path | None, as_json: bool | None) -> None:
    """Re-verify the whole ledger and every stored image it points to (streaming; progress on
    stderr every 10,000 records)."""
    home, as_json = _opts(ctx, home, as_json)
    with _node(home) as node:
        try:
            report = node.audit(start)
        except AuditFailure as exc:
            if as_json:
                _print_json({"ok": False, "fault": str(exc)})
            click.echo(f"blockimage: audit FAILED: {exc}", err=True)
            sys.exit(1)
        if as_json:
            _print_json({"ok": True, **vars(report)})
        else:
            click.echo(
                f"ok: {report.records_checked} records, {report.checkpoints_checked} "
                f"checkpoints, {report.cids_checked} stored images verified"
            )
            for why in report.indexes_rebuilt:
                click.echo(
                    f"note: a derived index disagreed with the ledger and was rebuilt ({why})"
                )
            if report.unreferenced_files:
                click.echo(
                    f"note: {report.unreferenced_files} file(s) in blocks/ belong to no record "
                    "(an interrupted registration left them): `blockimage gc` removes them"
                )
            if node.settings.ledger == "fabric":
                click.echo(
                    f"Fabric channel {node.settings.fabric['channel']}: every record's transaction "
                    f"is VALID in its block; newest block hash {report.root_hash}"
                )
            else:
                click.echo(f"tree size {report.tree_size}, root {report.root_hash}")


# -- gc -------------------------------------------------------------------------------------------
@cli.command()
@click.option("--dry-run", is_flag=True, help="Only count what would be removed.")
@_common
@click.pass_context
def gc(ctx: click.Context, dry_run: bool, home: Path | None, as_json: bool | None) -> None:
    """Remove files of the embedded blockstore that no record uses (left by interrupted
    registrations)."""
    home, as_json = _opts(ctx, home, as_json)
    with _node(home) as node:
        files, size = node.gc(dry_run=dry_run)
    if as_json:
        _print_json({"files": files, "bytes": size, "removed": not dry_run})
    else:
        verb = "would remove" if dry_run else "removed"
        click.echo(f"{verb} {files} file(s), {size:,} bytes")


# -- serve and its tokens -------------------------------------------------------------------------
@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Image worker processes (default: the cores this process may use).",
)
@click.option(
    "--queue",
    type=click.IntRange(min=0),
    default=None,
    help="Requests that may wait for a worker; more get 503 (default: 4 per worker).",
)
@click.option(
    "--max-upload",
    type=click.IntRange(min=1),
    default=50,
    show_default=True,
    help="Upload size limit in MB (413 above).",
)
@_common
@click.pass_context
def serve(
    ctx: click.Context,
    host: str,
    port: int,
    workers: int | None,
    queue: int | None,
    max_upload: int,
    home: Path | None,
    as_json: bool | None,
) -> None:
    """HTTP API and web page over this home until SIGINT or SIGTERM (README: The service)."""
    home, _ = _opts(ctx, home, as_json)
    with _errors():
        from .web import serve as run

        run(
            home,
            host=host,
            port=port,
            workers=workers,
            queue=queue,
            max_upload_bytes=max_upload * 1024 * 1024,
        )


@cli.group()
def token() -> None:
    """API tokens for `serve`: each registers only as its owner."""


def _tokens(home: Path | None) -> Any:
    from .config import resolve_home
    from .tokens import TokenStore

    with _node(home):  # the home exists (made if new) and its keys are sound
        pass
    return TokenStore(resolve_home(home) / "keys")


@token.command("create")
@click.option("--owner", required=True, type=OwnerName(), help="The owner the token registers as.")
@_common
@click.pass_context
def token_create(ctx: click.Context, owner: str, home: Path | None, as_json: bool | None) -> None:
    """Make a token for OWNER; it is printed once and only its hash is kept."""
    home, as_json = _opts(ctx, home, as_json)
    store = _tokens(home)
    with _errors():
        entry, secret = store.create(owner)
    if as_json:
        _print_json({"id": entry.id, "owner": entry.owner, "token": secret})
    else:
        click.echo(secret)
        click.echo(f"token {entry.id} for {owner}: shown once, keep it safe", err=True)


@token.command("list")
@_common
@click.pass_context
def token_list(ctx: click.Context, home: Path | None, as_json: bool | None) -> None:
    """The tokens of this home (ids and owners; never the tokens)."""
    home, as_json = _opts(ctx, home, as_json)
    store = _tokens(home)
    with _errors():
        entries = store.entries()
    if as_json:
        _print_json([{"id": e.id, "owner": e.owner, "created_at": e.created_at} for e in entries])
    else:
        for e in entries:
            click.echo(f"{e.id}  {e.owner}  {e.created_at}")


@token.command("revoke")
@click.argument("token_id")
@_common
@click.pass_context
def token_revoke(
    ctx: click.Context, token_id: str, home: Path | None, as_json: bool | None
) -> None:
    """Revoke the token TOKEN_ID at once (a running `serve` refuses it from its next request)."""
    home, as_json = _opts(ctx, home, as_json)
    store = _tokens(home)
    with _errors():
        entry = store.revoke(token_id)
    if as_json:
        _print_json({"id": entry.id, "owner": entry.owner, "revoked": True})
    else:
        click.echo(f"revoked token {entry.id} of {entry.owner}")


# -- demo -----------------------------------------------------------------------------------------
@cli.command()
@click.option(
    "--workdir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where to put the demo's home and images (default: a new temporary folder).",
)
@_common
@click.pass_context
def demo(ctx: click.Context, workdir: Path | None, home: Path | None, as_json: bool | None) -> None:
    """Register sample photos, make re-encoded and edited copies, verify them, print a table."""
    from .demo import run_demo

    home, as_json = _opts(ctx, home, as_json)
    with _errors():
        rows = run_demo(
            workdir,
            home=home,
            progress=lambda m: click.echo(m, err=True),
            echo=lambda m: click.echo(m, err=bool(as_json)),
        )
    if as_json:
        _print_json([{**row.__dict__, "ok": row.ok} for row in rows])


def main() -> None:
    cli(prog_name="blockimage")


if __name__ == "__main__":
    main()

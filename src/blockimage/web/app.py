"""The HTTP API and the web page of ``blockimage serve`` (README: The service).

Routes (../CONTRACT in the README): ``POST /api/verify``, ``POST /api/register`` (bearer token
of the owner), ``GET /api/records/{id}``, ``GET /api/ipfs/{cid}``, ``GET /api/checkpoint``,
``GET /api/consistency``, ``GET /healthz``, OpenAPI at ``/openapi.json`` and ``/docs``; the page
at ``/`` with plain-form fallbacks ``POST /verify`` and ``POST /register``. Every answer is
made from the same :class:`~blockimage.records.Receipt` / :class:`~blockimage.records.Verdict`
documents the CLI prints; every error is ``{"error": "..."}`` with its status, never a trace.
"""

from __future__ import annotations

import contextlib
import copy
import hmac
import logging
import os
import re
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .. import __version__
from ..errors import (
    BackendUnavailableError,
    BlockImageError,
    DuplicateContentError,
    InvalidInputError,
    WatermarkNotRecoverableError,
)
from ..imaging import ImageTooLargeError, InvalidImageError, UnsupportedImageError
from ..keys import OWNER_NAME_RE, InvalidOwnerError, check_owner_name
from ..ledger import RecordNotFoundError
from ..records import RECORD_ID_RE, verify_record_signature
from ..report import REPORT_CSS
from ..resolution import ManifestNotFoundError
from ..storage import ContentNotFoundError, StorageError
from ..tokens import ANY_OWNER
from ..watermark import WatermarkCapacityError
from . import softbinding, work
from .schemas import components, json_response, ref
from .service import Service, ServiceBusyError, WorkerLostError

__all__ = ["create_app"]

log = logging.getLogger("blockimage.serve")
_STATIC = Path(__file__).with_name("static")
_NAME_RE = re.compile(r"[^A-Za-z0-9._ -]+")
# The page's own policy: its script and style only, images inline (the verdict's figures).
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)


def _status(exc: BlockImageError) -> int:
    """The HTTP status of a refusal (README: The service, errors)."""
    for kind, status in (
        (ImageTooLargeError, 413),
        (UnsupportedImageError, 415),
        (InvalidImageError, 422),
        (WatermarkCapacityError, 422),  # too small to carry the mark
        (WatermarkNotRecoverableError, 422),  # almost uniform: the mark does not hold
        (DuplicateContentError, 409),
        (RecordNotFoundError, 404),
        (ManifestNotFoundError, 404),
        (ContentNotFoundError, 404),
        (InvalidOwnerError, 400),
        (InvalidInputError, 400),
        (ServiceBusyError, 503),
        (WorkerLostError, 503),
        (BackendUnavailableError, 503),
        (StorageError, 503),
    ):
        if isinstance(exc, kind):
            return status
    return 500  # the node's own state: a ledger that fails its checks, a lost original


def _error(status: int, message: str, **headers: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers or None)


def _refusal(exc: BlockImageError) -> JSONResponse:
    status = _status(exc)
    retry = isinstance(exc, ServiceBusyError | WorkerLostError)
    headers = {"Retry-After": "2"} if retry else {}
    if status == 500:
        log.error("refused with a server fault: %s", exc)
    return _error(status, str(exc), **headers)


class _Guard:
    """Outermost ASGI layer: upload cap (413 before or while reading the body, never holding
    more than the cap), security headers on the page, one log line per request."""

    def __init__(self, app: ASGIApp, max_body: int) -> None:
        self.app, self.max_body = app, max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, status = time.perf_counter(), 0
        headers = dict(scope["headers"])
        length = headers.get(b"content-length", b"")
        limit = self.max_body + 64 * 1024  # the multipart envelope around the file
        if length.isdigit() and int(length) > limit:
            await _error(413, self._too_large())(scope, receive, send)
            self._log(scope, 413, start)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > limit:
                raise HTTPException(413, self._too_large())  # out of request.form()
            return message

        async def tracked(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                if not scope["path"].startswith(("/docs", "/redoc")):
                    message["headers"] = [
                        *message.get("headers", []),
                        (b"content-security-policy", _CSP.encode()),
                        (b"x-content-type-options", b"nosniff"),
                        (b"referrer-policy", b"no-referrer"),
                    ]
            await send(message)

        try:
            await self.app(scope, limited, tracked)
        finally:
            self._log(scope, status or 500, start)

    def _too_large(self) -> str:
        return f"upload too large: the limit is {self.max_body:,} bytes (serve --max-upload)"

    @staticmethod
    def _log(scope: Scope, status: int, start: float) -> None:
        route = scope.get("route")
        path = getattr(route, "path", None) or scope["path"][:80]
        ms = (time.perf_counter() - start) * 1000
        log.info("%s %s %d %.0f ms", scope["method"], path, status, ms)


def create_app(service: Service) -> ASGIApp:
    """The ASGI application over ``service`` (which the caller opens and closes)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service.pool.warm()
        yield

    app = FastAPI(
        title="BlockImage",
        version=__version__,
        description=(
            "Image authentication and provenance: verify any image, register as an owner "
            "(bearer token), read records, proofs and stored originals."
        ),
        lifespan=lifespan,
    )
    pages = Environment(
        loader=PackageLoader("blockimage.web", "templates"),
        autoescape=select_autoescape(default=True),
    )
    app.mount("/static", StaticFiles(directory=_STATIC), name="static")

    # -- errors: one JSON shape, never a trace -------------------------------------------------
    @app.exception_handler(BlockImageError)
    async def _refused(request: Request, exc: BlockImageError) -> Response:
        return _refusal(exc)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> Response:
        return _error(exc.status_code, str(exc.detail), **(exc.headers or {}))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return _error(422, f"{where}: {first.get('msg', 'invalid request')}")

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> Response:
        log.exception("internal error on %s %s", request.method, request.url.path)
        return _error(500, "internal error (the server log has the details)")

    # -- uploads ---------------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def upload(request: Request, *fields: str) -> AsyncIterator[tuple[Path, str, dict]]:
        """The multipart upload: (file on disk, its display name, the other fields). The file's
        header is checked (format sniffed from the bytes, pixel and size limits) before any
        image work; the file is removed when the request ends."""
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            raise HTTPException(415, "send the image as multipart/form-data, field 'file'")
        async with request.form(max_files=1, max_fields=len(fields) + 1) as form:
            part = form.get("file")
            if not isinstance(part, UploadFile):
                raise HTTPException(422, "the multipart field 'file' (the image) is missing")
            values = {}
            for name in fields:
                value = form.get(name)
                if value is not None and not isinstance(value, str):
                    raise HTTPException(422, f"the field {name!r} must be text, not a file")
                values[name] = value.strip() if value else None
            name = _NAME_RE.sub("_", os.path.basename(part.filename or ""))[:100] or "upload"
            fd, path = service.new_upload()
            try:
                with os.fdopen(fd, "wb") as out:
                    await run_in_threadpool(shutil.copyfileobj, part.file, out, 1 << 20)
            except BaseException:
                path.unlink(missing_ok=True)
                raise
        try:
            await run_in_threadpool(service.probe_upload, path, name)
            yield path, name, values
        finally:
            path.unlink(missing_ok=True)

    def bearer_owner(request: Request) -> str:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        owner = service.tokens.owner_of(token.strip()) if scheme.lower() == "bearer" else None
        if owner is None:
            raise HTTPException(
                401,
                "a valid token is required: Authorization: Bearer TOKEN "
                "(blockimage token create --owner NAME)",
                headers={"WWW-Authenticate": "Bearer"},
            )
        return owner

    async def register_upload(path: Path, owner: str, parent: str | None) -> dict[str, Any]:
        if parent is not None and not RECORD_ID_RE.match(parent):
            raise HTTPException(422, f"parent {parent!r} is not a record id (16 hex digits)")
        receipt, refusal = await service.pool.run(work.register_file, str(path), owner, parent)
        if refusal is not None:
            raise refusal
        assert receipt is not None
        log.info("registered %s for %s", receipt["record_id"], owner)
        return receipt

    def allowed(token_owner: str, owner: str | None) -> str:
        if not owner:
            raise HTTPException(422, "the field 'owner' is required")
        check_owner_name(owner)
        if token_owner != ANY_OWNER and not hmac.compare_digest(token_owner, owner):
            raise HTTPException(403, f"this token registers only as {token_owner}, not {owner}")
        return owner

    # -- the API ---------------------------------------------------------------------------------
    errors: dict[int | str, dict[str, Any]] = {
        code: json_response("Error", text)
        for code, text in (
            (400, "bad request"),
            (413, "upload or image over a limit"),
            (415, "not an accepted image (sniffed from the bytes)"),
            (422, "malformed request or undecodable image"),
            (500, "the node's state failed a check (fail closed)"),
            (503, "busy (Retry-After) or a backend is down"),
        )
    }
    image_body: dict[str, Any] = {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {"file": {"type": "string", "format": "binary"}},
                        "required": ["file"],
                    }
                }
            },
        }
    }

    softbinding.add_routes(app, service, errors)

    @app.post(
        "/api/verify",
        summary="Verify an image",
        description="Find the registered record the image comes from and judge it. "
        "`?report=html` returns the self-contained HTML report instead of JSON.",
        responses={
            200: {
                "description": "the verdict (README: Verdict), or the HTML report",
                "content": {
                    "application/json": {"schema": ref("Verdict")},
                    "text/html": {"schema": {"type": "string"}},
                },
            },
            **errors,
        },
        openapi_extra={
            **image_body,
            "parameters": [
                {
                    "name": "report",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "string", "enum": ["html"]},
                }
            ],
        },
    )
    async def api_verify(request: Request) -> Response:
        report = request.query_params.get("report")
        if report not in (None, "html"):
            raise HTTPException(422, "report must be 'html' or absent")
        async with upload(request) as (path, name, _):
            render: work.Render = "report" if report else "none"
            verdict, html, refusal = await service.pool.run(
                work.verify_file, str(path), name, render
            )
        if refusal is not None:
            raise refusal
        if html is not None:
            return HTMLResponse(html)
        return JSONResponse(verdict)

    register_body = copy.deepcopy(image_body)
    form = register_body["requestBody"]["content"]["multipart/form-data"]["schema"]
    form["properties"]["owner"] = {"type": "string", "pattern": OWNER_NAME_RE.pattern}
    form["properties"]["parent"] = {"type": "string", "pattern": "^[0-9a-f]{16}$"}
    form["required"] = ["file", "owner"]

    @app.post(
        "/api/register",
        summary="Register an image",
        description="The five steps; needs `Authorization: Bearer TOKEN` of the owner "
        "(`blockimage token create --owner NAME`). The watermarked file is then at "
        "`/api/ipfs/{cid}`.",
        responses={
            200: json_response("Receipt", "the receipt (README: Receipt)"),
            401: json_response("Error", "no valid token"),
            403: json_response("Error", "the token is another owner's"),
            404: json_response("Error", "the parent record does not exist"),
            409: json_response("Error", "the image (or a copy of it) is registered already"),
            **errors,
        },
        openapi_extra={**register_body, "security": [{"bearer": []}]},
    )
    async def api_register(request: Request) -> Response:
        token_owner = bearer_owner(request)  # before the body is read
        async with upload(request, "owner", "parent") as (path, _, values):
            owner = allowed(token_owner, values["owner"])
            receipt = await register_upload(path, owner, values["parent"])
        return JSONResponse(receipt)

    @app.get(
        "/api/records/{record_id}",
        summary="A record, its history and events, with a fresh proof (all checked)",
        responses={
            200: json_response("RecordHistory", "the record"),
            **errors,
            404: json_response("Error", "no such record"),
        },
    )
    async def api_record(record_id: str) -> Response:
        if not RECORD_ID_RE.match(record_id):
            raise HTTPException(404, "not a record id (16 lower-case hex digits)")

        def read() -> dict[str, Any]:
            node = service.node
            receipt = node.ledger.receipt(record_id)
            family = node.history(record_id)
            return {
                "record": receipt.to_dict(),
                "history": [r.to_dict() for r in family],
                "events": node.events(record_id),
            }

        return JSONResponse(await service.read(read))

    @app.get(
        "/api/ipfs/{cid}",
        summary="The stored bytes under a CID (every block re-hashed)",
        responses={
            200: {"description": "the bytes", "content": {"application/octet-stream": {}}},
            404: json_response("Error", "not stored here"),
            **errors,
        },
    )
    async def api_ipfs(cid: str) -> Response:
        from ..storage.unixfs import parse_cid

        try:
            parse_cid(cid)
        except ValueError:
            raise HTTPException(404, "not a CID") from None
        data = await service.read(service.node.get, cid)
        return Response(data, media_type=_sniff(data))

    @app.get(
        "/api/checkpoint",
        summary="The log's latest signed checkpoint (C2SP signed note)",
        responses={200: json_response("Checkpoint", "the checkpoint"), **errors},
    )
    async def api_checkpoint() -> Response:
        def read() -> dict[str, Any]:
            note = service.node.checkpoint()
            return {"checkpoint": note, "tree_size": int(note.splitlines()[1])}

        return JSONResponse(await service.read(read))

    @app.get(
        "/api/consistency",
        summary="RFC 9162 consistency proof between two tree sizes",
        responses={200: json_response("Consistency", "the proof"), **errors},
    )
    async def api_consistency(old: int, new: int | None = None) -> Response:
        size, proof = await service.read(service.node.consistency, old, new)
        return JSONResponse({"old_size": old, "new_size": size, "proof": proof})

    @app.get(
        "/healthz",
        summary="200 when the node is open",
        responses={200: json_response("Health", "the node is open"), **errors},
    )
    async def healthz() -> Response:
        size = await service.read(service.node.ledger.size)
        pool = service.pool
        work_state = {"workers": pool.workers, "active": pool.active, "capacity": pool.capacity}
        return JSONResponse({"status": "ok", "records": size, "image_work": work_state})

    # -- the page -------------------------------------------------------------------------------
    async def recent() -> list[dict[str, str]]:
        def read() -> list[dict[str, str]]:
            ledger = service.node.ledger
            rows = list(ledger.records(max(0, ledger.size() - 32)))[-8:]
            shown = []
            for _, record in reversed(rows):
                try:
                    verify_record_signature(record)
                except BlockImageError:
                    log.error("record %s fails its signature: not listed", record.record_id)
                    continue
                shown.append(
                    {"id": record.record_id, "owner": record.owner, "at": record.created_at}
                )
            return shown

        return await service.read(read)

    async def page(status: int = 200, **context: Any) -> HTMLResponse:
        html = pages.get_template("index.html").render(
            recent=await recent(), max_upload=service.max_upload_bytes, **context
        )
        return HTMLResponse(html, status_code=status)

    @app.get("/report.css", include_in_schema=False)
    async def report_css() -> Response:
        return Response(REPORT_CSS, media_type="text/css")

    @app.get("/", include_in_schema=False)
    async def index() -> Response:
        return await page()

    @app.post("/verify", include_in_schema=False)
    async def page_verify(request: Request) -> Response:
        fragment = request.query_params.get("fragment") == "1"
        try:
            async with upload(request) as (path, name, _):
                _, html, refusal = await service.pool.run(work.verify_file, str(path), name, "page")
            if refusal is not None:
                raise refusal
        except (BlockImageError, HTTPException) as exc:
            status, message = _page_error(exc)
            if fragment:
                text = pages.get_template("error.html").render(message=message)
                return HTMLResponse(text, status_code=status)
            return await page(status, error=message)
        if fragment:
            return HTMLResponse(html)
        return await page(result=html)

    @app.post("/register", include_in_schema=False)
    async def page_register(request: Request) -> Response:
        values: dict[str, str | None] = {}
        try:
            async with upload(request, "owner", "parent", "token") as (path, _, values):
                token_owner = service.tokens.owner_of(values["token"] or "")
                if token_owner is None:
                    raise HTTPException(401, "the token is not valid")
                owner = allowed(token_owner, values["owner"])
                receipt = await register_upload(path, owner, values["parent"])
        except (BlockImageError, HTTPException) as exc:
            status, message = _page_error(exc)
            return await page(
                status, register_error=message, open_register=True, owner=values.get("owner")
            )
        return await page(receipt=receipt, open_register=True, owner=values.get("owner"))

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            parts = doc.setdefault("components", {})
            parts.setdefault("schemas", {}).update(components())
            parts["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return _Guard(app, service.max_upload_bytes)


def _page_error(exc: BlockImageError | HTTPException) -> tuple[int, str]:
    if isinstance(exc, HTTPException):
        return exc.status_code, str(exc.detail)
    return _status(exc), str(exc)


def _sniff(data: bytes) -> str:
    """The media type of stored bytes, from their first bytes (never from a request)."""
    for magic, kind in (
        (b"\xff\xd8\xff", "image/jpeg"),
        (b"\x89PNG\r\n\x1a\n", "image/png"),
        (b"II*\x00", "image/tiff"),
        (b"MM\x00*", "image/tiff"),
    ):
        if data.startswith(magic):
            return kind
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return "application/octet-stream"

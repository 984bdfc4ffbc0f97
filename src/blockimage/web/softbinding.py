"""The C2PA Soft Binding Resolution API of ``serve`` (README: Content Credentials).

``GET|POST /matches/byBinding``, ``POST /matches/byContent``, ``GET /manifests/{manifestId}``
and ``GET /services/supportedAlgorithms``, as the C2PA specification's "Soft Binding API"
defines them, for our two algorithms (:data:`blockimage.resolution.ALGORITHMS`). The answers
come from :class:`blockimage.resolution.Resolver`: lookups by value on the node's thread,
lookups by content (a watermark to read, a PDQ hash to compute) on the image workers.
"""

from __future__ import annotations

import json
import os
from enum import Enum
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from ..resolution import ALGORITHMS, MAX_RESULTS
from . import work
from .schemas import json_response, ref
from .service import Service

__all__ = ["add_routes"]

_DEFAULT_RESULTS = 10
_IMAGE_TYPES = ("image/jpeg", "image/png", "image/webp", "image/tiff")


def add_routes(app: FastAPI, service: Service, errors: dict[int | str, dict[str, Any]]) -> None:
    """Add the routes to ``app``; ``errors``: the API's common error responses."""
    bad: dict[int | str, dict[str, Any]] = {
        400: json_response("Error", "unknown algorithm, malformed value or parameter")
    }
    max_results = _query(
        "maxResults",
        f"at most this many matches (1-{MAX_RESULTS}, default {_DEFAULT_RESULTS})",
        kind="integer", minimum=1, maximum=MAX_RESULTS,
    )  # fmt: skip
    result = json_response("SoftBindingQueryResult", "the matching manifests, best first")
    tags: list[str | Enum] = ["C2PA soft binding resolution"]

    def limit(request: Request) -> int:
        raw = request.query_params.get("maxResults")
        if raw is None:
            return _DEFAULT_RESULTS
        if not raw.isdigit() or not 1 <= int(raw) <= MAX_RESULTS:
            raise HTTPException(400, f"maxResults must be an integer from 1 to {MAX_RESULTS}")
        return int(raw)

    async def by_binding(alg: Any, value: Any, count: int) -> Response:
        if not isinstance(alg, str) or not isinstance(value, str):
            raise HTTPException(400, "alg and value (base64) are required strings")
        found = await service.read(service.node.resolver.by_binding, alg, value, count)
        return JSONResponse({"matches": [match.to_dict() for match in found]})

    @app.get(
        "/matches/byBinding",
        tags=tags,
        summary="Manifests bound to a soft binding value",
        responses={200: result, **errors, **bad},
        openapi_extra={
            "parameters": [
                _query("alg", required=True),
                _query("value", "the soft binding value, base64", required=True),
                max_results,
            ]
        },
    )
    async def get_by_binding(request: Request) -> Response:
        query = request.query_params
        return await by_binding(query.get("alg"), query.get("value"), limit(request))

    @app.post(
        "/matches/byBinding",
        tags=tags,
        summary="Manifests bound to a soft binding value (the value in the body)",
        responses={200: result, **errors, **bad},
        openapi_extra={
            "parameters": [max_results],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": ref("SoftBindingQuery")}},
            },
        },
    )
    async def post_by_binding(request: Request) -> Response:
        count = limit(request)
        try:
            body = json.loads(await request.body())
        except (ValueError, UnicodeDecodeError):
            raise HTTPException(400, 'the body must be JSON: {"alg": ..., "value": ...}') from None
        if not isinstance(body, dict):
            raise HTTPException(400, "the body must be a JSON object with alg and value")
        return await by_binding(body.get("alg"), body.get("value"), count)

    @app.post(
        "/matches/byContent",
        tags=tags,
        summary="Manifests whose soft bindings an image carries (its watermark, its PDQ hash)",
        responses={200: result, **errors, **bad},
        openapi_extra={
            "parameters": [
                _query("alg", "one algorithm to use (default: every supported one)"),
                max_results,
                _query("hintAlg"),
                _query("hintValue", "accepted; the image is always searched in full"),
            ],
            "requestBody": {
                "required": True,
                "content": {
                    kind: {"schema": {"type": "string", "format": "binary"}}
                    for kind in _IMAGE_TYPES
                },
            },
        },
    )
    async def post_by_content(request: Request) -> Response:
        count = limit(request)
        alg = request.query_params.get("alg") or None
        kind = request.headers.get("content-type", "").partition(";")[0].strip().lower()
        if kind not in (*_IMAGE_TYPES, "application/octet-stream"):
            raise HTTPException(415, "send the image itself as the body, typed image/jpeg, …")
        path = await _receive(request, service)
        try:
            await run_in_threadpool(service.probe_upload, path, "the image")
            found, refusal = await service.pool.run(work.match_file, str(path), alg, count)
        finally:
            path.unlink(missing_ok=True)
        if refusal is not None:
            raise refusal
        return JSONResponse({"matches": found})

    @app.get(
        "/manifests/{manifestId}",
        tags=tags,
        summary="A manifest store (application/c2pa) by its manifest id",
        responses={
            200: {
                "description": "the C2PA manifest store whose active manifest is manifestId",
                "content": {"application/c2pa": {"schema": {"type": "string", "format": "binary"}}},
            },
            404: json_response("Error", "no such manifest here"),
            **errors,
        },
        openapi_extra={
            "parameters": [
                _query(
                    "returnActiveManifest",
                    "accepted; the store holds our manifest as its active one",
                    kind="boolean",
                )
            ]
        },
    )
    async def get_manifest(manifestId: str) -> Response:  # noqa: N803 -- the spec's name
        store = await service.read(service.node.resolver.manifest, manifestId)
        return Response(store, media_type="application/c2pa")

    @app.get(
        "/services/supportedAlgorithms",
        tags=tags,
        summary="The soft binding algorithms resolved here",
        responses={200: json_response("SoftBindingAlgList", "by kind")},
    )
    async def supported_algorithms() -> Response:
        return JSONResponse(
            {kind: [{"alg": alg} for alg in algs] for kind, algs in ALGORITHMS.items()}
        )


def _query(
    name: str,
    description: str = "",
    *,
    required: bool = False,
    kind: str = "string",
    **bounds: int,
) -> dict[str, Any]:
    """An OpenAPI query parameter."""
    parameter: dict[str, Any] = {"name": name, "in": "query", "required": required}
    if description:
        parameter["description"] = description
    parameter["schema"] = {"type": kind, **bounds}
    return parameter


async def _receive(request: Request, service: Service) -> Path:
    """The raw request body in a private upload file (the size cap is the ASGI guard's)."""
    fd, path = service.new_upload()
    try:
        with os.fdopen(fd, "wb") as out:
            async for chunk in request.stream():
                out.write(chunk)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path

"""A client of the C2PA Soft Binding Resolution API, written from the C2PA specification
("C2PA Soft Binding API", its OpenAPI 3.0 document "C2PA Soft Binding Resolution API"
version 1.0.0, spec.c2pa.org .../softbinding/Decoupled.html), not from BlockImage's code.

What it relies on, as the specification states it:
- ``GET /matches/byBinding?alg=&value=[&maxResults=]`` and ``POST /matches/byBinding``
  (JSON ``{"alg", "value"}``): the value is base64; the answer is a SoftBindingQueryResult
  ``{"matches": [SoftBindingMatch]}``, a match ``{"manifestId", "endpoint"?,
  "similarityScore"?}``, the score an integer 0-100;
- ``POST /matches/byContent[?alg=&maxResults=&hintAlg=&hintValue=]``: the asset's bytes as the
  body, typed with its media type; the same result;
- ``GET /manifests/{manifestId}[?returnActiveManifest=]``: the manifest store as
  ``application/c2pa``;
- ``GET /services/supportedAlgorithms``: ``{"watermarks": [{"alg"}], "fingerprints":
  [{"alg"}]}``.
Every JSON answer is checked against these shapes (JSON Schema, transcribed from the spec).
"""

from __future__ import annotations

import base64
from typing import Any

import httpx
import jsonschema_rs

SOFT_BINDING_MATCH = {
    "type": "object",
    "required": ["manifestId"],
    "properties": {
        "manifestId": {"type": "string"},
        "endpoint": {"type": "string"},
        "similarityScore": {"type": "integer", "minimum": 0, "maximum": 100},
    },
}
SOFT_BINDING_QUERY_RESULT = {
    "type": "object",
    "required": ["matches"],
    "properties": {"matches": {"type": "array", "items": SOFT_BINDING_MATCH}},
}
_ALG_ENTRY = {"type": "object", "required": ["alg"], "properties": {"alg": {"type": "string"}}}
SOFT_BINDING_ALG_LIST = {
    "type": "object",
    "properties": {
        "watermarks": {"type": "array", "items": _ALG_ENTRY},
        "fingerprints": {"type": "array", "items": _ALG_ENTRY},
    },
}


class SoftBindingError(Exception):
    """The service refused a query (its HTTP status)."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"HTTP {status}: {body[:200]}")
        self.status = status


class SoftBindingClient:
    def __init__(self, base_url: str) -> None:
        self.http = httpx.Client(base_url=base_url, timeout=60)

    def close(self) -> None:
        self.http.close()

    def supported_algorithms(self) -> dict[str, list[str]]:
        doc = self._json(self.http.get("/services/supportedAlgorithms"), SOFT_BINDING_ALG_LIST)
        return {kind: [entry["alg"] for entry in doc.get(kind, [])] for kind in doc}

    def by_binding(
        self, alg: str, value: bytes, *, max_results: int | None = None, post: bool = False
    ) -> list[dict[str, Any]]:
        encoded = base64.b64encode(value).decode("ascii")
        params = {} if max_results is None else {"maxResults": max_results}
        if post:
            answer = self.http.post(
                "/matches/byBinding", params=params, json={"alg": alg, "value": encoded}
            )
        else:
            answer = self.http.get(
                "/matches/byBinding", params={"alg": alg, "value": encoded, **params}
            )
        return self._json(answer, SOFT_BINDING_QUERY_RESULT)["matches"]

    def by_content(
        self,
        asset: bytes,
        media_type: str,
        *,
        alg: str | None = None,
        max_results: int | None = None,
    ) -> list[dict[str, Any]]:
        params: dict[str, Any] = {}
        if alg is not None:
            params["alg"] = alg
        if max_results is not None:
            params["maxResults"] = max_results
        answer = self.http.post(
            "/matches/byContent", params=params, content=asset,
            headers={"Content-Type": media_type},
        )  # fmt: skip
        return self._json(answer, SOFT_BINDING_QUERY_RESULT)["matches"]

    def manifest(self, manifest_id: str) -> bytes:
        answer = self.http.get(f"/manifests/{manifest_id}")
        if answer.status_code != 200:
            raise SoftBindingError(answer.status_code, answer.text)
        if answer.headers.get("content-type", "").split(";")[0] != "application/c2pa":
            raise AssertionError(f"a manifest store is application/c2pa: {answer.headers}")
        return answer.content

    @staticmethod
    def _json(answer: httpx.Response, schema: dict[str, Any]) -> dict[str, Any]:
        if answer.status_code != 200:
            raise SoftBindingError(answer.status_code, answer.text)
        doc = answer.json()
        jsonschema_rs.validate(schema, doc)
        return doc

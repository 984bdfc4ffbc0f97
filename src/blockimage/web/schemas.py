"""The OpenAPI schemas of the service's JSON, generated from the data model's own types.

Every document the API returns is produced by the ``to_dict`` of a type in
:mod:`blockimage.records` (the same the CLI prints with ``--json``); the schemas here are
generated from those dataclasses by pydantic, with the few places where ``to_dict`` writes a
field differently from the dataclass (bytes as base64, a receipt as the record's fields plus
its proof, the Fabric proof's ``ledger`` tag) stated once.
"""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter

from ..records import FabricProof, LogProof, Record, Region, Similarity, Tag, Verdict

__all__ = ["REF", "components", "json_response", "ref"]

REF = "#/components/schemas/{model}"
_BASE64 = {"type": "string", "contentEncoding": "base64"}


def ref(name: str) -> dict[str, str]:
    return {"$ref": REF.format(model=name)}


def components() -> dict[str, Any]:
    """``components.schemas`` of the OpenAPI document."""
    schemas: dict[str, Any] = {}
    for model in (Tag, Record, LogProof, FabricProof, Similarity, Region, Verdict):
        schema = TypeAdapter(model).json_schema(ref_template=REF, mode="serialization")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    # to_dict writes every field, defaults included (but a version 1 record's version):
    for name in ("Record", "Similarity", "Region", "Verdict"):
        schemas[name]["required"] = [n for n in schemas[name]["properties"] if n != "version"]
    # Where to_dict differs from the dataclass:
    record = schemas["Record"]
    record["properties"]["version"] = {"type": "integer", "enum": [2]}
    for proof in ("LogProof", "FabricProof"):
        schemas[proof]["properties"]["leaf"] = dict(
            _BASE64, description="the exact bytes of the ledger leaf (the signed record)"
        )
    fabric = schemas["FabricProof"]
    fabric["properties"]["ledger"] = {"const": "fabric"}
    fabric["required"].append("ledger")
    schemas["Receipt"] = {
        "title": "Receipt",
        "description": "A record with its ledger proof (README: Receipt).",
        "allOf": [
            ref("Record"),
            {
                "type": "object",
                "properties": {
                    "log": {"anyOf": [ref("LogProof"), ref("FabricProof")]},
                    "output": {"type": ["string", "null"]},
                },
                "required": ["log"],
            },
        ],
    }
    schemas["Event"] = {
        "title": "Event",
        "description": "A signed transfer or note (blockimage.ledger.events).",
        "type": "object",
        "properties": {"kind": {"enum": ["transfer", "note"]}, "record_id": {"type": "string"}},
        "required": ["kind", "record_id"],
    }
    verdict = schemas["Verdict"]["properties"]
    verdict["mask"] = {
        "anyOf": [dict(_BASE64, contentMediaType="image/png"), {"type": "null"}],
        "description": "PNG of the changed pixels (white), in the suspect's size; when tampered",
    }
    verdict["events"] = {"type": "array", "items": ref("Event")}
    blind = schemas["BlindEvidence"]
    blind["required"] = list(blind["properties"])
    blind["properties"]["heat_map"] = {
        "anyOf": [dict(_BASE64, contentMediaType="image/png"), {"type": "null"}],
        "description": "PNG (grey) at the working size: where the compression history differs",
    }
    schemas["RecordHistory"] = {
        "title": "RecordHistory",
        "type": "object",
        "description": "A record with a fresh proof, its history and its events, all checked.",
        "properties": {
            "record": ref("Receipt"),
            "history": {"type": "array", "items": ref("Record")},
            "events": {"type": "array", "items": ref("Event")},
        },
        "required": ["record", "history", "events"],
    }
    schemas["Checkpoint"] = {
        "type": "object",
        "properties": {"checkpoint": {"type": "string"}, "tree_size": {"type": "integer"}},
        "required": ["checkpoint", "tree_size"],
    }
    schemas["Consistency"] = {
        "type": "object",
        "properties": {
            "old_size": {"type": "integer"},
            "new_size": {"type": "integer"},
            "proof": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["old_size", "new_size", "proof"],
    }
    schemas["Health"] = {
        "type": "object",
        "properties": {
            "status": {"const": "ok"},
            "records": {"type": "integer", "description": "ledger leaves"},
            "image_work": {
                "type": "object",
                "description": "worker processes, requests being served or waiting, places",
                "properties": {
                    "workers": {"type": "integer"},
                    "active": {"type": "integer"},
                    "capacity": {"type": "integer"},
                },
                "required": ["workers", "active", "capacity"],
            },
        },
        "required": ["status", "records", "image_work"],
    }
    # C2PA Soft Binding Resolution API (the C2PA specification's own names and shapes)
    schemas["SoftBindingQuery"] = {
        "type": "object",
        "properties": {
            "alg": {"type": "string", "description": "a soft binding algorithm name"},
            "value": dict(_BASE64, description="the soft binding's value"),
        },
        "required": ["alg", "value"],
    }
    schemas["SoftBindingMatch"] = {
        "type": "object",
        "properties": {
            "manifestId": {"type": "string", "description": "the manifest's label (urn:c2pa:…)"},
            "endpoint": {"type": "string", "format": "uri"},
            "similarityScore": {"type": "integer", "minimum": 0, "maximum": 100},
        },
        "required": ["manifestId"],
    }
    schemas["SoftBindingQueryResult"] = {
        "type": "object",
        "properties": {"matches": {"type": "array", "items": ref("SoftBindingMatch")}},
        "required": ["matches"],
    }
    algs = {"type": "array", "items": {"type": "object", "properties": {"alg": {"type": "string"}},
                                       "required": ["alg"]}}  # fmt: skip
    schemas["SoftBindingAlgList"] = {
        "type": "object",
        "properties": {"watermarks": algs, "fingerprints": algs},
        "required": ["watermarks", "fingerprints"],
    }
    schemas["Error"] = {
        "type": "object",
        "properties": {"error": {"type": "string"}},
        "required": ["error"],
    }
    return schemas


def json_response(name: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": ref(name)}}}

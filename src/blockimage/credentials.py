"""Content Credentials (C2PA): our manifest in every registered file, and any manifest read.

At registration the watermarked file gets a C2PA manifest signed with the node's claim-signing
certificate (``KeyStore.c2pa_identity``: a P-256 key and a certificate issued by the node's own
CA, made once): the ``c2pa.actions`` (created, then watermarked by BlockImage), the hard
binding that c2pa-rs computes over the file, a ``c2pa.soft-binding`` naming our watermark and
its payload (the record id), and ``org.blockimage.record`` (record id, log origin, owner,
parent). The file stored, hashed and recorded is the signed one; its pixels are those the
watermark was checked in.

At verification any manifest in the suspect file is read and validated (c2pa-python over
c2pa-rs): its state (trusted, valid but from an untrusted signer, or invalid and why), signer,
actions, ingredients, soft bindings and our record link. It is evidence reported beside the
verdict, never the verdict: the verdict rests on the ledger and the stored original.

Facts this module relies on (c2pa-python 0.38): ES256 end-entity certificates with
digitalSignature and the emailProtection + documentSigning extended key usages are accepted;
a root given in ``trust.user_anchors`` makes the state "Trusted", otherwise "Valid" with
``signingCredential.untrusted``; without a timestamp authority the certificate must be valid
when the manifest is read, so the node's certificates last 20 years.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import re
import struct
from dataclasses import dataclass
from typing import Any

from .errors import BlockImageError

__all__ = [
    "SOFT_BINDING_ALG",
    "FINGERPRINT_ALG",
    "RECORD_ASSERTION",
    "SIGNED_FORMATS",
    "READ_FORMATS",
    "CredentialsError",
    "SigningIdentity",
    "make_identity",
    "check_identity",
    "manifest_label",
    "record_of_manifest",
    "manifest_store",
    "record_manifest",
    "sign",
    "read",
    "describe",
]

SOFT_BINDING_ALG = "org.blockimage.watermark.1"  # value: base64 of the 8-byte record id
FINGERPRINT_ALG = "org.blockimage.pdq.1"  # value: base64 of the 32-byte PDQ hash
RECORD_ASSERTION = "org.blockimage.record"
# What registration writes, and signs: JPEG stays JPEG, WebP lossless WebP, the rest PNG.
SIGNED_FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}
READ_FORMATS = {**SIGNED_FORMATS, "TIFF": "image/tiff"}
_DOCUMENT_SIGNING = "1.3.6.1.5.5.7.3.36"  # id-kp-documentSigning (RFC 9336)
_VALIDITY = dt.timedelta(days=20 * 365)
_SUBMITTED = "submitted"  # the ingredient: the file as it was submitted for registration
_PARENT = "parent"  # the ingredient of a derivative: its parent record's registered file
# Our manifest's label carries its record id in a UUID (version 4 layout, as c2pa-rs requires):
# urn:c2pa:RRRRRRRR-RRRR-4b1d-8b1d-RRRR00000000, R the 16 hex digits of the record id. A
# manifest id then names its record without an index (the soft-binding routes).
_LABEL_RE = re.compile(r"^urn:c2pa:([0-9a-f]{8})-([0-9a-f]{4})-4b1d-8b1d-([0-9a-f]{4})0{8}$")
# The JUMBF description box of a C2PA manifest store: "jumd", then the store's type UUID.
_STORE_JUMD = b"jumd" + bytes.fromhex("6332706100110010800000aa00389b71")


class CredentialsError(BlockImageError, RuntimeError):
    """A manifest could not be made or written (the registration is refused, nothing written)."""


@dataclass(frozen=True)
class SigningIdentity:
    """A claim signer: its PEM private key, its certificate chain (signer, then CA), and the CA
    certificate that verifiers add to their trust anchors."""

    key_pem: bytes
    chain_pem: bytes
    anchor_pem: bytes

    @property
    def alg(self) -> str:
        """The COSE signing algorithm of the key (c2pa-rs's name for it)."""
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec, ed25519

        key = serialization.load_pem_private_key(self.key_pem, password=None)
        if isinstance(key, ed25519.Ed25519PrivateKey):
            return "ed25519"
        if isinstance(key, ec.EllipticCurvePrivateKey):
            bits = {"secp256r1": "es256", "secp384r1": "es384", "secp521r1": "es512"}
            if key.curve.name in bits:
                return bits[key.curve.name]
        raise CredentialsError(
            "the Content Credentials key must be ECDSA P-256, P-384 or P-521, or Ed25519"
        )


def make_identity(organisation: str = "BlockImage node") -> SigningIdentity:
    """A new CA (P-256, its key discarded once it has issued) and a claim-signing certificate
    with the extensions C2PA validators require (end entity, digitalSignature, SKI/AKI,
    emailProtection + documentSigning)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

    now = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)

    def name(common: str) -> x509.Name:
        return x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, common),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation),
            ]
        )

    def usage(*, sign_certs: bool) -> x509.KeyUsage:
        return x509.KeyUsage(
            digital_signature=not sign_certs, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=sign_certs,
            crl_sign=sign_certs, encipher_only=False, decipher_only=False,
        )  # fmt: skip

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("BlockImage content credentials CA"))
        .issuer_name(name("BlockImage content credentials CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(usage(sign_certs=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name("BlockImage claim signer"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage(sign_certs=False), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.EMAIL_PROTECTION, ObjectIdentifier(_DOCUMENT_SIGNING)]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    return SigningIdentity(
        key_pem=key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
        chain_pem=cert.public_bytes(pem) + ca.public_bytes(pem),
        anchor_pem=ca.public_bytes(pem),
    )


def check_identity(key_pem: bytes, chain_pem: bytes, anchor_pem: bytes | None) -> SigningIdentity:
    """A signer the user brings (``init --c2pa-key --c2pa-chain [--c2pa-anchor]``), checked
    the way it will be used: the key is one C2PA signs with and matches the chain's first
    certificate, and a test manifest signed with it validates as trusted under the anchor
    (default: the chain's last certificate). Raises :class:`CredentialsError` saying why not."""
    from cryptography import x509
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization

    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise CredentialsError(f"the key is not an unencrypted PEM private key ({exc})") from None
    try:
        chain = x509.load_pem_x509_certificates(chain_pem)
        anchors = x509.load_pem_x509_certificates(anchor_pem) if anchor_pem else chain[-1:]
    except ValueError as exc:
        raise CredentialsError(f"a certificate is not PEM X.509 ({exc})") from None
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    if chain[0].public_key().public_bytes(der, public) != key.public_key().public_bytes(
        der, public
    ):
        raise CredentialsError("the key does not belong to the chain's first certificate")
    pem = serialization.Encoding.PEM
    identity = SigningIdentity(
        key_pem=key_pem,
        chain_pem=chain_pem,
        anchor_pem=b"".join(cert.public_bytes(pem) for cert in anchors),
    )
    identity.alg  # noqa: B018 -- raises for a key C2PA does not sign with
    probe = _probe_image()
    manifest = record_manifest(
        record_id="0" * 16, title="probe", owner="probe", log_origin="probe", parent=None
    )
    try:
        signed = sign(probe, "image/png", manifest, identity, submitted=(probe, "image/png", "-"))
    except CredentialsError as exc:
        raise CredentialsError(
            f"{exc}: C2PA signs with an end-entity certificate (not a CA) with the "
            "digitalSignature key usage and the emailProtection or documentSigning extended "
            "key usage, issued by a CA with a subject key identifier"
        ) from None
    found = read(signed, "image/png", anchors=identity.anchor_pem.decode("ascii"))
    if found is None or not found["trusted"]:
        reasons = "; ".join(p["code"] for p in (found or {}).get("problems", [])) or (
            "the chain does not lead to the anchor"
        )
        raise CredentialsError(f"a manifest signed with this chain does not validate ({reasons})")
    return identity


def _probe_image() -> bytes:
    import numpy as np
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(np.arange(64 * 64 * 3, dtype=np.uint8).reshape(64, 64, 3)).save(out, "PNG")
    return out.getvalue()


def manifest_label(record_id: str) -> str:
    """The label (manifest id) of our manifest for ``record_id``."""
    return f"urn:c2pa:{record_id[:8]}-{record_id[8:12]}-4b1d-8b1d-{record_id[12:16]}00000000"


def record_of_manifest(manifest_id: str) -> str | None:
    """The record id a manifest id of ours carries, or None for any other id."""
    found = _LABEL_RE.match(manifest_id)
    return "".join(found.groups()) if found else None


def record_manifest(
    *,
    record_id: str,
    title: str,
    owner: str,
    log_origin: str,
    parent: str | None,
    pdq: str | None = None,
) -> dict[str, Any]:
    """The manifest definition of a registration (c2pa-rs fills the hard binding). Its soft
    bindings: the watermark (the record id) and, given, the PDQ hash of the pixels."""
    from . import __version__

    record = {"record_id": record_id, "owner": owner, "log": log_origin}
    if parent is not None:
        record["parent"] = parent
    return {
        "label": manifest_label(record_id),
        "claim_generator_info": [{"name": "BlockImage", "version": __version__}],
        "title": title,
        "assertions": [
            {
                "label": "c2pa.actions",
                "data": {
                    "actions": [
                        # the submitted file, carried as the ingredient (with any manifest of
                        # its own: a camera's credentials stay in the chain) ...
                        {"action": "c2pa.opened", "parameters": {"ingredientIds": [_SUBMITTED]}},
                        # ... then marked with the record id (the soft binding below)
                        {
                            "action": "c2pa.watermarked",
                            "softwareAgent": {"name": "BlockImage", "version": __version__},
                        },
                    ]
                },
            },
            {
                "label": "c2pa.soft-binding",
                "data": {
                    "alg": SOFT_BINDING_ALG,
                    "blocks": [{"scope": {}, "value": _b64(bytes.fromhex(record_id))}],
                },
            },
            *(
                [
                    {
                        "label": "c2pa.soft-binding",
                        "data": {
                            "alg": FINGERPRINT_ALG,
                            "blocks": [{"scope": {}, "value": _b64(bytes.fromhex(pdq))}],
                        },
                    }
                ]
                if pdq is not None
                else []
            ),
            {"label": RECORD_ASSERTION, "data": record},
        ],
    }


def sign(
    data: bytes,
    media_type: str,
    manifest: dict[str, Any],
    identity: SigningIdentity,
    *,
    submitted: tuple[bytes, str, str],
    parent: tuple[bytes, str, str] | None = None,
    thumbnail: bool = False,
) -> bytes:
    """``data`` with ``manifest`` signed into it (the pixels are untouched).

    ``submitted`` is the file registered (bytes, media type, title), added as the ``parentOf``
    ingredient the manifest's ``c2pa.opened`` names (with any manifest of its own). ``parent``
    is, for a derivative, its parent record's registered file: a ``componentOf`` ingredient
    that carries the parent's manifest into this one, so the chain reaches the parent even
    when the submitted file lost its credentials. ``thumbnail``: c2pa-rs adds a thumbnail of
    the file (and of each ingredient) to the manifest (about 35 ms per 1 MP JPEG)."""
    import c2pa

    source, source_type, title = submitted
    try:
        context = c2pa.Context.from_dict({"builder": {"thumbnail": {"enabled": thumbnail}}})
        signer = c2pa.Signer.from_info(
            c2pa.C2paSignerInfo(
                identity.alg.encode("ascii"), identity.chain_pem, identity.key_pem, None
            )
        )
        out = io.BytesIO()
        with c2pa.Builder(manifest, context=context) as builder:
            ingredient = {"title": title, "relationship": "parentOf", "label": _SUBMITTED}
            builder.add_ingredient(ingredient, source_type, io.BytesIO(source))
            if parent is not None:
                parent_data, parent_type, parent_title = parent
                ingredient = {"title": parent_title, "relationship": "componentOf"}
                builder.add_ingredient(
                    {**ingredient, "label": _PARENT}, parent_type, io.BytesIO(parent_data)
                )
            builder.sign(signer, media_type, io.BytesIO(data), out)
    except c2pa.C2paError as exc:
        raise CredentialsError(f"the Content Credentials could not be signed: {exc}") from None
    return out.getvalue()


def manifest_store(data: bytes) -> bytes | None:
    """The C2PA manifest store (JUMBF, ``application/c2pa``) embedded in a JPEG (APP11
    segments, ISO 19566-5), PNG (``caBX`` chunk) or WebP (``C2PA`` chunk) file, else None.
    Only the container is parsed here; c2pa-rs validates what is inside."""
    try:
        if data.startswith(b"\xff\xd8"):
            return _jpeg_store(data)
        if data.startswith(b"\x89PNG\r\n\x1a\n"):
            return _chunk_store(data, 8, b"caBX", ">I", length_first=True)
        if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            return _chunk_store(data, 12, b"C2PA", "<I", length_first=False)
    except (IndexError, struct.error):
        return None
    return None


def _is_store(box: bytes) -> bool:
    return (
        len(box) >= 32
        and box[4:8] == b"jumb"
        and box[12:32] == _STORE_JUMD
        and int.from_bytes(box[:4], "big") == len(box)
    )


def _jpeg_store(data: bytes) -> bytes | None:
    """APP11 segments: "JP", box instance (2 bytes), sequence number (4), then the box; each
    segment after the first repeats the box's LBox and TBox before its share of the rest."""
    packets: dict[bytes, dict[int, bytes]] = {}
    at = 2
    while at + 4 <= len(data) and data[at] == 0xFF:
        marker = data[at + 1]
        if marker in (0xD9, 0xDA):  # the image data: no metadata segment after it
            break
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # no length
            at += 2
            continue
        length = int.from_bytes(data[at + 2 : at + 4], "big")
        segment = data[at + 4 : at + 2 + length]
        if marker == 0xEB and segment[:2] == b"JP" and len(segment) >= 16:
            instance, sequence = segment[2:4], int.from_bytes(segment[4:8], "big")
            packets.setdefault(instance, {})[sequence] = segment[8:]
        at += 2 + length
    for parts in packets.values():
        if sorted(parts) != list(range(1, len(parts) + 1)):
            continue
        first = parts[1]
        header = 16 if int.from_bytes(first[:4], "big") == 1 else 8
        box = first + b"".join(parts[i][header:] for i in range(2, len(parts) + 1))
        if _is_store(box):
            return box
    return None


def _chunk_store(
    data: bytes, at: int, kind: bytes, size_format: str, *, length_first: bool
) -> bytes | None:
    """A PNG chunk (length, type, data, CRC) or a RIFF chunk (type, length, data, pad)."""
    while at + 8 <= len(data):
        if length_first:
            (size,), name = struct.unpack(size_format, data[at : at + 4]), data[at + 4 : at + 8]
        else:
            name, (size,) = data[at : at + 4], struct.unpack(size_format, data[at + 4 : at + 8])
        body = data[at + 8 : at + 8 + size]
        if name == kind:
            return body if _is_store(body) else None
        at += 8 + size + (4 if length_first else size % 2)
    return None


def read(data: bytes, media_type: str, *, anchors: str = "") -> dict[str, Any] | None:
    """The Content Credentials in ``data`` as evidence, or None when it carries none.

    ``anchors``: PEM certificates whose chains are trusted. A manifest that cannot be parsed
    is reported as ``invalid`` with the parser's reason, never raised.
    """
    import c2pa

    settings: dict[str, Any] = {"verify": {"verify_trust": True}}
    if anchors:
        settings["trust"] = {"user_anchors": anchors}
    try:
        context = c2pa.Context.from_dict(settings)
        with c2pa.Reader(media_type, io.BytesIO(data), context=context) as reader:
            state = reader.get_validation_state() or "Invalid"
            results = reader.get_validation_results() or {}
            manifest = reader.get_active_manifest() or {}
    except c2pa.C2paError as exc:
        if "ManifestNotFound" in type(exc).__name__ or "no JUMBF" in str(exc):
            return None
        return _unreadable(str(exc))
    # What the wrapper raises for a store it parsed but cannot use (no active manifest: a
    # KeyError), or a stream it rejects; found by the fuzz target "credentials".
    except (KeyError, ValueError, TypeError, OSError) as exc:
        return _unreadable(str(exc))
    if not isinstance(results, dict) or not isinstance(manifest, dict):
        return _unreadable("the manifest store is not the JSON C2PA defines")
    return _evidence(state, results, manifest)


def _unreadable(reason: str) -> dict[str, Any]:
    return {
        "state": "invalid",
        "trusted": False,
        "problems": [{"code": "manifest.unreadable", "explanation": reason[:300]}],
        "manifest_id": None, "signer": None, "issuer": None, "claim_generator": None,
        "actions": [], "ingredients": [], "soft_bindings": [], "record_id": None,
    }  # fmt: skip


def _evidence(state: str, results: dict[str, Any], manifest: dict[str, Any]) -> dict[str, Any]:
    """The evidence document from what c2pa-rs reports. Assertions are whatever the signer
    wrote (a hostile one may put a list where an object belongs): every level is checked."""
    active = _dict(results.get("activeManifest"))
    problems = [
        {"code": str(p.get("code")), "explanation": str(p.get("explanation") or "")}
        for p in map(_dict, _list(active.get("failure")))
        if p.get("code") != "signingCredential.untrusted"  # said by trusted = False
    ]
    listed = [
        (a.get("label"), a.get("data")) for a in map(_dict, _list(manifest.get("assertions")))
    ]
    assertions = dict(listed)  # a label more than once: the last (soft bindings: all, below)
    actions = [
        str(action.get("action"))
        for label in ("c2pa.actions", "c2pa.actions.v2")
        for action in map(_dict, _list(_dict(assertions.get(label)).get("actions")))
    ]
    bindings = [
        {"alg": str(_dict(data).get("alg")), "value": str(block.get("value"))}
        for label, data in listed
        if str(label).startswith("c2pa.soft-binding")
        for block in map(_dict, _list(_dict(data).get("blocks")))
    ]
    record_id = _dict(assertions.get(RECORD_ASSERTION)).get("record_id")
    info = _dict(manifest.get("signature_info"))
    generator = [_dict(g).get("name") for g in _list(manifest.get("claim_generator_info"))]
    lowered = str(state).lower()
    return {
        "state": lowered if lowered in ("trusted", "valid") and not problems else "invalid",
        "trusted": lowered == "trusted" and not problems,
        "problems": problems,
        "manifest_id": _text(manifest.get("label")),
        "signer": _text(info.get("common_name")),
        "issuer": _text(info.get("issuer")),
        "claim_generator": ", ".join(str(g) for g in generator if g) or None,
        "actions": actions,
        "ingredients": [str(_dict(i).get("title")) for i in _list(manifest.get("ingredients"))],
        "soft_bindings": bindings,
        "record_id": _text(record_id),
    }


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def describe(evidence: dict[str, Any]) -> str:
    """One sentence for a verdict's explanation."""
    who = evidence.get("signer") or "an unnamed signer"
    if evidence.get("issuer"):
        who += f" ({evidence['issuer']})"
    link = f"; they name record {evidence['record_id']}" if evidence.get("record_id") else ""
    if evidence["state"] == "trusted":
        return (
            f"The file carries Content Credentials (C2PA) signed by {who}, a trusted signer{link}."
        )
    if evidence["state"] == "valid":
        return (
            f"The file carries Content Credentials (C2PA) signed by {who}, whose signature "
            f"checks but whose certificate this node does not trust{link}."
        )
    reasons = "; ".join(p["code"] for p in evidence["problems"]) or "no reason given"
    return (
        f"The file carries Content Credentials (C2PA) that do not validate ({reasons}): they "
        f"say nothing reliable about this file{link}."
    )

"""Settings of a node: its home directory, backends and limits.

Read from ``config.toml`` in the home; environment variables (``BLOCKIMAGE_*``) win.
The home is ``--home``, else ``$BLOCKIMAGE_HOME``, else ``~/.blockimage``.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, get_args

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

from .errors import BlockImageError
from .imaging import DEFAULT_MAX_FILE_BYTES, DEFAULT_MAX_PIXELS

__all__ = [
    "Settings",
    "ConfigError",
    "StorageBackend",
    "LedgerBackend",
    "Backbone",
    "DEFAULT_BACKBONE",
    "resolve_home",
    "load_settings",
    "read_fabric_env",
    "DEFAULT_CONFIG",
]

StorageBackend = Literal["local", "kubo"]
LedgerBackend = Literal["merkle", "fabric"]
Backbone = Literal["efficientnet-lite0", "resnet50"]
STORAGE_BACKENDS: tuple[StorageBackend, ...] = get_args(StorageBackend)
LEDGER_BACKENDS: tuple[LedgerBackend, ...] = get_args(LedgerBackend)
BACKBONES: tuple[Backbone, ...] = get_args(Backbone)
DEFAULT_BACKBONE: Backbone = "efficientnet-lite0"  # shipped in the package
FABRIC_SETTINGS = (
    "gateway",
    "msp_id",
    "cert",
    "key",
    "tls_ca",
    "channel",
    "chaincode",
    "tls_server_name",
)
FABRIC_REQUIRED = ("gateway", "msp_id", "cert", "key", "tls_ca")

DEFAULT_CONFIG = f"""\
# BlockImage node configuration. Environment variables BLOCKIMAGE_* override these.

[storage]
backend = "local"                    # "local" (embedded blockstore) or "kubo"
kubo_api = "http://127.0.0.1:5001"   # used when backend = "kubo"

[ledger]
backend = "merkle"                   # "merkle" (embedded log) or "fabric"

# [fabric]                           # used when backend = "fabric"; BLOCKIMAGE_FABRIC_* override,
# gateway = "127.0.0.1:7051"         # and a fabric.env in the home (as printed by
# msp_id = "Org1MSP"                 # scripts/fabric-network.sh up) fills what is not set here
# cert = "/path/to/signcerts/cert.pem"
# key = "/path/to/keystore/priv_sk"
# tls_ca = "/path/to/peer/tls/ca.crt"
# channel = "blockimage"
# chaincode = "blockimage"
# tls_server_name = ""               # if the peer's TLS certificate names another host

[analysis]
backbone = "efficientnet-lite0"       # or "resnet50" (`blockimage models import resnet50 W.pth`)

[limits]
max_pixels = {DEFAULT_MAX_PIXELS}            # decompression-bomb guard (width x height)
max_file_bytes = {DEFAULT_MAX_FILE_BYTES}           # largest input file read (256 MiB)
"""


class ConfigError(BlockImageError, ValueError):
    """The configuration file or an environment variable has an invalid value."""


@dataclass(frozen=True)
class Settings:
    home: Path
    storage: StorageBackend = "local"
    kubo_api: str = "http://127.0.0.1:5001"
    ledger: LedgerBackend = "merkle"
    backbone: Backbone = DEFAULT_BACKBONE
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
    fabric: dict[str, str] = field(default_factory=dict)  # FABRIC_SETTINGS -> value
    # Log keys whose evidence bundles are trusted ([trust] logs): note form or 64 hex digits.
    trusted_logs: tuple[str, ...] = ()


def resolve_home(home: str | os.PathLike[str] | None = None) -> Path:
    if home is not None:
        return Path(home).expanduser()
    env = os.environ.get("BLOCKIMAGE_HOME")
    if env:
        return Path(env).expanduser()
    return Path("~/.blockimage").expanduser()


def load_settings(home: Path, environ: dict[str, str] | None = None) -> Settings:
    env = os.environ if environ is None else environ
    fabric: dict[str, str] = {"channel": "blockimage", "chaincode": "blockimage"}
    fabric.update(read_fabric_env(home / "fabric.env"))
    settings = Settings(home=home)
    path = home / "config.toml"
    if path.exists():
        try:
            doc: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: {exc}") from None
        except OSError as exc:
            raise ConfigError(f"{path}: {exc.strerror or exc}") from None
        storage, ledger, limits, analysis, fabric_table, trust = (
            _table(doc, k, path)
            for k in ("storage", "ledger", "limits", "analysis", "fabric", "trust")
        )
        logs = trust.get("logs", [])
        if not isinstance(logs, list) or not all(isinstance(k, str) for k in logs):
            raise ConfigError(f"{path}: [trust] logs must be a list of log keys (strings)")
        fabric.update({k: str(v) for k, v in fabric_table.items() if k in FABRIC_SETTINGS})
        settings = replace(
            settings,
            storage=storage.get("backend", settings.storage),
            kubo_api=storage.get("kubo_api", settings.kubo_api),
            ledger=ledger.get("backend", settings.ledger),
            backbone=analysis.get("backbone", settings.backbone),
            max_pixels=limits.get("max_pixels", settings.max_pixels),
            max_file_bytes=limits.get("max_file_bytes", settings.max_file_bytes),
            trusted_logs=tuple(logs),
        )
    overrides: dict[str, Any] = {}
    for name, var in (
        ("storage", "BLOCKIMAGE_STORAGE"),
        ("kubo_api", "BLOCKIMAGE_KUBO_API"),
        ("ledger", "BLOCKIMAGE_LEDGER"),
        ("backbone", "BLOCKIMAGE_BACKBONE"),
        ("max_pixels", "BLOCKIMAGE_MAX_PIXELS"),
        ("max_file_bytes", "BLOCKIMAGE_MAX_FILE_BYTES"),
    ):
        if env.get(var):
            overrides[name] = env[var]
    for name in FABRIC_SETTINGS:
        if env.get(f"BLOCKIMAGE_FABRIC_{name.upper()}"):
            fabric[name] = env[f"BLOCKIMAGE_FABRIC_{name.upper()}"]
    settings = replace(settings, **overrides, fabric=fabric)
    return _checked(settings)


def _table(doc: dict[str, Any], name: str, path: Path) -> dict[str, Any]:
    value = doc.get(name, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: [{name}] must be a table, not {type(value).__name__}")
    return value


def read_fabric_env(path: Path) -> dict[str, str]:
    """Fabric settings (short names) from the BLOCKIMAGE_FABRIC_* lines of a file as
    ``scripts/fabric-network.sh up`` writes it; an absent file gives none."""
    values: dict[str, str] = {}
    if not path.exists():
        return values
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip().removeprefix("export ").strip()
        name, sep, value = line.partition("=")
        if sep and name.startswith("BLOCKIMAGE_FABRIC_"):
            key = name.removeprefix("BLOCKIMAGE_FABRIC_").lower()
            if key in FABRIC_SETTINGS:
                values[key] = value.strip().strip("'\"")
    return values


def _checked(s: Settings) -> Settings:
    if s.storage not in STORAGE_BACKENDS:
        raise ConfigError(f"storage backend {s.storage!r} is not one of {STORAGE_BACKENDS}")
    if s.ledger not in LEDGER_BACKENDS:
        raise ConfigError(f"ledger backend {s.ledger!r} is not one of {LEDGER_BACKENDS}")
    if s.ledger == "fabric":
        missing = [n for n in FABRIC_REQUIRED if not s.fabric.get(n)]
        if missing:
            raise ConfigError(
                "ledger backend 'fabric' needs "
                + ", ".join(f"BLOCKIMAGE_FABRIC_{n.upper()}" for n in missing)
                + " (or [fabric] in config.toml, or a fabric.env in the home: "
                "see scripts/fabric-network.sh)"
            )
    if s.backbone not in BACKBONES:
        raise ConfigError(f"analysis backbone {s.backbone!r} is not one of {BACKBONES}")
    if not isinstance(s.kubo_api, str) or not s.kubo_api.startswith(("http://", "https://")):
        raise ConfigError(f"kubo_api {s.kubo_api!r} is not an http(s) URL")
    max_pixels = _positive_integer(s.max_pixels, "max_pixels")
    max_bytes = _positive_integer(s.max_file_bytes, "max_file_bytes")
    return replace(s, max_pixels=max_pixels, max_file_bytes=max_bytes)


def _positive_integer(value: object, name: str) -> int:
    """An integer from TOML or from an environment variable's digits; nothing else."""
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{name} must be a positive integer, not {value!r}")
    return value

"""Settings: config.toml, environment variables, and the Fabric settings' three sources."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from blockimage.cli import cli
from blockimage.config import ConfigError, load_settings

FABRIC_ENV = {
    "BLOCKIMAGE_FABRIC_GATEWAY": "127.0.0.1:7051",
    "BLOCKIMAGE_FABRIC_MSP_ID": "Org1MSP",
    "BLOCKIMAGE_FABRIC_CERT": "/c.pem",
    "BLOCKIMAGE_FABRIC_KEY": "/k.pem",
    "BLOCKIMAGE_FABRIC_TLS_CA": "/ca.pem",
}


def test_defaults_are_the_embedded_backends(tmp_path):
    s = load_settings(tmp_path, {})
    assert (s.storage, s.ledger) == ("local", "merkle")
    assert s.fabric["channel"] == s.fabric["chaincode"] == "blockimage"


def test_fabric_needs_its_settings_and_names_the_missing_ones(tmp_path):
    with pytest.raises(ConfigError, match="BLOCKIMAGE_FABRIC_CERT, BLOCKIMAGE_FABRIC_KEY"):
        load_settings(
            tmp_path,
            {
                "BLOCKIMAGE_LEDGER": "fabric",
                "BLOCKIMAGE_FABRIC_GATEWAY": "h:1",
                "BLOCKIMAGE_FABRIC_MSP_ID": "Org1MSP",
                "BLOCKIMAGE_FABRIC_TLS_CA": "/ca.pem",
            },
        )
    s = load_settings(tmp_path, {"BLOCKIMAGE_LEDGER": "fabric", **FABRIC_ENV})
    assert s.ledger == "fabric" and s.fabric["gateway"] == "127.0.0.1:7051"


def test_fabric_env_file_then_config_toml_then_environment(tmp_path):
    # fabric.env as scripts/fabric-network.sh writes it: other exports are ignored.
    (tmp_path / "fabric.env").write_text(
        "export PATH=/x:$PATH\n"
        + "".join(f"export {k}={v}\n" for k, v in FABRIC_ENV.items())
        + "export BLOCKIMAGE_FABRIC_CHANNEL=from-file\n"
    )
    (tmp_path / "config.toml").write_text(
        '[ledger]\nbackend = "fabric"\n[fabric]\nchannel = "from-toml"\nmsp_id = "Org2MSP"\n'
    )
    s = load_settings(tmp_path, {"BLOCKIMAGE_FABRIC_MSP_ID": "Org3MSP"})
    assert s.ledger == "fabric"
    assert s.fabric["channel"] == "from-toml"  # config.toml over fabric.env
    assert s.fabric["msp_id"] == "Org3MSP"  # the environment over both
    assert s.fabric["key"] == "/k.pem"  # fabric.env fills the rest
    assert "path" not in s.fabric


def test_cli_reports_missing_fabric_settings_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("BLOCKIMAGE_LEDGER", "fabric")
    for name in FABRIC_ENV:
        monkeypatch.delenv(name, raising=False)
    result = CliRunner().invoke(cli, ["--home", str(tmp_path / "h"), "history", "0" * 16])
    assert result.exit_code == 1
    assert "needs BLOCKIMAGE_FABRIC_GATEWAY" in result.output
    assert "Traceback" not in result.output

"""Shared fixtures: real sample photos (shipped by scikit-image) and fresh node homes."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from blockimage import Node
from blockimage.demo import sample_photos

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def photos() -> dict[str, Path]:
    """name -> path of the real sample photos (astronaut, coffee, chelsea, rocket, motorcycle)."""
    return {name: path for path, name in sample_photos()}


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def node(home: Path):
    with Node(home) as n:
        yield n


@pytest.fixture
def photo_file(tmp_path: Path, photos: dict[str, Path]):
    """Copy a sample photo into tmp_path (so outputs land there) and return its path."""

    def copy(name: str = "astronaut") -> Path:
        src = photos[name]
        dst = tmp_path / "in" / f"{name}{src.suffix}"
        dst.parent.mkdir(exist_ok=True)
        dst.write_bytes(src.read_bytes())
        return dst

    return copy


def jpeg_bytes(pixels: np.ndarray, quality: int = 85) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG", quality=quality)
    return out.getvalue()


def png_bytes(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "PNG")
    return out.getvalue()


def tree_snapshot(root: Path) -> dict[str, int]:
    """Relative path -> size of every file under root (to prove nothing was written)."""
    return {
        str(p.relative_to(root)): p.stat().st_size
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.endswith(("-wal", "-shm"))
    }


ROOT = Path(__file__).resolve().parent.parent


def script_exports(script: str, *args: str) -> dict[str, str]:
    """Run a development-network script (scripts/kubo.sh, scripts/fabric-network.sh) and parse
    the `export NAME=value` lines it prints."""
    import subprocess

    out = subprocess.run(
        [str(ROOT / "scripts" / script), *args], check=True, capture_output=True, text=True
    ).stdout
    return dict(line.removeprefix("export ").split("=", 1) for line in out.splitlines())


class KuboDaemon:
    """A Kubo daemon started with scripts/kubo.sh (closed network, loopback ports)."""

    def __init__(self, repo: Path) -> None:
        self.repo = repo
        self.api = script_exports("kubo.sh", "up", str(repo))["BLOCKIMAGE_KUBO_API"]
        self.ipfs = ROOT / ".cache/kubo/bin/ipfs"

    def run(self, *args: str, **kwargs):
        """Run the ipfs CLI against this daemon's repo."""
        import os
        import subprocess

        env = {**os.environ, "IPFS_PATH": str(self.repo), "IPFS_TELEMETRY": "off"}
        return subprocess.run(
            [str(self.ipfs), *args], env=env, check=True, capture_output=True, **kwargs
        )

    def stop(self) -> None:
        import subprocess

        subprocess.run(
            [str(ROOT / "scripts/kubo.sh"), "down", str(self.repo)], check=True, capture_output=True
        )


@pytest.fixture(scope="session")
def kubo_daemons(tmp_path_factory):
    """Start Kubo daemons on demand (built by scripts/kubo.sh if missing); stop them at the end."""
    started: list[KuboDaemon] = []

    def start() -> KuboDaemon:
        daemon = KuboDaemon(tmp_path_factory.mktemp("kubo"))
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        daemon.stop()


@pytest.fixture(scope="session")
def kubo(kubo_daemons) -> KuboDaemon:
    return kubo_daemons()


class FabricNetwork:
    """A Fabric network started with scripts/fabric-network.sh (native, loopback, ccaas)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.env = script_exports("fabric-network.sh", "up", str(directory))
        self.bin = self.env.pop("PATH").split(":")[0]  # where `peer` is

    def settings(self):
        from blockimage.ledger.fabric import FabricSettings

        return FabricSettings.from_exports(self.env)

    def node_env(self) -> dict[str, str]:
        """Environment variables that point a node at this network."""
        env = {k: v for k, v in self.env.items() if k.startswith("BLOCKIMAGE_FABRIC_")}
        env["BLOCKIMAGE_LEDGER"] = "fabric"
        return env

    def stop(self) -> None:
        import subprocess

        subprocess.run(
            [str(ROOT / "scripts/fabric-network.sh"), "down", str(self.directory)],
            check=True,
            capture_output=True,
        )


@pytest.fixture(scope="session")
def fabric(tmp_path_factory):
    """One Fabric network for the session (binaries built by the script if missing)."""
    network = FabricNetwork(tmp_path_factory.mktemp("fabric"))
    yield network
    network.stop()


class Server:
    """`blockimage serve` in its own process, on a free loopback port, until stopped."""

    def __init__(self, home: Path, log: Path, *args: str, env: dict[str, str] | None = None):
        import os
        import socket
        import subprocess
        import sys

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.home, self.log = home, log
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "blockimage",
                "--home",
                str(home),
                "serve",
                "--port",
                str(self.port),
                *args,
            ],  # fmt: skip
            stdout=subprocess.DEVNULL,
            stderr=log.open("wb"),
            env={**os.environ, **(env or {})},
            preexec_fn=_die_with_parent,  # no server outlives a killed test run
        )
        self.wait_ready()

    def wait_ready(self, timeout: float = 60) -> None:
        import time

        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"serve exited: {self.log.read_text()}")
            try:
                if httpx.get(self.url + "/healthz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"serve did not answer in {timeout} s: {self.log.read_text()}")

    def wait_workers(self, count: int, timeout: float = 120) -> None:
        """Until ``count`` image workers said they are ready (models loaded)."""
        import re
        import time

        deadline = time.monotonic() + timeout
        while len(re.findall(r"image worker \d+ ready", self.log.read_text())) < count:
            assert time.monotonic() < deadline, self.log.read_text()
            time.sleep(0.2)

    def stop(self) -> int:
        import signal
        import subprocess

        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise


def _die_with_parent() -> None:
    import ctypes
    import signal

    ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG (Linux)


@pytest.fixture
def start_server(tmp_path):
    """Start `serve` processes on demand (Server arguments); each is stopped when the test
    ends, passed or failed."""
    started: list[Server] = []

    def start(home: Path, *args: str, **kwargs) -> Server:
        server = Server(home, tmp_path / f"serve-{len(started)}.log", *args, **kwargs)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def server(tmp_path_factory, photos):
    """One service for the API, schema and browser tests: a home with one registered photo
    (astronaut, owner alice), tokens for alice and bob, 2 workers, a 2 MB upload cap."""
    import json

    from click.testing import CliRunner

    from blockimage.cli import cli

    root = tmp_path_factory.mktemp("serve")
    home = root / "home"
    runner = CliRunner()
    tokens = {}
    for owner in ("alice", "bob"):
        out = runner.invoke(
            cli, ["--home", str(home), "--json", "token", "create", "--owner", owner]
        )
        assert out.exit_code == 0, out.output
        tokens[owner] = json.loads(out.stdout)["token"]
    with Node(home) as node:
        receipt = node.register(photos["astronaut"], owner="alice", out=root)
        operator = node.keys.api_token()
    srv = Server(home, root / "serve.log", "--workers", "2", "--max-upload", "2")
    srv.tokens, srv.receipt, srv.operator = tokens, receipt, operator
    yield srv
    srv.stop()

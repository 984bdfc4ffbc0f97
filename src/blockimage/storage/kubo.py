"""Storage on a Kubo (go-ipfs) node through its RPC API (https://docs.ipfs.tech/reference/kubo/rpc/).

``add`` runs with ``cid-version=1&raw-leaves=true&chunker=size-262144&pin=true`` — the same
profile as the embedded blockstore, so both give identical CIDs. Reads trust nothing the node
says: ``get`` fetches the DAG as a CAR (``dag/export``), checks every block against its CID
and reassembles the file locally, so altered bytes are an error, not content. Every call has a
timeout:
Kubo waits forever for content that no connected peer has, so ``get`` gives up after
``fetch_timeout`` seconds with :class:`ContentNotFoundError`. A daemon that is down, or an
error Kubo reports, is a :class:`StorageError` that says which.
"""

from __future__ import annotations

from typing import Any

import httpx

from . import ContentNotFoundError, StorageError
from .car import InvalidCarError, read_car
from .unixfs import InvalidBlockError, cid_text, file_content, parse_cid

__all__ = ["KuboStorage", "KuboTimeoutError"]

_ADD_PARAMS = {
    "cid-version": "1",
    "raw-leaves": "true",
    "chunker": "size-262144",
    "pin": "true",
    "quieter": "true",
}


class KuboTimeoutError(StorageError):
    """A Kubo RPC call did not answer in time."""


class KuboStorage:
    """A :class:`~blockimage.storage.Storage` backed by a Kubo node's RPC API."""

    def __init__(
        self,
        api: str = "http://127.0.0.1:5001",
        *,
        timeout: float = 30.0,
        fetch_timeout: float = 20.0,
        has_timeout: float = 3.0,
    ) -> None:
        self.api = api.rstrip("/")
        self._fetch_timeout = fetch_timeout
        self._has_timeout = has_timeout
        self._client = httpx.Client(base_url=f"{self.api}/api/v0", timeout=timeout)

    def close(self) -> None:
        self._client.close()

    # -- Storage ----------------------------------------------------------------------------------
    def put(self, data: bytes) -> str:
        reply = self._call("add", params=_ADD_PARAMS, files={"file": ("blob", data)})
        return str(reply.json()["Hash"])

    def get(self, cid: str) -> bytes:
        root = parse_cid(cid)
        try:
            car = read_car(self.export_car(cid))
        except InvalidCarError as exc:
            raise StorageError(f"Kubo returned blocks that do not check for {cid}: {exc}") from None

        def block(wanted: bytes) -> bytes:
            if wanted not in car.blocks:
                raise StorageError(f"Kubo's export of {cid} lacks block {cid_text(wanted)}")
            return car.blocks[wanted]

        try:
            return file_content(root, block)
        except InvalidBlockError as exc:
            raise StorageError(f"Kubo returned an invalid DAG for {cid}: {exc}") from None

    def has(self, cid: str) -> bool:
        parse_cid(cid)
        try:
            self._call(
                "block/stat", params={"arg": cid, "offline": "true"}, timeout=self._has_timeout
            )
        except (ContentNotFoundError, KuboTimeoutError):
            return False
        return True

    def pin(self, cid: str) -> None:
        try:
            self._call("pin/add", params={"arg": cid}, timeout=self._fetch_timeout)
        except KuboTimeoutError:
            raise ContentNotFoundError(f"cannot pin {cid}: not found in time") from None

    def export_car(self, cid: str) -> bytes:
        """The DAG under ``cid`` as a CARv1 file (Kubo's ``dag export``)."""
        try:
            return self._call(
                "dag/export", params={"arg": cid}, timeout=self._fetch_timeout
            ).content
        except KuboTimeoutError:
            raise ContentNotFoundError(
                f"{cid}: not found within {self._fetch_timeout:.0f} s (no connected peer has it)"
            ) from None

    # -- RPC --------------------------------------------------------------------------------------
    def _call(self, command: str, *, timeout: float | None = None, **kwargs: Any) -> httpx.Response:
        try:
            reply = self._client.post(
                f"/{command}",
                timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
                **kwargs,
            )
        except httpx.TimeoutException:
            raise KuboTimeoutError(f"Kubo {command} at {self.api} did not answer in time") from None
        except httpx.TransportError as exc:
            raise StorageError(
                f"Kubo RPC API at {self.api} is not reachable ({exc.__class__.__name__}: {exc}); "
                "is the daemon running? (scripts/kubo.sh up)"
            ) from None
        if reply.status_code != 200:
            message = _error_message(reply)
            if "not found" in message or "no link named" in message:
                raise ContentNotFoundError(f"Kubo: {message}")
            raise StorageError(f"Kubo {command} failed ({reply.status_code}): {message}")
        return reply


def _error_message(reply: httpx.Response) -> str:
    try:
        return str(reply.json().get("Message", reply.text))
    except ValueError:
        return reply.text.strip() or f"HTTP {reply.status_code}"

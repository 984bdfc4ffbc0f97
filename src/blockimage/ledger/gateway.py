"""A client for the Hyperledger Fabric Gateway service (Fabric v2.4+), over gRPC with TLS.

Python has no official Fabric Gateway SDK; this is the protocol the official Go, Node and Java
SDKs speak, from the published protos (``hyperledger-fabric-protos``):

* **evaluate** (reads): a signed proposal → ``Gateway.Evaluate`` → the chaincode's response;
* **submit** (writes): a signed proposal → ``Gateway.Endorse`` returns the prepared transaction
  envelope → we sign its payload → ``Gateway.Submit`` → ``Gateway.CommitStatus`` (signed) waits
  until the peer has validated the block, returning the validation code and block number.

Signatures are ECDSA P-256 over SHA-256, DER-encoded, with S normalised to the lower half of the
curve order (Fabric rejects high-S signatures). The transaction id is SHA-256(nonce || creator).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import grpc
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from fabric_protos.common import common_pb2, ledger_pb2
from fabric_protos.gateway import gateway_pb2, gateway_pb2_grpc
from fabric_protos.ledger.rwset import rwset_pb2
from fabric_protos.ledger.rwset.kvrwset import kv_rwset_pb2
from fabric_protos.msp import identities_pb2
from fabric_protos.peer import (
    chaincode_pb2,
    proposal_pb2,
    proposal_response_pb2,
    transaction_pb2,
)
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import status_pb2

from . import LedgerError

__all__ = [
    "Gateway",
    "GatewayError",
    "GatewayUnavailableError",
    "EndorsementError",
    "CommitError",
    "Committed",
    "TransactionInBlock",
    "find_transaction",
    "validation_code_name",
]

# The order of the P-256 group: signatures with S > N/2 are replaced by (R, N - S).
_P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551

EVALUATE_TIMEOUT = 10.0
ENDORSE_TIMEOUT = 30.0
SUBMIT_TIMEOUT = 10.0
COMMIT_TIMEOUT = 60.0


class GatewayError(LedgerError):
    """The Fabric Gateway refused or failed a request."""


class GatewayUnavailableError(GatewayError):
    """The gateway peer could not be reached (down, wrong address, TLS mismatch) or timed out."""


class EndorsementError(GatewayError):
    """The chaincode (or the peer) rejected the proposal; ``message`` is the chaincode's."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class CommitError(GatewayError):
    """The transaction was ordered but the peers marked it invalid (``code`` names why)."""

    def __init__(self, tx_id: str, code: int, block_number: int) -> None:
        self.tx_id, self.code, self.block_number = tx_id, code, block_number
        super().__init__(
            f"transaction {tx_id} was not committed: {validation_code_name(code)} "
            f"(block {block_number})"
        )

    @property
    def conflict(self) -> bool:
        """An MVCC or phantom read conflict: a concurrent transaction won; retrying may succeed."""
        return self.code in (
            transaction_pb2.MVCC_READ_CONFLICT,
            transaction_pb2.PHANTOM_READ_CONFLICT,
        )


def validation_code_name(code: int) -> str:
    try:
        return transaction_pb2.TxValidationCode.Name(code)
    except ValueError:
        return f"validation code {code}"


@dataclass(frozen=True)
class Committed:
    """A submitted transaction that the peer validated and committed."""

    tx_id: str
    block_number: int
    validation_code: str
    result: bytes


@dataclass(frozen=True)
class TransactionInBlock:
    """Where a transaction sits on the channel, from the block that holds it."""

    tx_id: str
    block_number: int
    position: int
    validation_code: str
    block_data_hash: str
    writes: dict[str, bytes]  # key -> value written in the chaincode's namespace


def _error(exc: grpc.RpcError, what: str) -> GatewayError:
    code = exc.code() if hasattr(exc, "code") else None
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return GatewayUnavailableError(f"Fabric gateway {what}: {exc.details()} ({code.name})")
    details = []
    for key, value in exc.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            status = status_pb2.Status.FromString(value)
            for any_detail in status.details:
                detail = gateway_pb2.ErrorDetail()
                if any_detail.Unpack(detail):
                    details.append(detail.message)
    message = "; ".join(_chaincode_message(d) for d in details) or exc.details()
    if code == grpc.StatusCode.ABORTED or details:
        return EndorsementError(message)
    name = code.name if code is not None else "error"
    return GatewayError(f"Fabric gateway {what} failed ({name}): {message}")


def _chaincode_message(detail: str) -> str:
    # The peer wraps the chaincode's error: "chaincode response 500, <message>".
    marker = "chaincode response 500, "
    return detail.split(marker, 1)[1] if marker in detail else detail


class Gateway:
    """A signing identity connected to one gateway peer, for one channel and chaincode."""

    def __init__(
        self,
        endpoint: str,
        *,
        msp_id: str,
        cert: Path,
        key: Path,
        tls_ca: Path,
        channel: str,
        chaincode: str,
        tls_server_name: str | None = None,
    ) -> None:
        try:
            cert_pem = Path(cert).read_bytes()
            key_pem = Path(key).read_bytes()
            ca_pem = Path(tls_ca).read_bytes()
        except OSError as exc:
            raise GatewayError(f"cannot read Fabric identity or TLS file: {exc}") from None
        private = serialization.load_pem_private_key(key_pem, password=None)
        if not isinstance(private, ec.EllipticCurvePrivateKey):
            raise GatewayError(f"{key}: the Fabric signing key must be an ECDSA key")
        self._key = private
        self.msp_id, self.channel, self.chaincode, self.endpoint = (
            msp_id,
            channel,
            chaincode,
            endpoint,
        )
        self.creator = identities_pb2.SerializedIdentity(
            mspid=msp_id, id_bytes=cert_pem
        ).SerializeToString()
        options: list[tuple[str, int | str]] = [
            ("grpc.max_receive_message_length", 100 * 1024 * 1024)
        ]
        if tls_server_name:
            options.append(("grpc.ssl_target_name_override", tls_server_name))
        self._channel = grpc.secure_channel(
            endpoint, grpc.ssl_channel_credentials(root_certificates=ca_pem), options=options
        )
        self._stub = gateway_pb2_grpc.GatewayStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    # -- signing ----------------------------------------------------------------------------------
    def sign(self, data: bytes) -> bytes:
        """ECDSA P-256/SHA-256, DER, low-S."""
        r, s = decode_dss_signature(self._key.sign(data, ec.ECDSA(hashes.SHA256())))
        if s > _P256_N // 2:
            s = _P256_N - s
        return encode_dss_signature(r, s)

    def _proposal(
        self, chaincode: str, function: str, args: list[bytes], when: datetime | None
    ) -> tuple[str, proposal_pb2.SignedProposal]:
        nonce = os.urandom(24)
        tx_id = hashlib.sha256(nonce + self.creator).hexdigest()
        timestamp = Timestamp()
        timestamp.FromDatetime(when or datetime.now(timezone.utc))
        chaincode_id = chaincode_pb2.ChaincodeID(name=chaincode)
        channel_header = common_pb2.ChannelHeader(
            type=common_pb2.ENDORSER_TRANSACTION,
            channel_id=self.channel,
            tx_id=tx_id,
            timestamp=timestamp,
            extension=proposal_pb2.ChaincodeHeaderExtension(
                chaincode_id=chaincode_id
            ).SerializeToString(),
        )
        header = common_pb2.Header(
            channel_header=channel_header.SerializeToString(),
            signature_header=common_pb2.SignatureHeader(
                creator=self.creator, nonce=nonce
            ).SerializeToString(),
        )
        spec = chaincode_pb2.ChaincodeInvocationSpec(
            chaincode_spec=chaincode_pb2.ChaincodeSpec(
                type=chaincode_pb2.ChaincodeSpec.GOLANG,
                chaincode_id=chaincode_id,
                input=chaincode_pb2.ChaincodeInput(args=[function.encode(), *args]),
            )
        )
        proposal = proposal_pb2.Proposal(
            header=header.SerializeToString(),
            payload=proposal_pb2.ChaincodeProposalPayload(
                input=spec.SerializeToString()
            ).SerializeToString(),
        )
        proposal_bytes = proposal.SerializeToString()
        signed = proposal_pb2.SignedProposal(
            proposal_bytes=proposal_bytes, signature=self.sign(proposal_bytes)
        )
        return tx_id, signed

    # -- the four calls ---------------------------------------------------------------------------
    def evaluate(self, function: str, *args: str | bytes, chaincode: str | None = None) -> bytes:
        """Run a read-only query on one peer; return the chaincode's response payload."""
        tx_id, signed = self._proposal(chaincode or self.chaincode, function, _encode(args), None)
        request = gateway_pb2.EvaluateRequest(
            transaction_id=tx_id, channel_id=self.channel, proposed_transaction=signed
        )
        try:
            response = self._stub.Evaluate(request, timeout=EVALUATE_TIMEOUT)
        except grpc.RpcError as exc:
            raise _error(exc, f"at {self.endpoint}: evaluate {function}") from None
        return response.result.payload

    def submit(self, function: str, *args: str | bytes, when: datetime | None = None) -> Committed:
        """Endorse, order and commit a transaction; return when the peer has committed it.

        Raises :class:`EndorsementError` with the chaincode's message when it refuses,
        :class:`CommitError` when the transaction is ordered but invalid (e.g. an MVCC conflict).
        """
        tx_id, signed = self._proposal(self.chaincode, function, _encode(args), when)
        try:
            endorsed = self._stub.Endorse(
                gateway_pb2.EndorseRequest(
                    transaction_id=tx_id, channel_id=self.channel, proposed_transaction=signed
                ),
                timeout=ENDORSE_TIMEOUT,
            )
        except grpc.RpcError as exc:
            raise _error(exc, f"at {self.endpoint}: endorse {function}") from None
        envelope = endorsed.prepared_transaction
        envelope.signature = self.sign(envelope.payload)
        try:
            self._stub.Submit(
                gateway_pb2.SubmitRequest(
                    transaction_id=tx_id, channel_id=self.channel, prepared_transaction=envelope
                ),
                timeout=SUBMIT_TIMEOUT,
            )
            request = gateway_pb2.CommitStatusRequest(
                transaction_id=tx_id, channel_id=self.channel, identity=self.creator
            ).SerializeToString()
            status = self._stub.CommitStatus(
                gateway_pb2.SignedCommitStatusRequest(
                    request=request, signature=self.sign(request)
                ),
                timeout=COMMIT_TIMEOUT,
            )
        except grpc.RpcError as exc:
            raise _error(exc, f"at {self.endpoint}: submit {function} ({tx_id})") from None
        if status.result != transaction_pb2.VALID:
            raise CommitError(tx_id, status.result, status.block_number)
        action = _chaincode_action(envelope.payload)
        return Committed(tx_id, status.block_number, "VALID", action.response.payload)

    # -- evidence from the ledger itself (the qscc system chaincode) ------------------------------
    def block_by_tx_id(self, tx_id: str) -> common_pb2.Block:
        data = self.evaluate("GetBlockByTxID", self.channel, tx_id, chaincode="qscc")
        return common_pb2.Block.FromString(data)

    def chain_info(self) -> tuple[int, str]:
        """(height, hex hash of the newest block) of the channel."""
        info = ledger_pb2.BlockchainInfo.FromString(
            self.evaluate("GetChainInfo", self.channel, chaincode="qscc")
        )
        return info.height, info.currentBlockHash.hex()


def _encode(args: tuple[str | bytes, ...]) -> list[bytes]:
    return [a.encode() if isinstance(a, str) else bytes(a) for a in args]


def _chaincode_action(payload_bytes: bytes) -> proposal_pb2.ChaincodeAction:
    """The endorsed chaincode action (response and read-write sets) inside a transaction."""
    payload = common_pb2.Payload.FromString(payload_bytes)
    transaction = transaction_pb2.Transaction.FromString(payload.data)
    action_payload = transaction_pb2.ChaincodeActionPayload.FromString(
        transaction.actions[0].payload
    )
    response_payload = proposal_response_pb2.ProposalResponsePayload.FromString(
        action_payload.action.proposal_response_payload
    )
    return proposal_pb2.ChaincodeAction.FromString(response_payload.extension)


def block_data_hash(block: common_pb2.Block) -> bytes:
    """SHA-256 of the block's envelopes, concatenated (Fabric's block data hash)."""
    return hashlib.sha256(b"".join(block.data.data)).digest()


def find_transaction(block: common_pb2.Block, tx_id: str, namespace: str) -> TransactionInBlock:
    """Locate ``tx_id`` in ``block``: its position, validation code and the keys it wrote.

    The block's transactions must hash to its header's data hash (SHA-256 of the concatenated
    envelopes, as Fabric's ``protoutil.ComputeBlockDataHash``), the value the orderer signed
    into the chain: a peer cannot change a transaction without changing it."""
    data_hash = block_data_hash(block)
    if data_hash != block.header.data_hash:
        raise GatewayError(
            f"block {block.header.number}: its transactions hash to {data_hash.hex()}, "
            f"not to the header's data hash {block.header.data_hash.hex()}"
        )
    flags = block.metadata.metadata[common_pb2.TRANSACTIONS_FILTER]
    for position, envelope_bytes in enumerate(block.data.data):
        envelope = common_pb2.Envelope.FromString(envelope_bytes)
        payload = common_pb2.Payload.FromString(envelope.payload)
        header = common_pb2.ChannelHeader.FromString(payload.header.channel_header)
        if header.tx_id != tx_id:
            continue
        code = flags[position] if position < len(flags) else transaction_pb2.NOT_VALIDATED
        writes: dict[str, bytes] = {}
        action = _chaincode_action(envelope.payload)
        rwset = rwset_pb2.TxReadWriteSet.FromString(action.results)
        for ns in rwset.ns_rwset:
            if ns.namespace == namespace:
                for write in kv_rwset_pb2.KVRWSet.FromString(ns.rwset).writes:
                    writes[write.key] = write.value
        return TransactionInBlock(
            tx_id=tx_id,
            block_number=block.header.number,
            position=position,
            validation_code=validation_code_name(code),
            block_data_hash=block.header.data_hash.hex(),
            writes=writes,
        )
    raise GatewayError(f"transaction {tx_id} is not in block {block.header.number}")

"""The one exception root of BlockImage, and the errors of the register and verify flows.

Every error that BlockImage raises on purpose inherits :class:`BlockImageError`, so a caller
(the CLI, the HTTP service, a script) catches one class and shows its message: the message is
written for the user and names the next step where there is one. Errors keep a built-in base
that says what kind of failure they are (``ValueError`` for a bad input, ``KeyError`` for a
missing record, ``RuntimeError`` for a backend that failed), so ``except ValueError`` still works.

Errors of one part live beside its code and inherit the root: ``imaging.InvalidImageError``,
``config.ConfigError``, ``keys.InvalidOwnerError`` / ``keys.KeyFileError``,
``ledger.LedgerError`` (and ``RecordNotFoundError``, ``DuplicateRecordError``, ``AuditFailure``,
the Fabric gateway's errors), ``storage.StorageError`` (and ``ContentNotFoundError``),
``records.RecordFormatError`` / ``InvalidRecordSignatureError``, the proof errors of
``ledger.merkle`` / ``ledger.checkpoint`` / ``bundle``, ``watermark.WatermarkCapacityError``,
``analysis.ModelNotFoundError``. Plain ``ValueError`` is left for programming errors (an array of
the wrong shape handed to a pure function), which a user of the CLI cannot cause.
"""

from __future__ import annotations

__all__ = [
    "BlockImageError",
    "InvalidInputError",
    "DuplicateContentError",
    "BackendUnavailableError",
    "WatermarkNotRecoverableError",
    "OriginalUnavailableError",
    "OutputNotWrittenError",
]


class BlockImageError(Exception):
    """Root of every error BlockImage raises on purpose; its message is for the user."""


class InvalidInputError(BlockImageError, ValueError):
    """An input file cannot be used: missing, unreadable, not a regular file, or too large."""


class DuplicateContentError(BlockImageError, ValueError):
    """The content is already registered; a second 'original' is refused."""


class BackendUnavailableError(BlockImageError, RuntimeError):
    """The configured backend is not available in this build or not reachable."""


class WatermarkNotRecoverableError(BlockImageError, ValueError):
    """The watermark did not survive saving the registered file (nothing was registered)."""


class OriginalUnavailableError(BlockImageError, RuntimeError):
    """A registered record was found, but its stored original could not be fetched or did not
    match the record, so no benign or tampered verdict can be given (verdicts fail closed)."""

    def __init__(self, message: str, *, record_id: str, matched_by: str) -> None:
        super().__init__(message)
        self.record_id = record_id
        self.matched_by = matched_by

    def __reduce__(self) -> tuple[object, ...]:  # crosses process boundaries (batches)
        return (_rebuild_unavailable, (str(self), self.record_id, self.matched_by))


def _rebuild_unavailable(message: str, record_id: str, matched_by: str) -> BlockImageError:
    return OriginalUnavailableError(message, record_id=record_id, matched_by=matched_by)


class OutputNotWrittenError(BlockImageError, OSError):
    """The record was committed but the registered file could not be written where asked."""

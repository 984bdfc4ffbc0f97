"""Channel coding of the 64-bit watermark payload: CRC-16, BCH, keyed whitening.

Layout of the 156 coded bits: 64-bit payload (big-endian) || CRC-16/CCITT of it, as 10 bytes,
then the 76 parity bits of a binary BCH code over GF(2^8) correcting t = 10 bit errors
(Linux kernel BCH via ``bchlib``), all XORed with a keyed pseudo-random sequence so the bits on
the image look random and cannot be read without the key.

False positives: for an unmarked image the soft decoder produces essentially random bits. A
random 156-bit word lies within distance 10 of one of the 2^80 codewords with probability
C(156, <=10) * 2^80 / 2^156 = 2.5e-8 (2^-25.3), and then the CRC-16 must also hold (2^-16):
3.8e-13 per decoding attempt, so 1e-6 allows some 2.6 million attempts (an extraction makes
at most 17 x 108).
"""

from __future__ import annotations

import binascii
import functools
import hashlib
import hmac

import bchlib
import numpy as np

__all__ = ["CODED_BITS", "encode_payload", "decode_bits", "keyed_rng"]

_BCH_T = 10
_BCH_M = 8
_DATA_BYTES = 10  # 8 payload + 2 CRC
_BCH = bchlib.BCH(t=_BCH_T, m=_BCH_M)
_PARITY_BITS = _BCH.ecc_bits  # 76
CODED_BITS = _DATA_BYTES * 8 + _PARITY_BITS  # 156


def keyed_rng(key: bytes, purpose: str) -> np.random.Generator:
    """A PCG64 generator seeded from HMAC-SHA256(key, purpose): independent streams per use."""
    digest = hmac.new(key, b"blockimage-watermark-v1/" + purpose.encode(), hashlib.sha256).digest()
    return np.random.Generator(np.random.PCG64(int.from_bytes(digest, "big")))


@functools.lru_cache(maxsize=16)
def _whitening(key: bytes) -> np.ndarray:
    bits = keyed_rng(key, "whiten").integers(0, 2, CODED_BITS, dtype=np.uint8)
    bits.flags.writeable = False  # shared by every call with this key
    return bits


def _crc16(data: bytes) -> bytes:
    return binascii.crc_hqx(data, 0xFFFF).to_bytes(2, "big")


def encode_payload(payload: int, key: bytes) -> np.ndarray:
    """The 156 whitened coded bits (uint8 0/1) carrying ``payload`` (0 <= payload < 2^64)."""
    if not 0 <= payload < 1 << 64:
        raise ValueError(f"payload must be a 64-bit unsigned integer, got {payload}")
    data = payload.to_bytes(8, "big")
    data += _crc16(data)
    ecc = _BCH.encode(data)
    bits = np.unpackbits(np.frombuffer(data + bytes(ecc), dtype=np.uint8))[:CODED_BITS]
    return bits ^ _whitening(key)


def decode_bits(bits: np.ndarray, key: bytes) -> tuple[int | None, int]:
    """Decode 156 hard bits: (payload or None, number of bit errors corrected)."""
    raw = np.asarray(bits, dtype=np.uint8) ^ _whitening(key)
    packed = np.packbits(raw).tobytes()  # 20 bytes; the last 4 bits are padding
    data = bytearray(packed[:_DATA_BYTES])
    ecc = bytearray(packed[_DATA_BYTES:])
    nerr = _BCH.decode(data, ecc)
    if nerr < 0:
        return None, -1
    _BCH.correct(data, ecc)
    if _crc16(bytes(data[:8])) != bytes(data[8:10]):
        return None, -1
    return int.from_bytes(data[:8], "big"), nerr

"""Payload codecs: byte transforms (compression, encryption) applied to every stored value
that can hold user data — history and inbox bodies, arguments, results, failures, heartbeat
details, query and update traffic.

A sealed value is framed as ``0xC1, len(name), name, codec output``. 0xC1 is the one byte
msgpack never uses, and every plain value durable stores is msgpack, so plain and sealed
values tell themselves apart: turning codecs on (or adding a key) needs no migration, and a
reader missing a codec gets an error naming it instead of garbage.
"""

from __future__ import annotations

import os
import zlib
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import overload

from ._errors import PayloadError

_MARK = 0xC1
_MAX_LAYERS = 8
# A decompressed value may not exceed this: a tiny stored value cannot expand without bound.
_MAX_DECOMPRESSED = 64 * 1024 * 1024


class PayloadCodec(ABC):
    """A reversible transform of stored bytes. ``name`` is written with every value it
    encodes and picks the codec that decodes it, so it must never change once used."""

    name: str

    @abstractmethod
    def encode(self, data: bytes) -> bytes | None:
        """The encoded bytes, or None to store ``data`` as it is (e.g. too small to compress)."""

    @abstractmethod
    def decode(self, data: bytes) -> bytes:
        """Invert :meth:`encode`; raise :class:`durable.PayloadError` on bad input."""


class ZlibCodec(PayloadCodec):
    """zlib compression of values of at least ``min_size`` bytes, kept only when smaller."""

    name = "zlib"

    def __init__(self, *, level: int = 6, min_size: int = 256) -> None:
        if not isinstance(level, int) or not -1 <= level <= 9:
            raise ValueError(f"level={level!r}: expected an int from -1 to 9 (zlib levels)")
        if not isinstance(min_size, int) or min_size < 0:
            raise ValueError(f"min_size={min_size!r}: expected a byte count >= 0")
        self.level = level
        self.min_size = min_size

    def encode(self, data: bytes) -> bytes | None:
        if len(data) < self.min_size:
            return None
        packed = zlib.compress(data, self.level)
        return packed if len(packed) < len(data) else None

    def decode(self, data: bytes) -> bytes:
        inflater = zlib.decompressobj()
        try:
            out = inflater.decompress(data, _MAX_DECOMPRESSED)
        except zlib.error as exc:
            raise PayloadError(f"corrupt zlib-compressed payload: {exc}") from None
        if inflater.unconsumed_tail:
            raise PayloadError(
                f"a zlib-compressed payload expands beyond {_MAX_DECOMPRESSED} bytes; refused"
            )
        if not inflater.eof:
            raise PayloadError("corrupt zlib-compressed payload: truncated")
        return out


class AesGcmCodec(PayloadCodec):
    """AES-GCM encryption (from the ``cryptography`` package) with key rotation.

    ``keys`` maps key ids to 16, 24 or 32 byte keys; ``encrypt_with`` names the key that
    encrypts new values. Every value records the id of its key, so values written under
    older keys keep decrypting as long as their key stays in ``keys``. Each value gets a
    fresh random 96-bit nonce; the key id is authenticated with the ciphertext.
    """

    name = "aes-gcm"

    def __init__(self, keys: Mapping[str, bytes], *, encrypt_with: str) -> None:
        try:
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        except ImportError:
            raise ImportError(
                "AesGcmCodec needs the 'cryptography' package: "
                "pip install 'durable-workflows[crypto]'"
            ) from None
        if not isinstance(keys, Mapping) or not keys:
            raise ValueError("keys: expected a non-empty mapping of key id -> key bytes")
        self._ciphers = {
            _key_id(key_id): AESGCM(_key_bytes(key_id, key)) for key_id, key in keys.items()
        }
        if encrypt_with not in keys:
            raise ValueError(
                f"encrypt_with={encrypt_with!r} is not one of the key ids {sorted(keys)!r}"
            )
        self._current = _key_id(encrypt_with)

    def encode(self, data: bytes) -> bytes:
        header = bytes([len(self._current)]) + self._current
        nonce = os.urandom(12)
        return header + nonce + self._ciphers[self._current].encrypt(nonce, data, header)

    def decode(self, data: bytes) -> bytes:
        from cryptography.exceptions import InvalidTag

        size = data[0] if data else 0
        header, nonce, sealed = data[: 1 + size], data[1 + size : 13 + size], data[13 + size :]
        if len(nonce) != 12 or len(header) != 1 + size:
            raise PayloadError("corrupt encrypted payload: truncated header")
        cipher = self._ciphers.get(header[1:])
        if cipher is None:
            shown = header[1:].decode("utf-8", "replace")
            raise PayloadError(
                f"a stored payload is encrypted with key id {shown!r}, which is not among this "
                f"codec's keys {sorted(k.decode() for k in self._ciphers)!r}; keep old keys in "
                "AesGcmCodec(keys=...) until nothing written with them remains"
            )
        try:
            out: bytes = cipher.decrypt(nonce, sealed, header)
        except InvalidTag:
            raise PayloadError(
                "an encrypted payload failed authentication: wrong key for its key id, "
                "or the stored bytes were altered"
            ) from None
        return out


def _key_id(key_id: object) -> bytes:
    encoded = key_id.encode() if isinstance(key_id, str) else b""
    if not 1 <= len(encoded) <= 255:
        raise ValueError(f"key id {key_id!r}: expected a non-empty str of at most 255 bytes")
    return encoded


def _key_bytes(key_id: str, key: object) -> bytes:
    if not isinstance(key, bytes) or len(key) not in (16, 24, 32):
        shown = f"{len(key)} bytes" if isinstance(key, bytes) else type(key).__name__
        raise ValueError(
            f"key {key_id!r}: expected 16, 24 or 32 bytes (AES-128/192/256), got {shown}; "
            "make one with os.urandom(32)"
        )
    return key


class Codecs:
    """An ordered chain of codecs: applied first to last when sealing, undone in reverse."""

    def __init__(self, codecs: Sequence[PayloadCodec] = ()) -> None:
        chain = list(codecs)
        names: dict[bytes, PayloadCodec] = {}
        for codec in chain:
            if not isinstance(codec, PayloadCodec):
                raise TypeError(
                    f"codecs: {codec!r} is not a durable.PayloadCodec; pass instances such as "
                    "ZlibCodec() or AesGcmCodec(keys, encrypt_with=...)"
                )
            name = _codec_name(codec)
            if name in names:
                raise ValueError(f"codecs: two codecs are named {codec.name!r}")
            names[name] = codec
        self._chain = [(_codec_name(c), c) for c in chain]
        self._by_name = names

    @overload
    def seal(self, data: bytes) -> bytes: ...
    @overload
    def seal(self, data: bytes | None) -> bytes | None: ...
    def seal(self, data: bytes | None) -> bytes | None:
        if data is None:
            return data
        for name, codec in self._chain:
            encoded = codec.encode(data)
            if encoded is not None:
                data = bytes([_MARK, len(name)]) + name + encoded
        return data

    @overload
    def open(self, data: bytes) -> bytes: ...
    @overload
    def open(self, data: bytes | None) -> bytes | None: ...
    def open(self, data: bytes | None) -> bytes | None:
        for _ in range(_MAX_LAYERS):
            if not data or data[0] != _MARK:
                return data
            size = data[1] if len(data) > 1 else 0
            name = data[2 : 2 + size]
            codec = self._by_name.get(name)
            if codec is None or len(name) != size or size == 0:
                raise PayloadError(_missing_codec_message(name))
            data = codec.decode(data[2 + size :])
        raise PayloadError(f"a stored payload has more than {_MAX_LAYERS} codec layers; refused")


def _codec_name(codec: PayloadCodec) -> bytes:
    name = getattr(codec, "name", None)
    encoded = name.encode() if isinstance(name, str) else b""
    if not 1 <= len(encoded) <= 64:
        raise ValueError(
            f"codec {codec!r}: its name must be a non-empty str of at most 64 bytes, got {name!r}"
        )
    return encoded


def _missing_codec_message(name: bytes) -> str:
    shown = name.decode("utf-8", "replace")
    return (
        f"a stored payload is encoded with codec {shown!r}, which this client or worker was "
        f"not given; connect with Client.connect(..., codecs=[...]) including a {shown!r} "
        "codec (the CLI takes --codecs MODULE:ATTR)"
    )


PLAIN = Codecs()

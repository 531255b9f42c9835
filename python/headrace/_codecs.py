"""Payload decoders called from Rust.

JSON goes straight to ``orjson.loads`` (no Python frame per event). msgpack
goes through here so that trailing bytes are an error, never silently ignored.
"""

from __future__ import annotations

from typing import Any

import msgpack


class MsgpackDecodeError(ValueError):
    """Undecodable msgpack; ``pos`` is the byte offset where decoding stopped."""

    def __init__(self, message: str, pos: int | None) -> None:
        super().__init__(message)
        self.pos = pos


def unpack_msgpack(data: bytes) -> Any:
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=False)
    except msgpack.ExtraData as e:
        pos = len(data) - len(e.extra)
        raise MsgpackDecodeError(f"{len(e.extra)} trailing byte(s) after a complete value", pos) from e
    except (ValueError, msgpack.UnpackException) as e:
        raise MsgpackDecodeError(str(e) or type(e).__name__, None) from e

"""Jupyter messages on a kernel websocket, the way Jupyter Server 2 (and so Kernel Gateway
3 and Enterprise Gateway 3) frames them.

Two formats, chosen per connection by the websocket subprotocol:

* ``v1.kernel.websocket.jupyter.org`` (``V1``): every message is one binary frame: a
  little-endian 64-bit count ``n`` of offsets, ``n`` little-endian 64-bit offsets, then
  the channel name and the message's parts (header, parent header, metadata, content,
  buffers...) back to back; offset ``i`` is where piece ``i`` starts, the last one is the
  end. The server forwards the parts as the kernel sent them (no re-encoding), and signs
  what the client sends.
* the legacy format (no subprotocol): a message without buffers is a text frame holding
  the message as JSON with a ``channel`` key; one with buffers is a binary frame: a
  big-endian 32-bit count ``n`` of pieces, ``n`` big-endian 32-bit offsets, then the
  JSON and the buffers.

Everything decoded here came from model code's reach (the kernel's session can send any
bytes), so offsets are checked before any slice, JSON errors (deep nesting included)
become ``BadMessage``, and a message of too many parts is refused.
"""

from __future__ import annotations

import json
import struct
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from itertools import pairwise
from typing import Any

from jupyter_client.session import json_packer

from lmrepl.repl.kernel_validate import MAX_FRAMES, BadMessage

__all__ = ["V1", "decode", "encode", "new_header"]

#: The websocket subprotocol of Jupyter Server 2's kernel channels.
V1 = "v1.kernel.websocket.jupyter.org"
#: Channels a kernel's messages may come on (anything else is refused).
CHANNELS = frozenset({"shell", "iopub", "stdin", "control"})
#: The message protocol version the host speaks (as jupyter_client's sessions).
PROTOCOL_VERSION = "5.3"

Piece = bytes | memoryview


def new_header(msg_type: str, session: str) -> dict[str, Any]:
    """A fresh message header from session ``session``."""
    return {
        "msg_id": uuid.uuid4().hex,
        "session": session,
        "username": "lmrepl",
        "date": datetime.now(UTC).isoformat(),
        "msg_type": msg_type,
        "version": PROTOCOL_VERSION,
    }


def encode(
    channel: str,
    header: dict[str, Any],
    content: dict[str, Any],
    metadata: dict[str, Any] | None = None,
    buffers: Sequence[Piece] | None = None,
    *,
    v1: bool,
) -> bytes | str:
    """One message (no parent) as the frame to send: bytes, or str for a legacy text frame."""
    if v1:
        parts: list[Piece] = [
            json_packer(header),
            json_packer({}),
            json_packer(metadata or {}),
            json_packer(content),
            *(buffers or ()),
        ]
        return _pack_v1(channel, parts)
    msg = {
        "channel": channel,
        "header": header,
        "parent_header": {},
        "metadata": metadata or {},
        "content": content,
    }
    if not buffers:
        return json_packer(msg).decode("utf-8", "surrogateescape")
    return _pack_legacy_binary(json_packer(msg), list(buffers))


def _pack_v1(channel: str, parts: Sequence[Piece]) -> bytes:
    name = channel.encode("utf-8")
    count = len(parts) + 2  # the channel's start, each part's start, the end
    offsets = [8 * (1 + count)]
    offsets.append(offsets[-1] + len(name))
    for part in parts:
        offsets.append(offsets[-1] + _size(part))
    head = struct.pack(f"<{count + 1}Q", count, *offsets)
    return b"".join([head, name, *parts])


def _pack_legacy_binary(body: bytes, buffers: list[Piece]) -> bytes:
    pieces: list[Piece] = [body, *buffers]
    count = len(pieces)
    offsets = [4 * (count + 1)]
    for piece in pieces[:-1]:
        offsets.append(offsets[-1] + _size(piece))
    head = struct.pack(f"!{count + 1}I", count, *offsets)
    return b"".join([head, *pieces])


def _size(piece: Piece) -> int:
    return piece.nbytes if isinstance(piece, memoryview) else len(piece)


def decode(frame: bytes | str, *, v1: bool) -> dict[str, Any]:
    """A received frame as a message dict with its ``channel``; ``BadMessage`` if malformed.

    The dict has the keys ``kernel_validate.envelope`` checks (``header``,
    ``parent_header``, ``content``) plus ``metadata``, ``buffers`` and ``channel``.
    """
    if v1:
        if isinstance(frame, str):
            raise BadMessage("a text frame on a v1 kernel websocket")
        channel, parts = _unpack_v1(frame)
        if len(parts) < 4:
            raise BadMessage(f"a message of {len(parts)} parts (4 at least)")
        msg = {
            "header": _json(parts[0], "header"),
            "parent_header": _json(parts[1], "parent header"),
            # The host never reads a kernel's metadata: it is not decoded.
            "metadata": {},
            "content": _json(parts[3], "content"),
            "buffers": [bytes(p) for p in parts[4:]],
        }
    else:
        if isinstance(frame, str):
            msg, buffers = _json(frame, "message"), []
        else:
            pieces = _unpack_legacy_binary(frame)
            msg, buffers = _json(pieces[0], "message"), [bytes(p) for p in pieces[1:]]
        if not isinstance(msg, dict):
            raise BadMessage(f"a message must be a JSON object, got {type(msg).__name__}")
        channel = msg.pop("channel", None)
        msg["buffers"] = buffers
    if not isinstance(channel, str) or channel not in CHANNELS:
        raise BadMessage(f"a message on an unknown channel {str(channel)[:40]!r}")
    msg["channel"] = channel
    return msg


def _offsets(frame: bytes, width: int, order: str, what: str) -> list[int]:
    """Checked offsets: inside the frame, never decreasing, the first after the table."""
    fmt = "<Q" if order == "<" else "!I"
    if len(frame) < width:
        raise BadMessage(f"{what}: a frame of {len(frame)} bytes")
    (count,) = struct.unpack_from(fmt, frame, 0)
    if not 1 <= count <= MAX_FRAMES + 2 or width * (count + 1) > len(frame):
        raise BadMessage(f"{what}: {count} offsets in a frame of {len(frame)} bytes")
    offsets = list(struct.unpack_from(f"{order}{count}{fmt[1]}", frame, width))
    previous = width * (count + 1)
    for offset in offsets:
        if not previous <= offset <= len(frame):
            raise BadMessage(f"{what}: an offset outside the frame")
        previous = offset
    if offsets[0] != width * (count + 1):
        raise BadMessage(f"{what}: the first piece does not follow the offsets")
    return offsets


def _unpack_v1(frame: bytes) -> tuple[str, list[memoryview]]:
    offsets = _offsets(frame, 8, "<", "v1 message")
    if len(offsets) < 2:
        raise BadMessage("v1 message: no channel")
    view = memoryview(frame)
    try:
        channel = bytes(view[offsets[0] : offsets[1]]).decode("utf-8")
    except UnicodeDecodeError:
        raise BadMessage("v1 message: the channel is not UTF-8") from None
    parts = [view[a:b] for a, b in pairwise(offsets[1:])]
    return channel, parts


def _unpack_legacy_binary(frame: bytes) -> list[memoryview]:
    offsets = _offsets(frame, 4, "!", "binary message")
    view = memoryview(frame)
    ends = [*offsets[1:], len(frame)]
    return [view[a:b] for a, b in zip(offsets, ends, strict=True)]


def _json(data: Piece | str, what: str) -> Any:
    try:
        return json.loads(bytes(data) if isinstance(data, memoryview) else data)
    except (ValueError, RecursionError, MemoryError) as exc:
        raise BadMessage(f"{what}: not JSON ({type(exc).__name__})") from None

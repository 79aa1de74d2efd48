"""The link to a kernel behind a Jupyter gateway: one websocket, every channel on it.

``GatewayLink`` is the ``kernel_channels.Link`` of a ``gateway.GatewayKernel``. A reader
thread receives the websocket's frames, decodes them (``gateway_wire``) and queues the
messages; a pipe whose read end the driver polls with ``zmq.Poller`` holds a byte while
the queue holds a message or the link is lost, so the driver wakes on both as it does on
zmq sockets, with no request to the gateway per tick.

What the gateway sends is untrusted (model code reaches its kernel's session):

* the websocket refuses a message over ``MAX_MESSAGE_BYTES`` from its frame header,
  before reading it (``max_size``), and closes the connection; like libzmq's
  ``MAXMSGSIZE`` on a local kernel, that loses the kernel, which the REPL replaces;
* a frame that does not decode is queued as a ``BadMessage``, a fault of the cell;
* the queue is bounded: past it, IOPub messages are dropped and counted, and a flood on
  another channel loses the link;
* a ``restarting`` or ``dead`` status on IOPub (the gateway's word that the kernel
  process ended and was replaced) or a closed websocket loses the link, so a kernel
  that died is noticed within the gateway's own restart check (a few seconds).
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import uuid
import weakref
from collections import deque
from collections.abc import Collection
from typing import Any

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Subprotocol

from lmrepl.repl import gateway_wire as wire
from lmrepl.repl.kernel_channels import Lost, Source
from lmrepl.repl.kernel_validate import MAX_MESSAGE_BYTES, BadMessage

__all__ = ["GatewayLink"]

#: The most bytes and messages waiting for the driver before the link refuses more.
QUEUE_BYTES = 2 * MAX_MESSAGE_BYTES
QUEUE_MESSAGES = 10_000
#: The websocket close code for a message over ``max_size`` (RFC 6455).
_TOO_BIG = 1009


def _quick_ack(sock: socket.socket | None) -> None:
    """Acknowledge the gateway's next packets at once.

    Jupyter Server leaves Nagle's algorithm on for kernel websockets, so its second small
    frame waits for our ACK of the first, which Linux delays by ~40 ms: measured on
    loopback, every cell took ~48 ms instead of ~6 ms. ``TCP_QUICKACK`` is not sticky,
    so it is set again after each message.
    """
    if sock is not None and hasattr(socket, "TCP_QUICKACK"):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)


class _Queue:
    """The link's messages as the driver's ``Source`` (all channels in one)."""

    def __init__(self, link: GatewayLink) -> None:
        self._link = link
        self.pollable = link._pipe_r

    def recv(self) -> dict[str, Any] | None:
        """The next queued message; ``BadMessage`` for a refused one or for drops."""
        return self._link._pop()


class GatewayLink:
    """A kernel's channels over the gateway's websocket ``url`` (``/api/kernels/<id>/channels``).

    ``headers`` carry the gateway's token; they are sent to the gateway only.
    """

    def __init__(self, url: str, headers: dict[str, str], timeout: float) -> None:
        self._lock = threading.Lock()
        self._items: deque[tuple[dict[str, Any] | BadMessage, int]] = deque()
        self._bytes = 0
        self._dropped = 0
        self._lost: Lost | None = None
        self._pipe_r, self._pipe_w = os.pipe()
        for fd in (self._pipe_r, self._pipe_w):
            os.set_blocking(fd, False)
        # Closed with the object, not in ``close``: a driver may still poll the read end.
        weakref.finalize(self, _close_fds, self._pipe_r, self._pipe_w)
        self.session_id = uuid.uuid4().hex
        self._stack = contextlib.ExitStack()
        sep = "&" if "?" in url else "?"
        self._ws: ClientConnection = self._stack.enter_context(
            connect(
                f"{url}{sep}session_id={self.session_id}",
                additional_headers=headers,
                subprotocols=[Subprotocol(wire.V1)],
                # Compression would let a small frame inflate past the limit and costs CPU
                # on both ends; kernel messages are mostly small.
                compression=None,
                max_size=MAX_MESSAGE_BYTES,
                open_timeout=timeout,
                ping_interval=20,
                ping_timeout=60,
                close_timeout=2,
                user_agent_header="lmrepl",
            )
        )
        #: True when the gateway speaks the v1 kernel protocol, False for legacy frames.
        self.v1 = self._ws.subprotocol == wire.V1
        self._source = _Queue(self)
        self._reader = threading.Thread(
            target=self._read, name="lmrepl-gateway-reader", daemon=True
        )
        self._reader.start()

    # -- Link ------------------------------------------------------------------------
    def execute(
        self,
        content: dict[str, Any],
        metadata: dict[str, Any],
        buffers: list[bytes | memoryview] | None,
    ) -> str:
        """Send an ``execute_request`` on the shell channel; returns its ``msg_id``."""
        header = wire.new_header("execute_request", self.session_id)
        self._send(wire.encode("shell", header, content, metadata, buffers, v1=self.v1))
        return str(header["msg_id"])

    def input(self, text: str) -> None:
        """Send an ``input_reply`` on the stdin channel."""
        header = wire.new_header("input_reply", self.session_id)
        self._send(wire.encode("stdin", header, {"value": text, "status": "ok"}, v1=self.v1))

    def sources(self) -> list[Source]:
        """The one queue every channel's messages arrive in."""
        return [self._source]

    def watchers(self) -> list[Any]:
        """None: the pipe of the queue also wakes the driver when the link is lost."""
        return []

    def lost(self, ready: Collection[Any] | None) -> Lost | None:
        """Why the link is gone, once the messages received before that were read.

        With ``ready=None`` (before a request is sent) it answers at once.
        """
        with self._lock:
            if self._lost is None or (ready is not None and self._items):
                return None
            return self._lost

    def close(self) -> None:
        """Close the websocket and wait briefly for the reader to end."""
        self._finish(Lost())
        with contextlib.suppress(Exception):
            self._stack.close()
        if self._reader is not threading.current_thread():
            self._reader.join(5)

    # -- internals ---------------------------------------------------------------------
    def _send(self, frame: bytes | str) -> None:
        # A closed connection is the reader's to report; the driver then gives up.
        with contextlib.suppress(ConnectionClosed, OSError):
            self._ws.send(frame)
        _quick_ack(self._ws.socket)

    def _read(self) -> None:
        ws = self._ws
        while True:
            try:
                frame = ws.recv()
            except ConnectionClosed as exc:
                self._finish(_why_closed(exc))
                return
            except Exception as exc:
                self._finish(Lost(f"the connection to the gateway failed ({type(exc).__name__})"))
                return
            _quick_ack(ws.socket)
            size = len(frame)
            try:
                msg = wire.decode(frame, v1=self.v1)
            except BadMessage as exc:
                self._put(exc, size, "?")
                continue
            if _kernel_ended(msg):
                # Read on, dropping what comes: the websocket stays drained (pings,
                # the closing handshake) until the kernel is deleted and it is closed.
                self._finish(Lost())
            self._put(msg, size, str(msg["channel"]))

    def _put(self, item: dict[str, Any] | BadMessage, size: int, channel: str) -> None:
        with self._lock:
            if self._lost is not None:
                return
            if self._bytes + size > QUEUE_BYTES or len(self._items) >= QUEUE_MESSAGES:
                if channel == "iopub":
                    self._dropped += 1
                    return
                self._lost = Lost(
                    f"the kernel sent more than {QUEUE_MESSAGES:,} messages or "
                    f"{QUEUE_BYTES:,} bytes faster than the host reads them; the host "
                    "stopped listening, so the kernel was stopped"
                )
                self._signal()
                return
            self._items.append((item, size))
            self._bytes += size
            if len(self._items) == 1:
                self._signal()

    def _pop(self) -> dict[str, Any] | None:
        with self._lock:
            if self._dropped:
                dropped, self._dropped = self._dropped, 0
                raise BadMessage(
                    f"{dropped:,} IOPub messages were dropped: more were waiting than the "
                    "host keeps"
                )
            if not self._items:
                return None
            item, size = self._items.popleft()
            self._bytes -= size
            if not self._items and self._lost is None:
                self._drain()
        if isinstance(item, BadMessage):
            raise item
        return item

    def _finish(self, lost: Lost) -> None:
        with self._lock:
            if self._lost is None:
                self._lost = lost
                if not self._items:
                    self._signal()

    def _signal(self) -> None:
        """Make the pipe readable (the lock is held)."""
        with contextlib.suppress(OSError):
            os.write(self._pipe_w, b"x")

    def _drain(self) -> None:
        """Empty the pipe (the lock is held): nothing is queued any more."""
        with contextlib.suppress(OSError):
            while os.read(self._pipe_r, 4096):
                pass


def _kernel_ended(msg: dict[str, Any]) -> bool:
    """The gateway's status saying the kernel process ended (and maybe was restarted)."""
    if msg.get("channel") != "iopub":
        return False
    header, content = msg.get("header"), msg.get("content")
    return (
        isinstance(header, dict)
        and header.get("msg_type") == "status"
        and isinstance(content, dict)
        and content.get("execution_state") in ("restarting", "dead")
    )


def _why_closed(exc: ConnectionClosed) -> Lost:
    """A closed websocket: refused for its size (the kernel's doing), or ended."""
    for frame in (exc.sent, exc.rcvd):
        if frame is not None and frame.code == _TOO_BIG:
            return Lost(
                f"the kernel sent a message over the {MAX_MESSAGE_BYTES:,}-byte limit; the "
                "host refused it and lost its connection to the gateway, so the kernel "
                "was stopped"
            )
    return Lost()


def _close_fds(*fds: int) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)

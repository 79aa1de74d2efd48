"""The HTTP side of ``lmrepl.testing.ScriptedServer``: a threaded server on 127.0.0.1
and the handler that parses each request and writes its whole response at once.

The server's owner (a ``ScriptedServer``) records requests, picks the scripted reply
and tracks open connections; this module only speaks HTTP.
"""

from __future__ import annotations

import json
import socket
import socketserver
import sys
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from typing import Any, Protocol

from lmrepl.scripted_api import ANTHROPIC_PATHS, MODELS_PATHS, OPENAI_PATHS, ScriptedRequest

__all__ = ["ScriptedHTTPServer"]


class _Owner(Protocol):
    """What the HTTP side needs from the ``ScriptedServer`` that owns it."""

    def _record(self, request: ScriptedRequest) -> None: ...

    def _respond(self, request: ScriptedRequest) -> tuple[int, dict[str, str], Any]: ...

    def _track(self, conn: socket.socket, *, add: bool) -> None: ...


class _Handler(BaseHTTPRequestHandler):
    """Parses one request and writes the whole response in one ``sendall``."""

    protocol_version = "HTTP/1.1"
    server: ScriptedHTTPServer

    def setup(self) -> None:
        super().setup()
        # Without it every small response waits ~40 ms on Nagle + delayed ACK.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the per-request log lines."""

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path not in MODELS_PATHS:
            self._send(404, {"error": {"message": f"no route {path}", "type": "not_found"}})
            return
        self.server.owner._record(self._request(path, None))
        data = [{"id": m, "object": "model", "owned_by": "scripted"} for m in ("scripted",)]
        self._send(200, {"object": "list", "data": data})

    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0]
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if path not in OPENAI_PATHS and path not in ANTHROPIC_PATHS:
            self._send(404, {"error": {"message": f"no route {path}", "type": "not_found"}})
            return
        try:
            body = json.loads(raw or b"{}")
        except json.JSONDecodeError as exc:
            self._send(400, {"error": {"message": f"bad JSON: {exc}", "type": "bad_request"}})
            return
        request = self._request(path, body)
        status, headers, payload = self.server.owner._respond(request)
        self._send(status, payload, headers)

    def _request(self, path: str, body: Any) -> ScriptedRequest:
        body_dict = body if isinstance(body, dict) else {}
        messages = body_dict.get("messages")
        temperature = body_dict.get("temperature")
        return ScriptedRequest(
            path=path,
            body=body,
            headers={k.lower(): v for k, v in self.headers.items()},
            messages=list(messages) if isinstance(messages, list) else [],
            model=body_dict.get("model"),
            temperature=float(temperature) if isinstance(temperature, int | float) else None,
            time=time.monotonic(),
            system=body_dict.get("system"),
        )

    def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = "Status"
        lines = [f"HTTP/1.1 {status} {phrase}", "Content-Type: application/json"]
        lines.append(f"Content-Length: {len(data)}")
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        try:
            self.connection.sendall(head + data)
        except OSError:
            # The client gave up (its timeout); nothing is listening for this reply.
            self.close_connection = True


class ScriptedHTTPServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    """Thread per connection; daemon threads so a stuck handler never blocks exit."""

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    # The default backlog of 5 drops SYNs under a burst of connects; the client then
    # retransmits after 1 s, which looked like a slow server.
    request_queue_size = 256

    def __init__(self, owner: _Owner) -> None:
        self.owner = owner
        super().__init__(("127.0.0.1", 0), _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        self.owner._track(request, add=True)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        self.owner._track(request, add=False)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hung up mid-request (a cancelled or timed-out call) is normal here.
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)

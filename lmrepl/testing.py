"""``ScriptedServer``: a loopback model server speaking the OpenAI and Anthropic HTTP APIs.

It is a real HTTP server on 127.0.0.1, so tests exercise the same SDK, HTTP and retry
path as a production model server, with scripted replies, statuses, delays and usage.

    with ScriptedServer(replies=["hello", ScriptedReply(status=429)]) as server:
        client = OpenAIClient("m", base_url=server.base_url)
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from lmrepl.errors import ConfigurationError
from lmrepl.scripted_api import (
    ReplyItem,
    Responder,
    ScriptedReply,
    ScriptedRequest,
    count_tokens,
    error_payload,
    success_payload,
)
from lmrepl.scripted_http import ScriptedHTTPServer

__all__ = ["ScriptedReply", "ScriptedRequest", "ScriptedServer", "count_tokens"]


class ScriptedServer:
    """Loopback OpenAI/Anthropic-compatible server with scripted replies.

    ``replies`` are served in order (one per model request); ``responder`` computes a
    reply from each :class:`ScriptedRequest` instead. With neither, every reply is
    ``"ok"``. ``latency`` (s) delays every model request, on top of a reply's ``delay``.
    When the scripted replies run out the server answers HTTP 500 saying so.

    The server counts the model requests it is handling at once (``in_flight``) and the
    most it ever handled at once (``peak_concurrency``); ``concurrency_filter`` limits
    both to the requests it accepts (e.g. sub-calls only). A request counts from its
    arrival until its reply is computed, before the reply is sent, so the count never
    includes a request whose client may already have its answer.
    """

    def __init__(
        self,
        replies: Sequence[ReplyItem] | None = None,
        *,
        responder: Responder | None = None,
        latency: float = 0.0,
        concurrency_filter: Callable[[ScriptedRequest], bool] | None = None,
    ) -> None:
        if replies is not None and responder is not None:
            raise ConfigurationError("give replies or responder, not both")
        self._replies = list(replies) if replies is not None else None
        self._responder = responder
        self.latency = float(latency)
        self._lock = threading.Lock()
        # Wakes requests held by ``hold_at_peak`` when the count in flight changes.
        self._cond = threading.Condition(self._lock)
        self._requests: list[ScriptedRequest] = []
        self._next = 0
        self._stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._httpd: ScriptedHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self.concurrency_filter = concurrency_filter
        self._in_flight = 0
        self._peak = 0

    def script(
        self,
        replies: Sequence[ReplyItem] | None = None,
        *,
        responder: Responder | None = None,
        latency: float | None = None,
    ) -> ScriptedServer:
        """Replace the script (and optionally the latency) of a running server."""
        if replies is not None and responder is not None:
            raise ConfigurationError("give replies or responder, not both")
        with self._lock:
            self._replies = list(replies) if replies is not None else None
            self._responder = responder
            self._next = 0
            if latency is not None:
                self.latency = float(latency)
        return self

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> ScriptedServer:
        """Bind a free port on 127.0.0.1 and serve in a daemon thread."""
        if self._httpd is not None:
            return self
        self._stopping.clear()
        self._httpd = ScriptedHTTPServer(self)
        self._wake_r, self._wake_w = socket.socketpair()
        self._thread = threading.Thread(
            target=self._serve, name=f"ScriptedServer:{self.port}", daemon=True
        )
        self._thread.start()
        return self

    def _serve(self) -> None:
        """Accept loop woken by a socketpair, so ``stop()`` needs no poll interval."""
        httpd, wake = self._httpd, self._wake_r
        assert httpd is not None and wake is not None
        with selectors.DefaultSelector() as sel:
            sel.register(httpd.socket, selectors.EVENT_READ)
            sel.register(wake, selectors.EVENT_READ)
            while not self._stopping.is_set():
                for key, _ in sel.select():
                    if key.fileobj is wake or self._stopping.is_set():
                        return
                    try:
                        conn, addr = httpd.get_request()
                    except OSError:
                        continue
                    try:
                        httpd.process_request(conn, addr)
                    except Exception:
                        httpd.handle_error(conn, addr)
                        httpd.shutdown_request(conn)

    def stop(self) -> None:
        """Stop accepting, drop open connections, wake sleeping handlers, join the thread."""
        if self._httpd is None:
            return
        self._stopping.set()
        assert self._wake_w is not None and self._wake_r is not None
        self._wake_w.send(b"x")
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self._lock:
            conns = list(self._connections)
            self._connections.clear()
        for conn in conns:
            # SHUT_RD ends idle keep-alive reads at once but still lets a handler
            # that just woke from its delay write its "stopping" answer.
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RD)
        self._httpd.server_close()
        self._wake_w.close()
        self._wake_r.close()
        self._httpd = None
        self._thread = None

    def __enter__(self) -> ScriptedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- addresses ---------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The bound TCP port (the server must be started)."""
        if self._httpd is None:
            raise RuntimeError("ScriptedServer is not started")
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` without a path."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """Base URL for the OpenAI SDK (``…/v1``)."""
        return self.url + "/v1"

    @property
    def anthropic_base_url(self) -> str:
        """Base URL for the Anthropic SDK (it appends ``/v1/messages`` itself)."""
        return self.url

    # -- recorded requests -------------------------------------------------------------

    @property
    def requests(self) -> list[ScriptedRequest]:
        """A snapshot of every request received so far, in arrival order."""
        with self._lock:
            return list(self._requests)

    def model_requests(self) -> list[ScriptedRequest]:
        """Received chat/messages requests only (no ``GET /v1/models``)."""
        return [r for r in self.requests if r.api != "models"]

    @property
    def in_flight(self) -> int:
        """Model requests (passing ``concurrency_filter``) being handled right now."""
        with self._lock:
            return self._in_flight

    @property
    def peak_concurrency(self) -> int:
        """The most model requests (passing ``concurrency_filter``) handled at once."""
        with self._lock:
            return self._peak

    def hold_at_peak(self, expected: int, *, grace: float = 2.0, timeout: float = 30.0) -> None:
        """From a responder: hold this request until more than ``expected`` requests are
        in flight, or ``expected`` have been for ``grace`` seconds (at most ``timeout``).

        Held requests stay in flight, so a client that lets more than ``expected``
        through shows it in ``peak_concurrency`` instead of slipping past by timing.
        """
        end = time.monotonic() + timeout
        full_since: float | None = None
        with self._cond:
            while not self._stopping.is_set():
                now = time.monotonic()
                if self._in_flight > expected or now >= end:
                    return
                if self._in_flight == expected:
                    full_since = now if full_since is None else full_since
                    if now - full_since >= grace:
                        return
                self._cond.wait(0.05)

    def reset_peak(self) -> None:
        """Start counting ``peak_concurrency`` afresh (from the requests in flight now)."""
        with self._lock:
            self._peak = self._in_flight

    def _record(self, request: ScriptedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    def _track(self, conn: socket.socket, *, add: bool) -> None:
        with self._lock:
            if add:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)

    # -- replies -----------------------------------------------------------------------

    def _next_item(self, request: ScriptedRequest) -> ReplyItem | None:
        """The scripted item for ``request``; None once the replies are used up."""
        if self._responder is not None:
            return self._responder(request)
        with self._lock:
            if self._replies is None:
                return "ok"
            if self._next >= len(self._replies):
                return None
            item = self._replies[self._next]
            self._next += 1
            return item

    def _respond(self, request: ScriptedRequest) -> tuple[int, dict[str, str], Any]:
        """(status, headers, JSON payload) for one model request."""
        self._record(request)
        try:
            counted = self.concurrency_filter is None or bool(self.concurrency_filter(request))
        except Exception:
            counted = False
        if counted:
            with self._lock:
                self._in_flight += 1
                self._peak = max(self._peak, self._in_flight)
                self._cond.notify_all()
        try:
            return self._reply(request)
        finally:
            if counted:
                with self._lock:
                    self._in_flight -= 1
                    self._cond.notify_all()

    def _reply(self, request: ScriptedRequest) -> tuple[int, dict[str, str], Any]:
        try:
            item = self._next_item(request)
        except Exception as exc:
            return 500, {}, error_payload(request, 500, f"ScriptedServer responder raised: {exc!r}")
        if item is None:
            used = len(self._replies or [])
            msg = f"ScriptedServer: all {used} scripted replies were used"
            return 500, {}, error_payload(request, 500, msg)
        reply = item if isinstance(item, ScriptedReply) else ScriptedReply(text=item)
        wait = self.latency + reply.delay
        if wait > 0 and self._stopping.wait(wait):
            return 503, {}, error_payload(request, 503, "ScriptedServer is stopping")
        if reply.body is not None:
            return reply.status, dict(reply.headers), reply.body
        if reply.status != 200:
            body = reply.error_body
            payload = body if body is not None else error_payload(request, reply.status, reply.text)
            return reply.status, dict(reply.headers), payload
        return 200, dict(reply.headers), success_payload(request, reply)

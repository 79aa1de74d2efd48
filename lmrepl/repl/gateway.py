"""Kernels through a Jupyter gateway (Kernel Gateway, Enterprise Gateway): docs/gateway.md.

With ``environment_kwargs={"gateway_url": URL, "gateway_token": TOKEN}`` every kernel of
the REPL is started, interrupted, restarted and deleted through the gateway's REST API
(``/api/kernels``), and driven over its websocket (``gateway_channels``); the agent is
installed with the same bootstrap as a local kernel. There is no local process, pool or
sandbox: the gateway decides where kernels run and how they are isolated.

The token goes to the gateway only, in the ``Authorization`` header: never into a
kernel's environment or into code sent to it, and never along an HTTP redirect. Every
kernel started is deleted when its REPL closes; an exit hook deletes any still open.
"""

from __future__ import annotations

import atexit
import contextlib
import http.client
import json
import re
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from websockets.exceptions import InvalidStatus, WebSocketException

from lmrepl.errors import ConfigurationError
from lmrepl.repl.gateway_channels import GatewayLink
from lmrepl.repl.kernel_command import bootstrap_code
from lmrepl.repl.kernel_messages import run_silent
from lmrepl.repl.kernel_ready import await_iopub, await_stdin

__all__ = ["Gateway", "GatewayError", "GatewayKernel", "delete_all", "start_kernel"]

#: The most bytes of a REST answer the host reads (the gateway's JSON is small).
_MAX_ANSWER = 1 << 20
#: Kernel ids go into URL paths: only plain characters are accepted from the gateway.
_KERNEL_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")


class GatewayError(RuntimeError):
    """The gateway refused or failed a request (the message names URL and status)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        #: The HTTP status of the answer, when there was one.
        self.status = status


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Refuse redirects: urllib would resend the token to wherever they point."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        """No new request: the 3xx answer becomes an ``HTTPError``."""
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


@dataclass(frozen=True)
class Gateway:
    """A gateway's base URL (``http(s)://host:port[/base]``), token and kernel name."""

    url: str
    token: str | None = field(default=None, repr=False)
    kernel_name: str | None = None

    @property
    def shown(self) -> str:
        """The URL as error messages show it (no user or password)."""
        parts = urlsplit(self.url)
        netloc = parts.hostname or ""
        if parts.port is not None:
            netloc += f":{parts.port}"
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))

    def headers(self) -> dict[str, str]:
        """The headers of every request: the token, when there is one."""
        return {"Authorization": f"token {self.token}"} if self.token else {}

    def ws_url(self, kernel_id: str) -> str:
        """The websocket URL of a kernel's channels."""
        parts = urlsplit(self.url.rstrip("/"))
        scheme = "wss" if parts.scheme == "https" else "ws"
        path = f"{parts.path}/api/kernels/{kernel_id}/channels"
        return urlunsplit((scheme, parts.netloc, path, "", ""))

    def request(
        self, method: str, path: str, body: dict[str, Any] | None = None, timeout: float = 30.0
    ) -> Any:
        """One REST call; the decoded JSON answer (None when empty).

        ``ConfigurationError`` when the gateway cannot be reached or refuses the token,
        ``GatewayError`` for any other failure.
        """
        data = None if body is None else json.dumps(body).encode("utf-8")
        if data is None and method == "POST":
            data = b""
        headers = {**self.headers(), "Content-Type": "application/json"}
        req = urllib.request.Request(
            self.url.rstrip("/") + path, data=data, method=method, headers=headers
        )
        what = f"{method} {path}"
        try:
            with _OPENER.open(req, timeout=timeout) as resp:
                raw = resp.read(_MAX_ANSWER + 1)
        except urllib.error.HTTPError as exc:
            raise self._refused(what, exc.code, _reason(exc)) from None
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
            why = getattr(exc, "reason", None) or exc
            raise ConfigurationError(
                f"the Jupyter gateway at {self.shown} cannot be reached ({what}: {why}); "
                "check environment_kwargs['gateway_url'] and that the gateway runs"
            ) from None
        if len(raw) > _MAX_ANSWER:
            raise GatewayError(f"the Jupyter gateway at {self.shown} sent an oversized answer")
        if not raw.strip():
            return None
        try:
            return json.loads(raw)
        except ValueError:
            raise GatewayError(
                f"the Jupyter gateway at {self.shown} answered {what} with something other "
                "than JSON: is gateway_url the gateway's address?"
            ) from None

    def _refused(self, what: str, status: int, reason: str) -> Exception:
        """The error for an HTTP error status."""
        text = f"the Jupyter gateway at {self.shown} refused {what} (HTTP {status}: {reason})"
        if status in (401, 403):
            return ConfigurationError(
                f"{text}; check environment_kwargs['gateway_token'] (the gateway's auth token)"
            )
        return GatewayError(text, status)


def _reason(exc: urllib.error.HTTPError) -> str:
    """A short reason from an error answer (the gateway's JSON ``message``, if any)."""
    try:
        body = json.loads(exc.read(4096) or b"{}")
        message = (body.get("message") or body.get("reason")) if isinstance(body, dict) else None
    except (ValueError, OSError):
        message = None
    return str(message or exc.reason)[:200]


class GatewayKernel:
    """One kernel on a gateway: the ``kernel_channels.Kernel`` of the driver and REPL.

    It has no local process (``pid`` is None) nor folder. ``alive()`` answers from the
    link (websocket open, no end-of-kernel status): no request per driver tick.
    """

    pid: int | None = None
    kernel_dir: str | None = None

    def __init__(self, gateway: Gateway, kernel_id: str, timeout: float = 30.0) -> None:
        self.gateway = gateway
        self.kernel_id = kernel_id
        #: Seconds a REST call or the websocket's opening may take.
        self.timeout = timeout
        self.link: GatewayLink | None = None
        self._deleted = False
        self._handed_over = False
        _register(self)

    @property
    def killed(self) -> bool:
        """True once the kernel was deleted (or handed to a restarted successor)."""
        return self._deleted or self._handed_over

    def connect(self) -> None:
        """Open the websocket and install the agent (the local kernels' bootstrap)."""
        try:
            self.link = GatewayLink(
                self.gateway.ws_url(self.kernel_id), self.gateway.headers(), self.timeout
            )
        except InvalidStatus as exc:
            status = exc.response.status_code
            raise self.gateway._refused(
                "the kernel's websocket", status, exc.response.reason_phrase
            ) from None
        except (WebSocketException, OSError, TimeoutError) as exc:
            raise GatewayError(
                f"the websocket of kernel {self.kernel_id} on the Jupyter gateway at "
                f"{self.gateway.shown} did not open: {type(exc).__name__}: {exc}"
            ) from None
        run_silent(self, bootstrap_code(), {}, self.timeout)
        # After a restart Kernel Gateway 3 lost the first input_request in up to half of
        # the tries (its new stdin connection was not routed yet). And Jupyter Server
        # waits for IOPub to deliver before it serves a new websocket ("nudge"), except
        # for a kernel it believes busy, as it still does after a restart that killed a
        # busy kernel: the new websocket's IOPub then stayed silent for seconds in about
        # one restart of fifteen, and the next cell's output and end were lost.
        for await_channel, what in (
            (await_stdin, "input requests"),
            (await_iopub, "output messages (IOPub)"),
        ):
            try:
                await_channel(self, self.link, self.timeout)
            except TimeoutError:
                raise TimeoutError(
                    f"{what} of kernel {self.kernel_id} did not reach the host through the "
                    f"Jupyter gateway at {self.gateway.shown}"
                ) from None

    def alive(self) -> bool:
        """False once the link is lost (websocket closed, kernel ended) and read out."""
        return self.link is not None and self.link.lost(()) is None

    def interrupt(self) -> None:
        """``POST /api/kernels/<id>/interrupt`` (errors are ignored: the deadline holds)."""
        if not self.killed:
            with contextlib.suppress(Exception):
                self.gateway.request("POST", f"/api/kernels/{self.kernel_id}/interrupt", None, 10)

    def restart(self) -> GatewayKernel:
        """``POST /api/kernels/<id>/restart``: the same kernel id, a fresh process.

        Returns the kernel's new handle (a new websocket, the agent installed); this one
        only closes its websocket from now on.
        """
        self.gateway.request(
            "POST", f"/api/kernels/{self.kernel_id}/restart", None, max(self.timeout, 60)
        )
        fresh = GatewayKernel(self.gateway, self.kernel_id, self.timeout)
        self._handed_over = True
        if self.link is not None:
            self.link.close()
        try:
            fresh.connect()
        except BaseException:
            fresh.kill()
            raise
        return fresh

    def kill(self) -> None:
        """Close the websocket and ``DELETE /api/kernels/<id>`` (once).

        A server error is retried until ``timeout``: a gateway restarting a kernel that
        died answers DELETE with HTTP 500 until the restart is over (Jupyter Server 2).
        A kernel it could not delete stays registered, for the exit hook to try again.
        """
        if self.link is not None:
            self.link.close()
        if self.killed:
            return
        self._deleted = True
        deadline = time.monotonic() + self.timeout
        delay = 0.1
        while True:
            try:
                self.gateway.request(
                    "DELETE", f"/api/kernels/{self.kernel_id}", None, min(self.timeout, 10.0)
                )
                break
            except GatewayError as exc:
                if exc.status == 404:
                    break  # gone already
                if exc.status is None or exc.status < 500 or time.monotonic() + delay > deadline:
                    return
            except Exception:
                return
            time.sleep(delay)
            delay = min(2 * delay, 1.0)
        _unregister(self)


_lock = threading.Lock()
_OPEN: dict[tuple[str, str], GatewayKernel] = {}


def _register(kernel: GatewayKernel) -> None:
    with _lock:
        _OPEN[(kernel.gateway.url, kernel.kernel_id)] = kernel


def _unregister(kernel: GatewayKernel) -> None:
    with _lock:
        key = (kernel.gateway.url, kernel.kernel_id)
        if _OPEN.get(key) is kernel:
            del _OPEN[key]


def open_kernels() -> list[GatewayKernel]:
    """The gateway kernels this process started and has not deleted."""
    with _lock:
        return list(_OPEN.values())


def delete_all() -> None:
    """Delete every kernel still open on a gateway (registered with ``atexit``)."""
    for kernel in open_kernels():
        kernel.timeout = min(kernel.timeout, 5.0)  # the interpreter is exiting
        kernel._deleted = False  # a failed DELETE is tried once more
        with contextlib.suppress(Exception):
            kernel.kill()
        _unregister(kernel)


atexit.register(delete_all)


def start_kernel(
    gateway: Gateway, *, timeout: float, env: dict[str, str] | None = None
) -> GatewayKernel:
    """Start a kernel on ``gateway``, connect and bootstrap it; deleted again on failure.

    ``env`` is sent with the request: Kernel Gateway then starts the kernel with it (what
    its whitelist keeps: ``KERNEL_*`` names and the configured ones) plus its own ``PATH``,
    not with the gateway's whole environment. The REPL also sets ``extra_env`` in the
    kernel itself once it runs.
    """
    body: dict[str, Any] = {"env": dict(env or {})}
    if gateway.kernel_name:
        body["name"] = gateway.kernel_name
    model = gateway.request("POST", "/api/kernels", body, timeout)
    kernel_id = model.get("id") if isinstance(model, dict) else None
    if not isinstance(kernel_id, str) or not _KERNEL_ID.fullmatch(kernel_id):
        raise GatewayError(
            f"the Jupyter gateway at {gateway.shown} answered POST /api/kernels without a "
            "usable kernel id"
        )
    kernel = GatewayKernel(gateway, kernel_id, timeout)
    try:
        kernel.connect()
    except BaseException:
        kernel.kill()
        raise
    return kernel

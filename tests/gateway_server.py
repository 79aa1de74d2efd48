"""A real Jupyter Kernel Gateway on loopback, started and stopped by a test (or benchmark).

``GatewayServer().start()`` runs ``jupyter kernelgateway`` (``python -m kernel_gateway``)
on a free port of 127.0.0.1 with an auth token, its own runtime, data and config folders
and kernel listing on, waits until ``/api/kernels`` answers, and ``stop()`` ends it. The
token is given through the environment (``KG_AUTH_TOKEN``), so it is not on a command
line that ``ps`` shows.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from typing import Any


def free_port() -> int:
    """A TCP port of 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class GatewayServer:
    """One Kernel Gateway process; ``url`` and ``token`` are what the REPL is given.

    ``ws_protocol=""`` makes the gateway speak the legacy websocket format (no v1
    subprotocol), as older gateways do. ``iopub_delay=S`` makes each new websocket
    forward nothing from IOPub during its first ``S`` seconds (``gateway_late_iopub``).
    """

    def __init__(
        self, token: str | None = None, ws_protocol: str | None = None, iopub_delay: float = 0.0
    ) -> None:
        self.token = token if token is not None else secrets.token_hex(16)
        self.ws_protocol = ws_protocol
        self.iopub_delay = iopub_delay
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.folder = ""

    @property
    def url(self) -> str:
        """The gateway's base URL."""
        return f"http://127.0.0.1:{self.port}"

    def kwargs(self, **more: Any) -> dict[str, Any]:
        """``environment_kwargs`` that run kernels through this gateway."""
        return {"gateway_url": self.url, "gateway_token": self.token, **more}

    def start(self, timeout: float = 60.0) -> GatewayServer:
        """Start the gateway and wait until it answers."""
        self.folder = tempfile.mkdtemp(prefix="lmrepl-gateway-")
        env = dict(os.environ)
        for name in ("runtime", "data", "config"):
            path = os.path.join(self.folder, name)
            os.mkdir(path)
            env[f"JUPYTER_{name.upper()}_DIR"] = path
        env["KG_AUTH_TOKEN"] = self.token
        self.port = free_port()
        argv = [
            sys.executable,
            "-m",
            "kernel_gateway",
            "--ip=127.0.0.1",
            f"--port={self.port}",
            "--port_retries=0",
            "--JupyterWebsocketPersonality.list_kernels=True",
            # Jupyter Server's IOPub rate limit would drop a big message before it reaches
            # the host, and the oversized-message test is about the host's own limit.
            "--ZMQChannelsWebsocketConnection.limit_rate=False",
        ]
        if self.ws_protocol is not None:
            argv.append(f"--ZMQChannelsWebsocketConnection.kernel_ws_protocol={self.ws_protocol}")
        if self.iopub_delay:
            # The connection class is imported by the gateway from this folder.
            here = os.path.dirname(os.path.abspath(__file__))
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [here, env.get("PYTHONPATH")]))
            env["LMREPL_TEST_IOPUB_DELAY"] = str(self.iopub_delay)
            argv.append(
                "--KernelGatewayApp.kernel_websocket_connection_class="
                "gateway_late_iopub.LateIOPubConnection"
            )
        log = open(os.path.join(self.folder, "gateway.log"), "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            argv, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=self.folder
        )
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the kernel gateway exited at start:\n{self.log()}")
            try:
                self.kernels()
                return self
            except (urllib.error.URLError, OSError):
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("the kernel gateway did not answer in time") from None
                time.sleep(0.1)

    def request(self, method: str, path: str, token: str | None = None) -> Any:
        """A REST call with the token (or ``token``); the decoded answer."""
        headers = {"Authorization": f"token {self.token if token is None else token}"}
        data = b"" if method == "POST" else None
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        with urllib.request.urlopen(req, timeout=10) as resp:
            raw = resp.read()
        return json.loads(raw) if raw else None

    def kernels(self) -> list[dict[str, Any]]:
        """The kernels the gateway runs now (``GET /api/kernels``)."""
        found: list[dict[str, Any]] = self.request("GET", "/api/kernels")
        return found

    def wait_no_kernels(self, bound: float = 15.0) -> list[dict[str, Any]]:
        """Poll until the gateway runs no kernel; what is left after ``bound`` seconds."""
        deadline = time.monotonic() + bound
        left = self.kernels()
        while left and time.monotonic() < deadline:
            time.sleep(0.1)
            left = self.kernels()
        return left

    def delete_all(self) -> None:
        """Delete whatever kernels are left (after a failed test, for the next one)."""
        for kernel in self.kernels():
            with contextlib.suppress(urllib.error.URLError, OSError):
                self.request("DELETE", f"/api/kernels/{kernel['id']}")

    def log(self) -> str:
        """The gateway's log so far."""
        try:
            with open(os.path.join(self.folder, "gateway.log"), "rb") as f:
                return f.read().decode("utf-8", "replace")[-5000:]
        except OSError:
            return ""

    def stop(self) -> None:
        """End the gateway (its kernels end with it) and remove its folders."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if self.folder:
            shutil.rmtree(self.folder, ignore_errors=True)

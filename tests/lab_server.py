"""A JupyterLab server on 127.0.0.1 and a headless chromium page on it, for browser tests.

The server gets its own root, settings, workspaces and runtime folders, a random port
and a token, and nothing that reaches the network (news, update checks). Chromium is
Debian's (``chromium`` on PATH), driven by Playwright for Python; Playwright's own
browser download is not used. ``browser_unavailable()`` says why the tests cannot run
here, so they skip with a reason (or fail, under ``LMREPL_REQUIRE_BROWSER=1``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

LAB_EXTENSION = "lmrepl-jupyter"
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "browser"


def chromium_path() -> str | None:
    """Debian's chromium, if installed."""
    for name in ("chromium", "chromium-browser"):
        if found := shutil.which(name):
            return found
    return None


def labextension_installed() -> bool:
    """Whether this environment's JupyterLab sees the built lmrepl extension."""
    out = subprocess.run(
        [sys.executable, "-m", "jupyter", "labextension", "list"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    text = out.stdout + out.stderr
    return any(LAB_EXTENSION in line and "enabled" in line for line in text.splitlines())


def browser_unavailable() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    try:
        import jupyterlab  # noqa: F401
        import playwright.sync_api  # noqa: F401
    except ImportError as exc:
        return f"{exc.name} is not installed (make test installs it)"
    if chromium_path() is None:
        return "chromium is not installed (make test installs it as root with apt)"
    if not labextension_installed():
        return f"the {LAB_EXTENSION} JupyterLab extension is not built (make labextension)"
    return None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LabServer:
    """``jupyter lab`` in a subprocess, ended (with its kernels) by ``stop``."""

    def __init__(
        self, root: Path, env: dict[str, str] | None = None, *, kernels: bool = True
    ) -> None:
        self.root = root
        # kernels=False: the server offers no kernel spec, so nothing can start one.
        self.kernels = kernels
        self.port = free_port()
        self.token = os.urandom(12).hex()
        self.base = root.parent / f"{root.name}-lab"
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.base / "lab.log"

    @property
    def url(self) -> str:
        """The server's base URL."""
        return f"http://127.0.0.1:{self.port}"

    def lab_url(self, path: str = "") -> str:
        """The URL that opens ``path`` (relative to the root) in JupyterLab, token included."""
        suffix = f"/tree/{path}" if path else ""
        return f"{self.url}/lab{suffix}?token={self.token}"

    def settings(self, plugin: str, values: dict[str, Any]) -> None:
        """Write user settings for ``plugin`` (e.g. ``@jupyterlab/apputils-extension:themes``)."""
        package, name = plugin.split(":")
        path = self.base / "settings" / package / f"{name}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values), encoding="utf-8")

    def start(self, timeout: float = 90) -> LabServer:
        """Start the server and wait until its API answers."""
        self.root.mkdir(parents=True, exist_ok=True)
        for sub in ("settings", "workspaces", "runtime", "config", "data"):
            (self.base / sub).mkdir(parents=True, exist_ok=True)
        # No "announcements" prompt: it would cover the page in screenshots.
        self.settings("@jupyterlab/apputils-extension:notification", {"fetchNews": "false"})
        env = {
            **self.env,
            "JUPYTER_RUNTIME_DIR": str(self.base / "runtime"),
            "JUPYTER_CONFIG_DIR": str(self.base / "config"),
        }
        cmd = [
            sys.executable,
            "-m",
            "jupyter",
            "lab",
            "--no-browser",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={self.port}",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={self.root}",
            f"--LabApp.user_settings_dir={self.base / 'settings'}",
            f"--LabApp.workspaces_dir={self.base / 'workspaces'}",
            "--LabApp.news_url=",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            "--LabApp.extension_manager=readonly",
            "--ServerApp.terminals_enabled=False",
        ]
        if not self.kernels:
            cmd.append("--KernelSpecManager.allowed_kernelspecs=lmrepl-no-kernel")
        if os.geteuid() == 0:
            cmd.append("--allow-root")
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyter lab exited: {self.log()[-2000:]}")
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(
                    f"{self.url}/api/status?token={self.token}", timeout=2
                ) as resp,
            ):
                if resp.status == 200:
                    return self
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"jupyter lab did not answer in {timeout} s: {self.log()[-2000:]}")

    def api(self, path: str) -> Any:
        """GET ``/api/<path>`` as JSON."""
        with urllib.request.urlopen(
            f"{self.url}/api/{path}?token={self.token}", timeout=10
        ) as resp:
            return json.loads(resp.read())

    def log(self) -> str:
        """What the server printed so far."""
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        """End the server; it shuts its kernels down first (SIGINT twice, then kill)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        # Jupyter Server ends its kernels on a confirmed SIGINT (or on SIGTERM).
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def __enter__(self) -> LabServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

"""A llama.cpp server (through ``xllamacpp``) for the embedded model, shared per process.

:func:`get_server` starts one :class:`LocalServer` on first use and hands the same object
to every caller; it is stopped at interpreter exit.

Stopping safely: destroying an ``xllamacpp.Server`` joins llama.cpp's HTTP threads while
holding the GIL. An HTTP handler waits for its client to read the reply or hang up, so a
request still in flight *from this process* deadlocks the destructor (the client thread
needs the GIL to go on), and leaving the server alive at exit while it generates crashes
the interpreter's teardown. So :meth:`LocalServer.stop` first shuts down every socket of
this process that is connected to the server, at either end (blocked clients see EOF, the
server sees the hang-up and cancels the generation; external clients of ``serve`` are cut
off), then destroys the server, which is then quick.

A second trap: a stop that arrives before llama.cpp's task loop has started is lost and the
destructor waits forever. :meth:`LocalServer.start` therefore returns only once ``/slots``
has answered (that request goes through the task loop), and a server whose loop never
answered is abandoned rather than destroyed (an idle server left alive exits cleanly).
"""

from __future__ import annotations

import atexit
import logging
import os
import secrets
import socket
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from lmrepl import checks
from lmrepl.errors import ConfigurationError
from lmrepl.local.weights import MODEL_NAME, ensure_model

__all__ = [
    "DEFAULT_N_CTX",
    "DEFAULT_N_PARALLEL",
    "LocalServer",
    "get_server",
    "shutdown_servers",
]

#: Context tokens per parallel slot.
DEFAULT_N_CTX = 8192
#: Parallel slots (concurrent requests decoded together).
DEFAULT_N_PARALLEL = 4
#: Seconds :meth:`LocalServer.start` waits for ``/health`` after the model has loaded.
STARTUP_TIMEOUT_S = 60.0
#: Seconds :meth:`LocalServer.stop` waits for in-process clients to let go of the server.
STOP_TIMEOUT_S = 5.0

_log = logging.getLogger(__name__)
#: 127.0.0.1 as /proc/net/tcp writes it (little-endian hex).
_LOOPBACK_HEX = "0100007F"
_PORT = checks.Rule(
    "a port number 0..65535 (0: any free port)",
    lambda v: isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 65535,
)


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return os.cpu_count() or 1


class LocalServer:
    """One llama.cpp server on 127.0.0.1 with an OpenAI-compatible API.

    ``n_ctx`` is the context of *each* slot: llama.cpp splits its total context between
    the slots, so the server is given ``n_ctx * n_parallel``. A fresh random API key guards
    the port unless ``api_key`` names one (``""`` for none).
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str] | None = None,
        *,
        n_parallel: int = DEFAULT_N_PARALLEL,
        n_ctx: int = DEFAULT_N_CTX,
        n_threads: int | None = None,
        port: int = 0,
        api_key: str | None = None,
        model_name: str = MODEL_NAME,
        verbose: bool = False,
    ) -> None:
        checks.check("n_parallel", n_parallel, checks.integer(1))
        checks.check("n_ctx (tokens per slot)", n_ctx, checks.integer(256))
        checks.check("n_threads", n_threads, checks.integer(1, optional=True))
        checks.check("port", port, _PORT)
        self._model_path = Path(model_path).expanduser() if model_path is not None else None
        self.n_parallel = n_parallel
        self.n_ctx = n_ctx
        self.n_threads = n_threads or _cpu_count()
        self._port = port
        self._api_key = secrets.token_urlsafe(24) if api_key is None else api_key
        self._model_name = model_name
        self._verbose = verbose
        self._server: Any = None
        self._address = ""
        self._lock = threading.Lock()
        self._loop_confirmed = False
        #: Seconds the last start spent loading the model.
        self.load_seconds: float | None = None

    @property
    def model_path(self) -> Path | None:
        """The GGUF file served (None until started with the embedded default)."""
        return self._model_path

    @property
    def running(self) -> bool:
        """True between a successful :meth:`start` and :meth:`stop`."""
        return self._server is not None

    @property
    def url(self) -> str:
        """Root URL (``http://127.0.0.1:PORT``), without ``/v1``."""
        if not self._address:
            raise ConfigurationError("the local model server is not running")
        return self._address

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible base URL, ending in ``/v1``."""
        return self.url + "/v1"

    @property
    def port(self) -> int:
        """The TCP port the server listens on."""
        return int(self.url.rsplit(":", 1)[1])

    @property
    def api_key(self) -> str:
        """The bearer token the server requires (``""`` when it requires none)."""
        return self._api_key

    @property
    def model_name(self) -> str:
        """The model name the server reports and accepts."""
        return self._model_name

    def start(self) -> LocalServer:
        """Load the model and listen; returns self. Idempotent."""
        with self._lock:
            if self._server is not None:
                return self
            try:
                import xllamacpp
            except ImportError as exc:
                raise ConfigurationError(
                    f'the local model needs xllamacpp ({exc}); install: pip install "lmrepl[local]"'
                ) from exc
            if self._model_path is None:
                self._model_path = ensure_model()
            if not self._model_path.is_file():
                raise ConfigurationError(f"model file not found: {self._model_path}")
            params = xllamacpp.CommonParams()
            params.model.path = str(self._model_path)
            params.model_alias = {self._model_name}
            params.n_parallel = self.n_parallel
            params.n_ctx = self.n_ctx * self.n_parallel
            params.cpuparams.n_threads = self.n_threads
            params.cpuparams_batch.n_threads = self.n_threads
            params.hostnames = ["127.0.0.1"]
            params.port = self._port
            params.api_keys = [self._api_key] if self._api_key else []
            params.ui = False
            if not self._verbose:
                params.verbosity = -1
            started = time.perf_counter()
            try:
                server = xllamacpp.Server(params)
            except Exception as exc:
                raise ConfigurationError(
                    f"the local model server failed to start with {self._model_path}: {exc}"
                ) from exc
            self.load_seconds = time.perf_counter() - started
            self._server = server
            self._address = str(server.listening_address).rstrip("/")
        try:
            self._wait_loop_running(STARTUP_TIMEOUT_S)
        except BaseException:
            self.stop()
            raise
        self._loop_confirmed = True
        return self

    def _wait_loop_running(self, timeout: float) -> None:
        # /health is answered by the HTTP threads alone; /slots needs the task loop.
        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        request = urllib.request.Request(self.url + "/slots", headers=headers)
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(request, timeout=5.0) as resp:
                    resp.read()
                    return
            except urllib.error.HTTPError as exc:
                last = f"HTTP {exc.code}"
            except OSError as exc:
                last = str(exc)
            time.sleep(0.05)
        raise ConfigurationError(f"the local model server at {self.url} never got ready: {last}")

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """Cancel in-process requests to the server, then shut it down. Idempotent."""
        with self._lock:
            server, self._server = self._server, None
            if server is None:
                return
            port = self.port
            self._address = ""
            confirmed, self._loop_confirmed = self._loop_confirmed, False
            if not confirmed:
                _abandoned.append(server)
                return
            deadline = time.monotonic() + timeout
            done: set[str] = set()
            # A client may reconnect (a retry) right after a hang-up: sweep until one finds
            # nothing new. Once ``del`` runs it holds the GIL, so no Python client connects.
            while _hang_up_connections(port, done) and time.monotonic() < deadline:
                time.sleep(0.02)
            del server

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = self._address or "stopped"
        return f"LocalServer({self._model_name!r}, {state}, n_parallel={self.n_parallel})"


def _hang_up_connections(port: int, done: set[str]) -> int:
    """Shut down this process's TCP connections to or from ``port`` not in ``done``.

    Returns how many were new; their socket inodes are added to ``done``.

    Client ends (remote port) and the server's accepted ends (local port) both count; the
    listening socket does not. Linux only (``/proc``); elsewhere nothing is found.
    """
    # The server listens on 127.0.0.1 only, so the IPv4 table has all its connections.
    ends = {f"{_LOOPBACK_HEX}:{port:04X}"}
    inodes: set[str] = set()
    try:
        with open("/proc/self/net/tcp", encoding="ascii") as fh:
            rows = fh.read().splitlines()[1:]
    except OSError:
        return 0
    for row in rows:
        fields = row.split()
        # Columns: sl, local "HEXIP:HEXPORT", remote, state (0A is LISTEN), …, inode.
        if len(fields) <= 9 or fields[3] == "0A" or fields[9] in done:
            continue
        if fields[1] in ends or fields[2] in ends:
            inodes.add(fields[9])
    if not inodes:
        return 0
    count = 0
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        return 0
    for name in names:
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue
        if not (target.startswith("socket:[") and target[8:-1] in inodes):
            continue
        try:
            # A dup shares the socket; shutdown (unlike close) wakes a blocked recv.
            sock = socket.socket(fileno=os.dup(int(name)))
        except OSError:
            continue
        done.add(target[8:-1])
        try:
            sock.shutdown(socket.SHUT_RDWR)
            count += 1
        except OSError:
            pass
        finally:
            sock.close()
    return count


_servers: dict[Path | None, LocalServer] = {}
#: Servers whose task loop never answered: destroying them could hang, so they are kept.
_abandoned: list[Any] = []
_servers_lock = threading.Lock()
_exiting = False
_atexit_registered = False


def get_server(
    n_parallel: int = DEFAULT_N_PARALLEL,
    model_path: str | os.PathLike[str] | None = None,
    n_ctx: int | None = None,
) -> LocalServer:
    """The process's running server for ``model_path`` (default: the embedded model).

    Started on first use and shared by every caller afterwards. A later caller asking for
    more slots or context than the running server has gets the running one anyway (with a
    log warning): slots only change throughput, and restarting would cut off the requests
    other callers have in flight.
    """
    global _atexit_registered
    key = Path(model_path).expanduser().resolve() if model_path is not None else None
    with _servers_lock:
        if _exiting:
            raise ConfigurationError("the interpreter is exiting; the local model is stopped")
        server = _servers.get(key)
        if server is not None and server.running:
            if n_parallel > server.n_parallel or (n_ctx or 0) > server.n_ctx:
                _log.warning(
                    "local model server already running with n_parallel=%d, n_ctx=%d; "
                    "keeping it (asked for n_parallel=%d, n_ctx=%s)",
                    server.n_parallel,
                    server.n_ctx,
                    n_parallel,
                    n_ctx,
                )
            return server
        server = LocalServer(key, n_parallel=n_parallel, n_ctx=n_ctx or DEFAULT_N_CTX)
        server.start()
        _servers[key] = server
        if not _atexit_registered:
            atexit.register(_at_exit)
            _atexit_registered = True
        return server


def shutdown_servers() -> None:
    """Stop every server :func:`get_server` started (a later call starts a fresh one)."""
    with _servers_lock:
        servers = list(_servers.values())
        _servers.clear()
    for server in servers:
        server.stop()


def _at_exit() -> None:
    global _exiting
    with _servers_lock:
        _exiting = True
    shutdown_servers()

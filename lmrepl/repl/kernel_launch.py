"""Starting, bootstrapping and killing ipykernel processes (the pool is kernel_pool.py).

Every kernel is forked by one long-lived spawner thread: the kernel asks Linux for
``PR_SET_PDEATHSIG`` (SIGKILL), which fires when the *thread* that forked it ends, so
forking from short-lived worker threads would kill kernels early. The same signal
ends the kernel when the host is SIGKILLed, even while the kernel spins in C code
(ipykernel's own parent poller needs the GIL and cannot run then).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import uuid
import weakref
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
from jupyter_client.manager import KernelManager

from lmrepl.repl import kernel_agent, kernel_strings
from lmrepl.repl import kernel_protocol as protocol
from lmrepl.repl.kernel_env import kernel_environment

# Runs before ipykernel is imported: ask for SIGKILL when the forking thread ends, and
# quit at once if the host already died between fork and prctl.
_LAUNCH_CODE = (
    "import ctypes, os, signal\n"
    "try:\n"
    "    ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL), 0, 0, 0)\n"
    "except Exception:\n"
    "    pass\n"
    "_p = os.environ.get('JPY_PARENT_PID')\n"
    "if _p and os.getppid() != int(_p):\n"
    "    os._exit(1)\n"
    "import runpy\n"
    "runpy.run_module('ipykernel_launcher', run_name='__main__', alter_sys=True)\n"
)


def _source(module: Any) -> str:
    return Path(module.__file__).read_text(encoding="utf-8")


def bootstrap_code() -> str:
    """The code one execute request sends to make a fresh kernel ready.

    It builds the package ``lmrepl_kernel`` in the kernel's ``sys.modules`` (no files:
    ``__path__`` is empty), runs the protocol's, the string helpers' and the agent's
    source as its modules
    (so the agent's relative import of the protocol resolves there as it does on the
    host in ``lmrepl.repl``), then boots the agent with the runtime's source.
    """
    from lmrepl.repl import runtime

    modules = (
        (protocol.PROTOCOL_MODULE, protocol.PROTOCOL_FILE, _source(protocol)),
        (protocol.STRINGS_MODULE, protocol.STRINGS_FILE, _source(kernel_strings)),
        (protocol.AGENT_MODULE, protocol.AGENT_FILE, _source(kernel_agent)),
    )
    boot = (
        "import sys, types\n"
        f"pkg = types.ModuleType({protocol.KERNEL_PACKAGE!r})\n"
        "pkg.__path__ = []\n"
        "sys.modules[pkg.__name__] = pkg\n"
        f"for name, filename, source in {modules!r}:\n"
        "    m = types.ModuleType(name)\n"
        "    m.__package__ = pkg.__name__\n"
        # Registered before it runs, as an import would: the module may look itself up.
        "    sys.modules[name] = m\n"
        "    setattr(pkg, name.rpartition('.')[2], m)\n"
        "    exec(compile(source, filename, 'exec'), m.__dict__)\n"
        f"sys.modules[{protocol.AGENT_MODULE!r}].boot({_source(runtime)!r})\n"
    )
    # Run in a throw-away dict so no helper names land in the user namespace.
    return f"exec(compile({boot!r}, {protocol.BOOT_FILE!r}, 'exec'), {{}})"


class KernelHandle:
    """One started kernel process and a connected client."""

    def __init__(self, km: KernelManager, proc: subprocess.Popen[bytes]) -> None:
        self.km = km
        self.proc = proc
        self.pid = proc.pid
        self.kc: Any = None
        self.ready = False
        self._killed = False

    def alive(self) -> bool:
        """True while the kernel process runs (a cheap non-blocking waitpid)."""
        return self.proc.poll() is None

    def interrupt(self) -> None:
        """Send SIGINT to the kernel (ipykernel's interrupt_mode "signal")."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGINT)

    def kill(self) -> None:
        """SIGKILL the kernel's process group and remove its connection files."""
        if self._killed:
            return
        self._killed = True
        # The kernel leads its own session (start_new_session), so the group ends with it.
        for sender in (os.killpg, os.kill):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                sender(self.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        if self.kc is not None:
            with contextlib.suppress(Exception):
                self.kc.stop_channels()
        with contextlib.suppress(Exception):
            self.km.cleanup_connection_file()
            self.km.cleanup_ipc_files()

    def connect(self, timeout: float) -> None:
        """Connect a client, wait until the kernel answers, and install the agent."""
        from lmrepl.repl.kernel_messages import run_silent

        kc = self.km.client()
        kc.start_channels(hb=False)
        self.kc = kc
        kc.wait_for_ready(timeout=timeout)
        run_silent(self, bootstrap_code(), {}, timeout)
        self.ready = True


class _Spawner:
    """The one long-lived thread that forks kernels (see the module docstring)."""

    def __init__(self) -> None:
        self._jobs: queue.Queue[tuple[dict[str, str], Future[KernelHandle]]] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="lmrepl-kernel-spawner", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            env, fut = self._jobs.get()
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                fut.set_result(_launch(env))
            except BaseException as exc:
                fut.set_exception(exc)

    def launch(self, env: dict[str, str]) -> Future[KernelHandle]:
        """Fork a kernel with ``env`` on the spawner thread."""
        fut: Future[KernelHandle] = Future()
        self._jobs.put((env, fut))
        return fut


_runtime_lock = threading.Lock()
_runtime_dir: str | None = None


def _private_runtime_dir() -> str:
    """A 0700 directory for connection files and ipc sockets (removed at exit)."""
    global _runtime_dir
    with _runtime_lock:
        if _runtime_dir is None or not os.path.isdir(_runtime_dir):
            _runtime_dir = tempfile.mkdtemp(prefix="lmrepl-k-")
            atexit.register(shutil.rmtree, _runtime_dir, True)
        return _runtime_dir


_KERNEL_NAME = "lmrepl"


class _LmreplSpecs(KernelSpecManager):
    """Knows one kernel spec, ours, built here rather than installed in a data dir."""

    def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
        """The lmrepl kernel spec, whatever the name (KernelManager asks for ``lmrepl``)."""
        return KernelSpec(
            # No history database: model cells need no sqlite writes or startup cost.
            argv=[
                sys.executable,
                "-c",
                _LAUNCH_CODE,
                "-f",
                "{connection_file}",
                "--HistoryManager.enabled=False",
            ],
            display_name="lmrepl",
            language="python",
            interrupt_mode="signal",
        )


_SPECS = _LmreplSpecs()


def _kernel_process(km: KernelManager) -> subprocess.Popen[bytes]:
    """The kernel's Popen: its pid for signals, ``poll`` for ``alive()``, ``wait`` to reap.

    jupyter_client has no public accessor: ``KernelManager.is_alive`` runs a coroutine
    through ``run_sync`` on every call (the driver checks every 50 ms) and exposes no pid
    or wait. The local provisioner keeps the Popen it started in ``process``; this is
    the one place that reads it.
    """
    proc: subprocess.Popen[bytes] = km.provisioner.process  # type: ignore[union-attr]
    return proc


def _launch(env: dict[str, str]) -> KernelHandle:
    # A unique ipc path per kernel: jupyter_client picks ipc "ports" by probing for
    # existing socket files, so kernels launched back to back would otherwise collide.
    base = os.path.join(_private_runtime_dir(), uuid.uuid4().hex[:12])
    km = KernelManager(
        transport="ipc",
        ip=base,
        connection_file=base + ".json",
        kernel_spec_manager=_SPECS,
        kernel_name=_KERNEL_NAME,
    )
    km.start_kernel(env=env)
    handle = KernelHandle(km, _kernel_process(km))
    _LIVE.add(handle)
    return handle


_LIVE: weakref.WeakSet[KernelHandle] = weakref.WeakSet()
_spawner_lock = threading.Lock()
_spawner: _Spawner | None = None


def start_kernel(extra_env: dict[str, str] | None = None, timeout: float = 30.0) -> KernelHandle:
    """Start, connect and bootstrap one kernel now (no pool); kills it on failure."""
    global _spawner
    with _spawner_lock:
        if _spawner is None:
            _spawner = _Spawner()
        spawner = _spawner
    handle = spawner.launch(kernel_environment(extra=extra_env)).result(timeout)
    try:
        handle.connect(timeout)
    except BaseException:
        handle.kill()
        raise
    return handle


def kill_all() -> None:
    """Kill every kernel this process started and still holds (at exit)."""
    for handle in list(_LIVE):
        handle.kill()


atexit.register(kill_all)

"""Starting, bootstrapping, pooling and killing ipykernel processes.

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
import time
import uuid
import weakref
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from jupyter_client.kernelspec import KernelSpec
from jupyter_client.manager import KernelManager

from lmrepl.repl import kernel_agent
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
    """The code one execute request sends to make a fresh kernel ready (agent + runtime)."""
    from lmrepl.repl import runtime

    boot = (
        "import sys, types\n"
        "m = types.ModuleType('__lmrepl__')\n"
        "sys.modules['__lmrepl__'] = m\n"
        f"exec(compile({_source(kernel_agent)!r}, {kernel_agent.AGENT_FILE!r}, 'exec'), "
        "m.__dict__)\n"
        f"m.boot({_source(runtime)!r})\n"
    )
    # Run in a throw-away dict so no helper names land in the user namespace.
    return f"exec(compile({boot!r}, '<lmrepl-boot>', 'exec'), {{}})"


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


def _launch(env: dict[str, str]) -> KernelHandle:
    # A unique ipc path per kernel: jupyter_client picks ipc "ports" by probing for
    # existing socket files, so kernels launched back to back would otherwise collide.
    base = os.path.join(_private_runtime_dir(), uuid.uuid4().hex[:12])
    km = KernelManager(transport="ipc", ip=base, connection_file=base + ".json")
    km._kernel_spec = KernelSpec(
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
    km.start_kernel(env=env)
    proc = km.provisioner.process  # type: ignore[union-attr]
    handle = KernelHandle(km, proc)
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


#: The most kernels the pool keeps warm (each costs ~60 MB and a process).
MAX_POOL_SIZE = 8


class KernelPool:
    """Process-wide warm kernels: ``take()`` hands out a ready, never-used kernel.

    ``size`` kernels are kept ready; after each ``take`` a background thread starts a
    replacement. Kernels are never returned to the pool (no state leaks between REPLs).
    """

    def __init__(self, size: int = 1, startup_timeout: float = 30.0) -> None:
        self.size = size
        self.startup_timeout = startup_timeout
        self._lock = threading.Condition()
        self._ready: list[KernelHandle] = []
        self._starting = 0
        self._closed = False
        self._held = 0
        # While held: kernels the holder still expects to take, and how many at once.
        self._hold_remaining = 0
        self._hold_parallel = 1

    def prewarm(self, n: int) -> None:
        """Start kernels in the background until ``n`` are ready or starting.

        The pool remembers the largest demand (up to ``MAX_POOL_SIZE``) and refills to
        it after each ``take``, so a second K-candidate search finds K warm kernels.
        """
        with self._lock:
            if self._closed:
                return
            self.size = max(self.size, min(n, MAX_POOL_SIZE))
        self._start_up_to(n)

    def _start_up_to(self, n: int) -> None:
        """Start kernels until ``n`` are ready or starting (no change to ``size``)."""
        with self._lock:
            if self._closed:
                return
            missing = n - len(self._ready) - self._starting
            self._starting += max(missing, 0)
        for _ in range(max(missing, 0)):
            threading.Thread(target=self._fill_one, name="lmrepl-pool-fill", daemon=True).start()

    def _fill_one(self) -> None:
        handle: KernelHandle | None = None
        try:
            handle = start_kernel(timeout=self.startup_timeout)
        except Exception:
            handle = None
        with self._lock:
            self._starting -= 1
            if handle is not None and not self._closed:
                self._ready.append(handle)
                handle = None
            self._lock.notify_all()
        if handle is not None:
            handle.kill()

    @contextlib.contextmanager
    def refill_held(self, takes: int, parallel: int) -> Iterator[None]:
        """While the block runs, start only the kernels the holder will still take.

        A K-candidate search takes ``takes`` kernels, ``parallel`` at a time. Refilling
        the whole pool during it costs ~0.7 s of CPU per kernel, which on 2 cores slowed
        the candidates themselves (benchmarks/srlm.py); so during the search the pool
        keeps just enough starting for the candidates still queued, and refills to its
        size when the block ends.
        """
        with self._lock:
            self._held += 1
            self._hold_remaining = takes
            self._hold_parallel = max(parallel, 1)
        try:
            yield
        finally:
            with self._lock:
                self._held -= 1
                release = self._held == 0
            if release:
                self.prewarm(self.size)

    def wait_ready(self, n: int = 1, timeout: float = 30.0) -> bool:
        """Prewarm ``n`` kernels and wait until they are ready; False on timeout."""
        self.prewarm(n)
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(self._ready) < n and not self._closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._lock.wait(min(left, 0.05))
            return len(self._ready) >= n

    def take(self, timeout: float | None = None) -> KernelHandle:
        """A ready kernel: a warm one at once, one being started, or a fresh start."""
        timeout = self.startup_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        handle: KernelHandle | None = None
        with self._lock:
            while not self._closed:
                while self._ready:
                    candidate = self._ready.pop(0)
                    if candidate.alive():
                        handle = candidate
                        break
                    candidate.kill()
                if handle is not None or self._starting == 0:
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._lock.wait(min(left, 0.05))
        if not self._closed:
            if self._held:
                with self._lock:
                    self._hold_remaining = max(self._hold_remaining - 1, 0)
                    queued = max(self._hold_remaining - self._hold_parallel + 1, 0)
                self._start_up_to(min(queued, self._hold_parallel))
            else:
                self.prewarm(self.size)
        if handle is None:
            handle = start_kernel(timeout=max(deadline - time.monotonic(), 1.0))
        return handle

    def shutdown(self) -> None:
        """Kill every ready kernel and stop refilling (registered with ``atexit``)."""
        with self._lock:
            self._closed = True
            ready, self._ready = self._ready, []
            self._lock.notify_all()
        for handle in ready:
            handle.kill()


_pool_lock = threading.Lock()
_pool: KernelPool | None = None


def default_pool() -> KernelPool:
    """The process-wide pool (created on first use)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = KernelPool()
        return _pool


def _at_exit() -> None:
    if _pool is not None:
        _pool.shutdown()
    for handle in list(_LIVE):
        handle.kill()


atexit.register(_at_exit)

"""Starting, bootstrapping and killing ipykernel processes (the pool is kernel_pool.py).

Every kernel is forked by one long-lived spawner thread: the kernel asks Linux for
``PR_SET_PDEATHSIG`` (SIGKILL), which fires when the *thread* that forked it ends, so
forking from short-lived worker threads would kill kernels early. The same signal
ends the kernel when the host is SIGKILLed, even while the kernel spins in C code
(ipykernel's own parent poller needs the GIL and cannot run then).

A sandboxed kernel (``sandbox.py``) is started as ``bwrap ... python -c <launch>``:
the host's process is bwrap, which holds the sandbox, dies with the spawner thread
(``--die-with-parent``) and takes every process inside with it; interrupts go to the
kernel's own process, found below bwrap's reaper once the kernel has answered. Each
kernel gets a private folder for its connection file, ipc sockets and context pipes.
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
import weakref
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
from jupyter_client.manager import KernelManager

from lmrepl.repl import kernel_agent, kernel_bounds, kernel_strings
from lmrepl.repl import kernel_protocol as protocol
from lmrepl.repl.kernel_env import kernel_environment
from lmrepl.repl.sandbox import LIMITS, Sandbox, bwrap_argv

#: Plain kernels: no sandbox (``environment_kwargs={"sandbox": "none"}``).
NO_SANDBOX = Sandbox("none")

# Runs before ipykernel is imported: ask for SIGKILL when the forking thread ends, quit
# at once if the host already died between fork and prctl, and set the sandbox's hard
# resource limits (soft = hard: nothing in the kernel can raise them again).
_LAUNCH_CODE = (
    "import ctypes, os, signal, resource\n"
    "try:\n"
    "    ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL), 0, 0, 0)\n"
    "except Exception:\n"
    "    pass\n"
    "_p = os.environ.get('JPY_PARENT_PID')\n"
    "if _p and os.getppid() != int(_p):\n"
    "    os._exit(1)\n"
    "for _n, _v in {rlimits!r}.items():\n"
    "    resource.setrlimit(getattr(resource, _n), (_v, _v))\n"
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
        (protocol.BOUNDS_MODULE, protocol.BOUNDS_FILE, _source(kernel_bounds)),
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
    """One started kernel process (maybe inside a sandbox) and a connected client.

    ``proc`` is the process the host started: the kernel itself, or the bwrap that
    holds its sandbox. ``pid`` is the kernel's own process (as the host sees it), the
    one that gets interrupts.
    """

    def __init__(
        self,
        km: KernelManager,
        proc: subprocess.Popen[bytes],
        *,
        sandbox: Sandbox = NO_SANDBOX,
        kernel_dir: str,
        home_dir: str | None = None,
    ) -> None:
        self.km = km
        self.proc = proc
        self.sandbox = sandbox
        #: The kernel's private folder: connection file, ipc sockets, context FIFOs.
        self.kernel_dir = kernel_dir
        self.home_dir = home_dir
        self._pid: int | None = None if sandbox.kind == "bwrap" else proc.pid
        self.kc: Any = None
        self.ready = False
        self._killed = False

    @property
    def pid(self) -> int:
        """The kernel process's id (until a sandboxed kernel answered: bwrap's)."""
        return self.proc.pid if self._pid is None else self._pid

    def find_kernel_process(self) -> None:
        """Find a sandboxed kernel's own process, once, right after it answered.

        Now the kernel is the only process below bwrap's reaper; later, orphans of model
        code (reparented to the reaper) would sit at the same depth.
        """
        if self._pid is None:
            found = _sandboxed_kernel_pid(self.proc.pid)
            if found is None:
                raise RuntimeError("the sandboxed kernel's process was not found below bwrap")
            self._pid = found

    def alive(self) -> bool:
        """True while the kernel process runs (a cheap non-blocking waitpid)."""
        return self.proc.poll() is None

    def interrupt(self) -> None:
        """Send SIGINT to the kernel (ipykernel's interrupt_mode "signal")."""
        if self._pid is None:
            return  # a sandboxed kernel not started yet: nothing to stop
        with contextlib.suppress(ProcessLookupError):
            os.kill(self._pid, signal.SIGINT)

    def kill(self) -> None:
        """SIGKILL the kernel's process tree and remove its files.

        Unsandboxed, the kernel leads its own session, so its process group ends with it
        (children that started their own session survive: SPEC §8.1). Sandboxed, killing
        bwrap ends the sandbox's PID 1, and with it every process inside.
        """
        if self._killed:
            return
        self._killed = True
        if self.sandbox.kind == "bwrap":
            # bwrap's reaper first (PID 1 inside: the whole sandbox ends with it). Left to
            # die with bwrap, a sandbox still being set up would outlive the removal of
            # its folder just long enough to complain about it on the terminal.
            for pid in _children(self.proc.pid):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
        for sender, pid in ((os.killpg, self.proc.pid), (os.kill, self.proc.pid)):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                sender(pid, signal.SIGKILL)
        if self._pid is not None and self._pid != self.proc.pid:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(self._pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        if self.kc is not None:
            with contextlib.suppress(Exception):
                self.kc.stop_channels()
        with contextlib.suppress(Exception):
            # Connection file, ipc files, the control socket and the manager's own zmq
            # context: left to the garbage collector, that context's teardown can block.
            self.km.cleanup_resources()
        for folder in (self.kernel_dir, self.home_dir):
            if folder:
                shutil.rmtree(folder, ignore_errors=True)

    def connect(self, timeout: float) -> None:
        """Connect a client, wait until the kernel answers, and install the agent.

        The client's sockets come from a context with ``MAXMSGSIZE``: model code can send
        the host any message, and none over the limit is ever read into memory.
        """
        from lmrepl.repl.kernel_messages import run_silent
        from lmrepl.repl.kernel_validate import client_context

        kc = self.km.client(context=client_context())
        kc.start_channels(hb=False)
        self.kc = kc
        kc.wait_for_ready(timeout=timeout)
        run_silent(self, bootstrap_code(), {}, timeout)
        self.ready = True


class _Spawner:
    """The one long-lived thread that forks kernels (see the module docstring)."""

    def __init__(self) -> None:
        self._jobs: queue.Queue[tuple[dict[str, str], Sandbox, Future[KernelHandle]]] = (
            queue.Queue()
        )
        self._thread = threading.Thread(target=self._run, name="lmrepl-kernel-spawner", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            env, sandbox, fut = self._jobs.get()
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                fut.set_result(_launch(env, sandbox))
            except BaseException as exc:
                fut.set_exception(exc)

    def launch(self, env: dict[str, str], sandbox: Sandbox) -> Future[KernelHandle]:
        """Fork a kernel with ``env`` in ``sandbox`` on the spawner thread."""
        fut: Future[KernelHandle] = Future()
        self._jobs.put((env, sandbox, fut))
        return fut


_runtime_lock = threading.Lock()
_runtime_dir: str | None = None


def _private_runtime_dir() -> str:
    """A 0700 directory holding one private folder per kernel (removed at exit)."""
    global _runtime_dir
    with _runtime_lock:
        if _runtime_dir is None or not os.path.isdir(_runtime_dir):
            _runtime_dir = tempfile.mkdtemp(prefix="lmrepl-k-")
        return _runtime_dir


def _remove_runtime_dir() -> None:
    with _runtime_lock:
        if _runtime_dir is not None:
            shutil.rmtree(_runtime_dir, ignore_errors=True)


# Registered at import, before the pools' and ``kill_all``'s hooks: exit hooks run last
# first, so the folder goes only after every pool has stopped starting kernels into it.
atexit.register(_remove_runtime_dir)


_KERNEL_NAME = "lmrepl"


class _LmreplSpecs(KernelSpecManager):
    """Knows one kernel spec, built per launch rather than installed in a data dir."""

    def __init__(self, argv: list[str]) -> None:
        super().__init__()
        self._argv = argv

    def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
        """The lmrepl kernel spec, whatever the name (KernelManager asks for ``lmrepl``)."""
        return KernelSpec(
            argv=self._argv,
            display_name="lmrepl",
            language="python",
            interrupt_mode="signal",
        )


def kernel_argv(sandbox: Sandbox, kernel_dir: str, home_dir: str | None) -> list[str]:
    """The command that starts one kernel, wrapped in bwrap for a sandboxed one."""
    limits = LIMITS.as_rlimits() if sandbox.kind == "bwrap" else {}
    argv = [
        sys.executable,
        "-c",
        _LAUNCH_CODE.format(rlimits=limits),
        "-f",
        "{connection_file}",
        # No history database: model cells need no sqlite writes or startup cost.
        "--HistoryManager.enabled=False",
    ]
    if sandbox.kind == "bwrap":
        assert home_dir is not None
        return bwrap_argv(sandbox, kernel_dir=kernel_dir, home_dir=home_dir) + argv
    return argv


def _children(pid: int) -> list[int]:
    """The processes ``pid`` started (Linux ``/proc/<pid>/task/<pid>/children``)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except (OSError, ValueError):
        return []


def _sandboxed_kernel_pid(bwrap_pid: int) -> int | None:
    """The kernel under bwrap: bwrap -> its reaper (PID 1 inside) -> the kernel."""
    level = [bwrap_pid]
    for _ in range(2):
        level = [child for pid in level for child in _children(pid)]
        if not level:
            return None
    return min(level)


def _kernel_process(km: KernelManager) -> subprocess.Popen[bytes]:
    """The kernel's Popen: its pid for signals, ``poll`` for ``alive()``, ``wait`` to reap.

    jupyter_client has no public accessor: ``KernelManager.is_alive`` runs a coroutine
    through ``run_sync`` on every call (the driver checks every 50 ms) and exposes no pid
    or wait. The local provisioner keeps the Popen it started in ``process``; this is
    the one place that reads it.
    """
    proc: subprocess.Popen[bytes] = km.provisioner.process  # type: ignore[union-attr]
    return proc


def _launch(env: dict[str, str], sandbox: Sandbox) -> KernelHandle:
    # One private folder per kernel: a sandboxed kernel sees only its own connection
    # file, sockets and context pipes; and jupyter_client picks ipc "ports" by probing
    # for existing socket files, so kernels sharing a folder could collide.
    kernel_dir = tempfile.mkdtemp(prefix="k-", dir=_private_runtime_dir())
    home_dir = None
    if sandbox.kind == "bwrap":
        home_dir = tempfile.mkdtemp(prefix="home-", dir=_private_runtime_dir())
    try:
        km = KernelManager(
            transport="ipc",
            ip=os.path.join(kernel_dir, "ipc"),
            connection_file=os.path.join(kernel_dir, "kernel.json"),
            kernel_spec_manager=_LmreplSpecs(kernel_argv(sandbox, kernel_dir, home_dir)),
            kernel_name=_KERNEL_NAME,
        )
        km.start_kernel(env=env)
    except BaseException:
        for folder in (kernel_dir, home_dir):
            if folder:
                shutil.rmtree(folder, ignore_errors=True)
        raise
    handle = KernelHandle(
        km, _kernel_process(km), sandbox=sandbox, kernel_dir=kernel_dir, home_dir=home_dir
    )
    _LIVE.add(handle)
    return handle


_LIVE: weakref.WeakSet[KernelHandle] = weakref.WeakSet()
_spawner_lock = threading.Lock()
_spawner: _Spawner | None = None


def start_kernel(
    extra_env: dict[str, str] | None = None,
    timeout: float = 30.0,
    sandbox: Sandbox = NO_SANDBOX,
) -> KernelHandle:
    """Start, connect and bootstrap one kernel now (no pool); kills it on failure."""
    global _spawner
    with _spawner_lock:
        if _spawner is None:
            _spawner = _Spawner()
        spawner = _spawner
    handle = spawner.launch(kernel_environment(extra=extra_env), sandbox).result(timeout)
    try:
        handle.connect(timeout)
        handle.find_kernel_process()
    except BaseException:
        handle.kill()
        raise
    return handle


def kill_all() -> None:
    """Kill every kernel this process started and still holds (at exit)."""
    for handle in list(_LIVE):
        handle.kill()


atexit.register(kill_all)

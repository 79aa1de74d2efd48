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
import tempfile
import threading
import time
import weakref
from concurrent.futures import Future
from typing import Any

from jupyter_client.manager import KernelManager

from lmrepl.repl.kernel_command import KERNEL_NAME, LmreplSpecs, bootstrap_code, kernel_argv
from lmrepl.repl.kernel_env import kernel_environment
from lmrepl.repl.sandbox import Sandbox

#: Plain kernels: no sandbox (``environment_kwargs={"sandbox": "none"}``).
NO_SANDBOX = Sandbox("none")


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

    @property
    def killed(self) -> bool:
        """True once ``kill`` was called."""
        return self._killed

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
            for pid in child_pids(self.proc.pid):
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
            for name in ("shell", "iopub", "stdin"):
                # Before the sockets close: libzmq reports their disconnection from its IO
                # thread later, and an event sent to a monitor whose reader was closed
                # blocks that thread for good, and with it every client of the process
                # (no kernel could start any more). A disabled monitor gets no event.
                with contextlib.suppress(Exception):
                    getattr(self.kc, f"{name}_channel").socket.disable_monitor()
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
        from lmrepl.repl.kernel_channels import ZmqLink
        from lmrepl.repl.kernel_messages import run_silent
        from lmrepl.repl.kernel_ready import await_kernel_info, await_stdin
        from lmrepl.repl.kernel_validate import client_context

        kc = self.km.client(context=client_context())
        kc.start_channels(hb=False)
        self.kc = kc
        await_kernel_info(self, timeout)
        run_silent(self, bootstrap_code(), {}, timeout)
        link = ZmqLink(self)
        try:
            await_stdin(self, link, timeout)
        finally:
            link.close()
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
            # Held while forking, so ``kill_all`` at exit waits for a fork in progress and
            # kills its kernel, rather than leaving it to start into removed folders.
            with _launch_lock:
                try:
                    if _closing:
                        raise RuntimeError("the interpreter is exiting: no kernel is started")
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


def child_pids(pid: int) -> list[int]:
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
        level = [child for pid in level for child in child_pids(pid)]
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
            kernel_spec_manager=LmreplSpecs(kernel_argv(sandbox, kernel_dir, home_dir)),
            kernel_name=KERNEL_NAME,
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
_launch_lock = threading.Lock()
_closing = False
#: Kernels starting at once. Each start is ~0.3 s of CPU; with more at once than cores,
#: every one of them is late, and the first candidate of a search waits for all of them.
_start_slots = threading.BoundedSemaphore(max(2, os.cpu_count() or 2))


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
    deadline = time.monotonic() + timeout
    if not _start_slots.acquire(timeout=timeout):
        raise TimeoutError(f"no kernel could start within {timeout:.1f} s (others starting)")
    try:
        fut = spawner.launch(kernel_environment(extra=extra_env), sandbox)
        handle = fut.result(max(deadline - time.monotonic(), 0.1))
        try:
            handle.connect(max(deadline - time.monotonic(), 0.1))
            handle.find_kernel_process()
        except BaseException:
            handle.kill()
            raise
    finally:
        _start_slots.release()
    return handle


def live_handles() -> list[KernelHandle]:
    """The kernels this process started and has not ended (starting, warm or in use)."""
    return [h for h in list(_LIVE) if not h.killed and h.alive()]


def kill_all() -> None:
    """Kill every kernel this process started and still holds (at exit).

    No kernel starts after this: a fork in progress finishes first and is killed too.
    """
    global _closing
    got = _launch_lock.acquire(timeout=5)
    _closing = True
    if got:
        _launch_lock.release()
    for handle in list(_LIVE):
        handle.kill()


atexit.register(kill_all)

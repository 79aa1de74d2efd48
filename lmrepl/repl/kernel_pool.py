"""The process-wide warm pool of kernels: a ready, never-used kernel at ``take()``.

Its public face is ``lmrepl.kernels`` (``configure``, ``stats``, ``shutdown``).
"""

from __future__ import annotations

import atexit
import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

from lmrepl.repl.kernel_launch import KernelHandle, start_kernel
from lmrepl.repl.sandbox import Sandbox, choose


@dataclass
class PoolSettings:
    """What every pool follows (``lmrepl.kernels.configure`` changes it)."""

    #: The most idle kernels one pool keeps warm (each costs ~60 MB and a process).
    size: int = 8
    #: Seconds an idle warm kernel lives before it is ended (None: until exit).
    idle_timeout: float | None = 300.0


#: The process-wide settings of every pool.
SETTINGS = PoolSettings()


class KernelPool:
    """Process-wide warm kernels: ``take()`` hands out a ready, never-used kernel.

    ``size`` kernels are kept ready; after each ``take`` a background thread starts a
    replacement. Kernels are never returned to the pool (no state leaks between REPLs).
    All kernels of a pool run in one ``sandbox`` (default: what ``sandbox="auto"``
    chooses on this machine); in a sandbox no kernel can see or reach another.

    At most ``SETTINGS.size`` kernels are kept (0: no pool, every take starts one), and
    a kernel left idle for ``SETTINGS.idle_timeout`` seconds is ended; once all have
    expired the pool forgets the demand it remembered and refills to one kernel.
    """

    def __init__(
        self, size: int = 1, startup_timeout: float = 30.0, sandbox: Sandbox | None = None
    ) -> None:
        self.size = size
        self.startup_timeout = startup_timeout
        self.sandbox = choose("auto") if sandbox is None else sandbox
        self._lock = threading.Condition()
        self._ready: list[KernelHandle] = []
        # When each ready kernel became ready (monotonic), for the idle expiry.
        self._ready_since: dict[KernelHandle, float] = {}
        self._reaper: threading.Thread | None = None
        # Kernels still starting when the pool was released: ended once started.
        self._discard = 0
        self._starting = 0
        self._closed = False
        self._held = 0
        # While held: kernels the holder still expects to take, and how many at once.
        self._hold_remaining = 0
        self._hold_parallel = 1

    def prewarm(self, n: int) -> None:
        """Start kernels in the background until ``n`` are ready or starting.

        The pool remembers the largest demand (up to ``SETTINGS.size``) and refills to
        it after each ``take``, so a second K-candidate search finds K warm kernels.
        """
        with self._lock:
            if self._closed:
                return
            self.size = max(self.size, n)
        self._start_up_to(n)

    def _start_up_to(self, n: int) -> None:
        """Start kernels until ``n`` are ready or starting (no change to ``size``)."""
        with self._lock:
            if self._closed:
                return
            n = min(n, SETTINGS.size)
            missing = n - len(self._ready) - self._starting
            self._starting += max(missing, 0)
        for _ in range(max(missing, 0)):
            threading.Thread(target=self._fill_one, name="lmrepl-pool-fill", daemon=True).start()

    def _fill_one(self) -> None:
        handle: KernelHandle | None = None
        try:
            handle = start_kernel(timeout=self.startup_timeout, sandbox=self.sandbox)
        except Exception:
            handle = None
        with self._lock:
            discard = self._discard > 0
            if discard:
                self._discard -= 1
            else:
                self._starting -= 1
            if (
                handle is not None
                and not self._closed
                and not discard
                and len(self._ready) < SETTINGS.size
            ):
                self._ready.append(handle)
                self._ready_since[handle] = time.monotonic()
                handle = None
                self._start_reaper()
            self._lock.notify_all()
        if handle is not None:
            handle.kill()

    # -- idle expiry ---------------------------------------------------------------------
    def _start_reaper(self) -> None:
        """Start the thread that ends idle kernels (called with the lock held)."""
        if self._reaper is None or not self._reaper.is_alive():
            self._reaper = threading.Thread(
                target=self._reap, name="lmrepl-pool-expiry", daemon=True
            )
            self._reaper.start()

    def _reap(self) -> None:
        """End kernels idle past the timeout; exits when the pool is empty or closed."""
        while True:
            with self._lock:
                if self._closed or not self._ready:
                    self._reaper = None
                    return
                expired = self._expired()
                if not expired:
                    self._lock.wait(self._next_expiry())
                    continue
                for handle in expired:
                    self._ready.remove(handle)
                    self._ready_since.pop(handle, None)
                if not self._ready and not self._starting:
                    self.size = 1  # idle for long: the last search's demand is stale
            for handle in expired:
                handle.kill()

    def _expired(self) -> list[KernelHandle]:
        timeout = SETTINGS.idle_timeout
        if timeout is None:
            return []
        now = time.monotonic()
        return [h for h in self._ready if now - self._ready_since.get(h, now) >= timeout]

    def _next_expiry(self) -> float:
        """Seconds to wait before looking again (settings may change meanwhile)."""
        timeout = SETTINGS.idle_timeout
        if timeout is None:
            return 5.0
        oldest = min(self._ready_since.get(h, time.monotonic()) for h in self._ready)
        return min(max(oldest + timeout - time.monotonic(), 0.01), 5.0)

    def trim(self) -> None:
        """Apply changed settings now: end kernels over the size and idle ones."""
        with self._lock:
            keep = max(SETTINGS.size, 0)
            extra = self._ready[keep:]
            del self._ready[keep:]
            expired = [h for h in self._expired() if h not in extra]
            for handle in expired:
                self._ready.remove(handle)
            for handle in (*extra, *expired):
                self._ready_since.pop(handle, None)
            self.size = min(self.size, max(keep, 1))
            self._lock.notify_all()
        for handle in (*extra, *expired):
            handle.kill()

    def ready_handles(self) -> list[KernelHandle]:
        """The warm kernels now (a copy)."""
        with self._lock:
            return list(self._ready)

    @property
    def starting(self) -> int:
        """Kernels being started for the pool now."""
        return self._starting

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
                    self._ready_since.pop(candidate, None)
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
            handle = start_kernel(
                timeout=max(deadline - time.monotonic(), 1.0), sandbox=self.sandbox
            )
        return handle

    def shutdown(self) -> None:
        """Kill every ready kernel and stop refilling (registered with ``atexit``)."""
        with self._lock:
            self._closed = True
            ready, self._ready = self._ready, []
            self._ready_since.clear()
            self._lock.notify_all()
        for handle in ready:
            handle.kill()

    def release(self) -> None:
        """Kill the warm kernels (and those starting, once started); stay usable.

        The pool forgets the demand it remembered: the next take starts afresh.
        """
        with self._lock:
            ready, self._ready = self._ready, []
            self._ready_since.clear()
            self.size = 1
            # Those starting now are ended once started; new demand starts new ones.
            self._discard += self._starting
            self._starting = 0
            self._lock.notify_all()
        for handle in ready:
            handle.kill()


_pool_lock = threading.Lock()
_pools: dict[Sandbox, KernelPool] = {}


def default_pool(sandbox: Sandbox | None = None) -> KernelPool:
    """The process-wide pool of kernels in ``sandbox`` (default: ``sandbox="auto"``'s)."""
    key = choose("auto") if sandbox is None else sandbox
    with _pool_lock:
        pool = _pools.get(key)
        if pool is None:
            pool = _pools[key] = KernelPool(sandbox=key)
        return pool


def pools() -> list[KernelPool]:
    """The process-wide pools made so far (one per sandbox in use)."""
    with _pool_lock:
        return list(_pools.values())


def shutdown_all() -> None:
    """Shut every process-wide pool down (registered with ``atexit``)."""
    with _pool_lock:
        pools = list(_pools.values())
    for pool in pools:
        pool.shutdown()


atexit.register(shutdown_all)

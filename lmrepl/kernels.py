"""The kernels this process keeps: see them, size the warm pool, end them.

Every RLM and SRLM candidate on the kernel REPL runs its code in a kernel (an ipykernel
process). Starting one costs ~0.3 s of CPU, so this process keeps a few *warm*: ready,
never used, handed out at once. After a run that is what stays running:

- **warm kernels** of the pool, up to ``size`` (default 8: a K=8 search finds its K
  ready), each ending after ``idle_timeout`` seconds unused (default 300);
- **kernels in use**: those of a ``persistent=True`` RLM until its ``close()``, and any
  REPL still open (on a Jupyter gateway too: ``remote``).

Nothing outlives the process: every kernel is ended at exit, and dies with the process
even when it is killed. ``configure(size=0)`` keeps none warm (each run starts cold);
``shutdown()`` ends the warm ones now::

    import lmrepl.kernels
    lmrepl.kernels.configure(size=2, idle_timeout=60)
    print(lmrepl.kernels.stats())
    lmrepl.kernels.shutdown()
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Any

from lmrepl import checks
from lmrepl.errors import ConfigurationError
from lmrepl.repl import kernel_launch, kernel_pool

__all__ = ["KernelStats", "configure", "shutdown", "stats"]

_UNSET: Any = object()


@dataclass(frozen=True)
class KernelStats:
    """What ``stats()`` reports: the kernels of this process now."""

    #: Warm kernels, ready to be handed out.
    ready: int
    #: Kernels being started for the pool.
    starting: int
    #: Kernels held by REPLs (runs in progress, persistent RLMs, open REPLs).
    in_use: int
    #: Memory of those kernels' processes in MB (proportional set size, so pages they
    #: share are split between them), or None where the system does not tell.
    memory_mb: float | None
    #: The most warm kernels kept (``configure(size=...)``).
    size: int
    #: Seconds a warm kernel stays unused before it ends (None: until exit).
    idle_timeout: float | None
    #: Kernels this process holds on Jupyter gateways (``gateway_url``; not in the
    #: counts above, and their memory is the gateway machine's).
    remote: int = 0

    def __str__(self) -> str:
        memory = "unknown" if self.memory_mb is None else f"{self.memory_mb:.0f} MB"
        idle = "never" if self.idle_timeout is None else f"{self.idle_timeout:g} s idle"
        remote = f"; {self.remote} on gateways" if self.remote else ""
        return (
            f"kernels: {self.ready} ready, {self.starting} starting, {self.in_use} in use"
            f"{remote}; memory {memory}; pool size {self.size}, warm kernels end after {idle}"
        )


def configure(*, size: int = _UNSET, idle_timeout: float | None = _UNSET) -> None:
    """Set the warm pool's ``size`` and ``idle_timeout``; applies at once, to every pool.

    ``size``: the most warm kernels kept (0: none; every REPL starts its own kernel).
    ``idle_timeout``: seconds an unused warm kernel lives (None: until exit).
    Raises ``ConfigurationError`` for a bad value, and changes nothing then.
    """
    if size is not _UNSET:
        checks.check("configure(size=...)", size, checks.integer(0))
    if idle_timeout is not _UNSET:
        checks.check("configure(idle_timeout=...)", idle_timeout, checks.seconds(optional=True))
    if size is _UNSET and idle_timeout is _UNSET:
        raise ConfigurationError("configure() needs size=... or idle_timeout=...")
    settings = kernel_pool.SETTINGS
    if size is not _UNSET:
        settings.size = size
    if idle_timeout is not _UNSET:
        settings.idle_timeout = None if idle_timeout is None else float(idle_timeout)
    for pool in kernel_pool.pools():
        pool.trim()


def stats() -> KernelStats:
    """Count this process's kernels, and measure their memory."""
    pools = kernel_pool.pools()
    ready = [h for p in pools for h in p.ready_handles()]
    warm = set(ready)
    in_use = [h for h in kernel_launch.live_handles() if h.ready and h not in warm]
    sizes = [_memory_bytes(h.proc.pid) for h in (*ready, *in_use)]
    known = [s for s in sizes if s is not None]
    memory = sum(known) / 2**20 if known or not sizes else None
    return KernelStats(
        ready=len(ready),
        starting=sum(p.starting for p in pools),
        in_use=len(in_use),
        memory_mb=memory,
        size=kernel_pool.SETTINGS.size,
        idle_timeout=kernel_pool.SETTINGS.idle_timeout,
        remote=_gateway_kernels(),
    )


def _gateway_kernels() -> int:
    """Kernels open on gateways (none unless the gateway module was ever used)."""
    gateway = sys.modules.get("lmrepl.repl.gateway")
    return 0 if gateway is None else len(gateway.open_kernels())


def shutdown() -> None:
    """End the warm kernels (and those starting) now; kernels in use are left alone.

    The pool stays usable: the next run starts a kernel and the pool refills from there.
    A persistent RLM's kernel ends with its ``close()``.
    """
    for pool in kernel_pool.pools():
        pool.release()


def _memory_bytes(pid: int) -> int | None:
    """Proportional set size of ``pid`` and every process below it (Linux), else None."""
    total, seen, todo = 0, set(), [pid]
    found = False
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        size = _pss(current)
        if size is not None:
            total += size
            found = True
        todo.extend(kernel_launch.child_pids(current))
    return total if found else None


def _pss(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None

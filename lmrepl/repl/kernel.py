"""The kernel REPL (SPEC §5): model code runs in a real ipykernel subprocess.

Hard timeouts: at the deadline the kernel gets SIGINT; if it is not idle within
``interrupt_grace`` it is killed and replaced by a fresh one (from the warm pool),
which gets the runtime, contexts, tools and history again, and the model is told its
variables are lost. A dead kernel (``os._exit``, segfault, OOM kill) is noticed within
~50 ms and handled the same way.

Child REPLs (``child_repls="namespace"``) are private namespaces in the same kernel:
``kernel_namespace.KernelNamespaceREPL``.

With ``gateway_url`` the kernels run on a Jupyter gateway (``gateway``): started with a
REST call instead of taken from the pool, restarted through the gateway after a timeout
that an interrupt did not end, and replaced by a new one when they die.
"""

from __future__ import annotations

import threading
import time
import weakref
from typing import Any

from lmrepl.errors import ConfigurationError
from lmrepl.repl import kernel_protocol as protocol
from lmrepl.repl.base import REPL, CellResult, HostBridge
from lmrepl.repl.kernel_channels import Kernel
from lmrepl.repl.kernel_context import ship_context, tool_values
from lmrepl.repl.kernel_env import KERNEL_ENVIRONMENT_KWARGS, KernelConfig
from lmrepl.repl.kernel_launch import start_kernel
from lmrepl.repl.kernel_namespace import KernelNamespaceREPL
from lmrepl.repl.kernel_pool import KernelPool, default_pool
from lmrepl.repl.kernel_session import Drive, KernelSession
from lmrepl.repl.runtime import BASE_NAMES
from lmrepl.repl.sandbox import GATEWAY, choose

__all__ = ["KERNEL_ENVIRONMENT_KWARGS", "KernelNamespaceREPL", "KernelPool", "KernelREPL"]

_OPEN: weakref.WeakSet[KernelREPL] = weakref.WeakSet()
_RUNTIME_NAMES = BASE_NAMES


def _min_deadline(*timeouts: float | None) -> float | None:
    given = [t for t in timeouts if t is not None]
    return time.monotonic() + min(given) if given else None


def _cell_result(drive: Drive, started: float) -> CellResult:
    poll = drive.poll or {}
    status = drive.outcome if drive.outcome in ("ok", "error", "timeout") else "error"
    return CellResult(
        stdout=drive.stdout,
        stderr=drive.stderr,
        display=drive.display,
        error=None if status == "timeout" else drive.error,
        status=status,  # type: ignore[arg-type]
        duration=time.monotonic() - started,
        submitted=bool(poll.get("submitted")),
        answer=poll.get("answer"),
        draft=poll.get("draft"),
    )


class KernelREPL(REPL):
    """A REPL in an ipykernel subprocess; accepts ``KERNEL_ENVIRONMENT_KWARGS``."""

    name = "kernel"

    def __init__(self, *, pool: KernelPool | None = None, **environment_kwargs: Any) -> None:
        self.config = KernelConfig.from_kwargs(**environment_kwargs)
        cfg = self.config
        #: Where this REPL's kernels run (``sandbox="bwrap"`` raises here if it cannot).
        self.sandbox = (
            GATEWAY
            if cfg.gateway_url is not None
            else choose(cfg.sandbox, cfg.network, cfg.read_only_paths)
        )
        self._pool = pool
        self._session: KernelSession | None = None
        self._bridge: HostBridge | None = None
        self._contexts: list[Any] = []
        self._tools: dict[str, Any] = {}
        self._history: list[dict[str, Any]] = []
        self._children: weakref.WeakSet[KernelNamespaceREPL] = weakref.WeakSet()
        self._lock = threading.Lock()

    # -- lifecycle -------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        """The current kernel's process id (changes after a restart; None on a gateway)."""
        return self._session.handle.pid if self._session else None

    @property
    def session(self) -> KernelSession:
        """The driver of this REPL's kernel (raises before ``start``)."""
        if self._session is None:
            raise RuntimeError("KernelREPL.start() was not called (or the REPL is closed)")
        return self._session

    def _new_kernel(self) -> Kernel:
        cfg = self.config
        if cfg.gateway_url is not None:
            # Imported here: the websocket client costs ~0.1 s to import, paid only by
            # users of a gateway.
            from lmrepl.repl import gateway

            where = gateway.Gateway(cfg.gateway_url, cfg.gateway_token, cfg.gateway_kernel_name)
            return gateway.start_kernel(where, timeout=cfg.startup_timeout, env=cfg.extra_env)
        if cfg.use_pool:
            return (self._pool or default_pool(self.sandbox)).take(cfg.startup_timeout)
        return start_kernel(timeout=cfg.startup_timeout, sandbox=self.sandbox)

    def _configure(self, session: KernelSession) -> None:
        cfg = self.config
        op = protocol.ConfigOp(
            op=protocol.OP_CONFIG,
            memory_limit_mb=cfg.memory_limit_mb,
            env=cfg.extra_env,
            display_cap=session.stream_cap,
            max_prompt_chars=cfg.max_prompt_chars,
        )
        try:
            session.op(op, cfg.startup_timeout)
        except RuntimeError as exc:
            # The kernel refused a setting (memory_limit_mb below its own size).
            raise ConfigurationError(str(exc)) from None

    def start(self, bridge: HostBridge) -> None:
        """Take a warm kernel (or start one) and bind host calls to ``bridge``.

        On a started REPL (a persistent session's next turn) only the bridge changes.
        """
        if self._session is not None:
            self._bridge = bridge
            self._session.bridges[0] = bridge
            return
        self._bridge = bridge
        handle = self._new_kernel()
        session = KernelSession(handle, self.config.max_output_chars)
        session.bridges[0] = bridge
        self._session = session
        _OPEN.add(self)
        try:
            self._configure(session)
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> KernelREPL:
        return self

    def close(self) -> None:
        """Kill the kernel; safe to call twice."""
        with self._lock:
            session, self._session = self._session, None
        if session is not None:
            session.close()
        _OPEN.discard(self)

    # -- state the REPL re-sends after a restart ------------------------------------
    def add_context(self, value: Any) -> int:
        """Load ``value`` as ``context_<n>`` (and ``context`` for the first)."""
        index = ship_context(
            self.session,
            0,
            value,
            local_files=self.config.local_files,
            timeout=self.config.startup_timeout + 60,
        )
        self._contexts.append(value)
        return index

    def set_tools(self, tools: dict[str, Any]) -> None:
        """Callables become host-proxied tools; other values are pickled once."""
        values, proxied = tool_values(tools)
        self.session.op(
            protocol.ToolsOp(op=protocol.OP_TOOLS, ns=0, values=values, proxied=proxied), 60
        )
        self._tools = dict(tools)

    def set_history(self, history: list[dict[str, Any]]) -> None:
        """Bind ``history`` in the kernel."""
        self.session.op(protocol.HistoryOp(op=protocol.OP_HISTORY, ns=0, history=list(history)), 60)
        self._history = list(history)

    def reset_submission(self) -> None:
        """Clear the submitted answer in the kernel."""
        self.session.op(protocol.Op(op=protocol.OP_RESET, ns=0), 30)

    def user_variables(self) -> dict[str, str]:
        """The model's variables in the kernel, with type names."""
        return dict(self.session.op(protocol.Op(op=protocol.OP_VARS, ns=0), 30))

    # -- cells -----------------------------------------------------------------------
    def execute(self, code: str, timeout: float | None = None) -> CellResult:
        """Run ``code``; hard timeout = the smaller of ``timeout`` and ``cell_timeout``."""
        started = time.monotonic()
        deadline = _min_deadline(timeout, self.config.cell_timeout)
        limit = None if deadline is None else deadline - started
        session = self.session
        try:
            drive = session.run_cell(code, deadline, self.config.interrupt_grace)
        except Exception as exc:
            # Whatever broke the driver (a kernel message it could not handle, a socket
            # gone under it) is this cell's fault, never the run's: replace the kernel.
            session.handle.kill()
            drive = Drive(outcome="died", error=f"{type(exc).__name__}: {exc}")
        if drive.outcome in ("killed", "died"):
            return self._recover(drive, started, limit)
        result = _cell_result(drive, started)
        if result.status == "timeout":
            result.notice = (
                f"The cell timed out after {limit:.1f} s and was interrupted "
                "(KeyboardInterrupt). Variables defined before the interrupt are kept."
            )
        elif drive.ename == "MemoryError" and self.config.memory_limit_mb is not None:
            result.notice = (
                f"The cell ran out of memory (limit: {self.config.memory_limit_mb} MB). "
                "The kernel is still running; work on smaller pieces."
            )
        return result

    def _recover(self, drive: Drive, started: float, limit: float | None) -> CellResult:
        if drive.outcome == "killed":
            what = (
                f"The cell did not stop within {self.config.interrupt_grace:.1f} s of an "
                f"interrupt after its {limit:.1f} s timeout, so the kernel was killed"
            )
            status = "restarted"
        else:
            what = "The kernel process died or was ended while running the cell (crash, "
            what += "os._exit, out of memory, or a message to the host it could not accept)"
            status = "died"
        for child in list(self._children):
            child.orphan()
        try:
            self._restart()
            names = self._defined_names()
            notice = (
                f"{what}. A fresh kernel was started: ALL VARIABLES YOU DEFINED ARE LOST. "
                f"Still defined: {', '.join(names)}."
            )
        except Exception as exc:
            notice = f"{what}, and starting a fresh kernel failed: {exc}"
        return CellResult(
            stdout=drive.stdout,
            stderr=drive.stderr,
            error=drive.error,
            status=status,  # type: ignore[arg-type]
            duration=time.monotonic() - started,
            notice=notice,
        )

    def _replacement(self) -> Kernel:
        """A fresh kernel: the gateway's kernel restarted in place, else a new one."""
        old = self.session.handle
        if self.config.gateway_url is not None:
            from lmrepl.repl.gateway import GatewayKernel

            if isinstance(old, GatewayKernel) and not old.killed:
                try:
                    return old.restart()
                except Exception:
                    old.kill()  # a kernel the gateway cannot restart: deleted, and a new one
        return self._new_kernel()

    def _restart(self) -> None:
        session = self.session
        session.replace(self._replacement())
        self._configure(session)
        for value in self._contexts:
            ship_context(
                session,
                0,
                value,
                local_files=self.config.local_files,
                timeout=self.config.startup_timeout + 60,
            )
        if self._tools:
            self.set_tools(self._tools)
        if self._history:
            self.set_history(self._history)

    def _defined_names(self) -> list[str]:
        names = [n for n in _RUNTIME_NAMES if n != "context" or self._contexts]
        names += [f"context_{i}" for i in range(len(self._contexts))]
        return names + sorted(self._tools)

    def draft(self) -> str | None:
        """The draft answer in the kernel (a short poll; None if the kernel is busy)."""
        if self._session is None:
            return None
        try:
            polled = self._session.op(protocol.Op(op=protocol.OP_POLL, ns=0), 3)
        except Exception:
            return None
        draft = polled.get("draft") if isinstance(polled, dict) else None
        return str(draft) if draft else None

    def interrupt(self) -> None:
        """Send the kernel an interrupt (the running cell gets KeyboardInterrupt)."""
        if self._session is not None:
            self._session.handle.interrupt()

    def make_child(self) -> REPL | None:
        """A private namespace in this kernel, or None with ``child_repls="kernel"``."""
        if self.config.child_repls == "kernel":
            return None
        child = KernelNamespaceREPL(self.session, self.config)
        self._children.add(child)
        return child


def close_all() -> None:
    """Close every open KernelREPL (test teardown; the pool's atexit hook kills the rest)."""
    for repl in list(_OPEN):
        repl.close()

"""Child REPLs of the kernel REPL: private namespaces in the parent's kernel.

A child (``child_repls="namespace"``) has its own runtime and contexts in the same
kernel, driven through the parent's blocked host call (see ``kernel_session``). Its
cell timeouts are *soft*: the kernel interrupts a child's cell at its timeout only
while that cell is the innermost code running (not while a grandchild runs inside
it), and code that ignores KeyboardInterrupt or blocks in C is stopped only by the
parent cell's own hard timeout.
"""

from __future__ import annotations

import contextlib
import time
import weakref
from typing import Any

from lmrepl.repl import kernel_protocol as protocol
from lmrepl.repl.base import REPL, CellResult, HostBridge
from lmrepl.repl.kernel_context import ship_context, tool_values
from lmrepl.repl.kernel_env import KernelConfig
from lmrepl.repl.kernel_session import KernelGone, KernelSession


class KernelNamespaceREPL(REPL):
    """A child REPL: a private namespace (own runtime and contexts) in a parent's kernel."""

    name = "kernel-namespace"

    def __init__(self, session: KernelSession, config: KernelConfig) -> None:
        self._session: KernelSession | None = session
        self.config = config
        self._generation = session.generation
        self.ns: int | None = None
        self._orphaned = False
        self._children: weakref.WeakSet[KernelNamespaceREPL] = weakref.WeakSet()

    def orphan(self) -> None:
        """The parent's kernel was replaced: this namespace no longer exists."""
        self._orphaned = True
        for child in list(self._children):
            child.orphan()

    def _op(self, op: protocol.Op, timeout: float | None) -> Any:
        session = self._session
        if session is None or self.ns is None:
            raise RuntimeError("this child REPL is not started or already closed")
        if self._orphaned or session.generation != self._generation:
            raise RuntimeError("the parent's kernel was restarted; this child REPL is gone")
        return session.op({**op, "ns": self.ns}, timeout)

    def start(self, bridge: HostBridge) -> None:
        """Create the namespace; its host calls go to ``bridge``."""
        session = self._session
        if session is None:
            raise RuntimeError("this child REPL is closed")
        self.ns = session.new_namespace(bridge)
        self._op(protocol.Op(op=protocol.OP_NEW_NS), self.config.startup_timeout)

    def add_context(self, value: Any) -> int:
        """Load a context into this namespace (the parent's are not visible here)."""
        if self._session is None or self.ns is None:
            raise RuntimeError("this child REPL is not started")
        return ship_context(
            self._session,
            self.ns,
            value,
            local_files=self.config.local_files,
            timeout=self.config.startup_timeout + 60,
        )

    def set_tools(self, tools: dict[str, Any]) -> None:
        """As ``KernelREPL.set_tools``, for this namespace."""
        values, proxied = tool_values(tools)
        self._op(protocol.ToolsOp(op=protocol.OP_TOOLS, values=values, proxied=proxied), 60)

    def set_history(self, history: list[dict[str, Any]]) -> None:
        """Bind ``history`` in this namespace."""
        self._op(protocol.HistoryOp(op=protocol.OP_HISTORY, history=list(history)), 60)

    def reset_submission(self) -> None:
        """Clear this namespace's submitted answer."""
        self._op(protocol.Op(op=protocol.OP_RESET), 30)

    def user_variables(self) -> dict[str, str]:
        """This namespace's variables."""
        return dict(self._op(protocol.Op(op=protocol.OP_VARS), 30))

    def execute(self, code: str, timeout: float | None = None) -> CellResult:
        """Run a cell in this namespace (soft timeout, see the module docstring)."""
        started = time.monotonic()
        limit = [t for t in (timeout, self.config.cell_timeout) if t is not None]
        soft = min(limit) if limit else None
        wait = None if soft is None else soft + self.config.interrupt_grace + 5.0
        try:
            res: protocol.CellOutcome = self._op(
                protocol.CellOp(op=protocol.OP_CELL, code=code, timeout=soft), wait
            )
        except (RuntimeError, TimeoutError, KernelGone) as exc:
            status = "timeout" if isinstance(exc, TimeoutError) else "cancelled"
            return CellResult(
                status=status,  # type: ignore[arg-type]
                duration=time.monotonic() - started,
                notice=f"The cell could not run to the end: {exc}",
            )
        result = CellResult(
            stdout=res.get("stdout", ""),
            stderr=res.get("stderr", ""),
            display=res.get("display"),
            error=res.get("error") if res.get("status") != "timeout" else None,
            status=res.get("status", "ok"),
            duration=time.monotonic() - started,
            submitted=bool(res.get("submitted")),
            answer=res.get("answer"),
            draft=res.get("draft"),
        )
        if result.status == "timeout":
            result.notice = (
                f"The cell timed out after {soft:.1f} s and was interrupted "
                "(KeyboardInterrupt). Variables defined before the interrupt are kept."
            )
        return result

    def make_child(self) -> REPL | None:
        """A grandchild namespace in the same kernel."""
        if self._session is None:
            return None
        child = KernelNamespaceREPL(self._session, self.config)
        self._children.add(child)
        return child

    def close(self) -> None:
        """Drop the namespace (best effort; the kernel itself belongs to the parent)."""
        session, self._session = self._session, None
        if session is None or self.ns is None:
            return
        if not self._orphaned and session.generation == self._generation and not session.closed:
            # Best effort: the parent may be closing or its cell may have ended.
            with contextlib.suppress(Exception):
                session.op(protocol.Op(op=protocol.OP_DROP_NS, ns=self.ns), 5)
        session.bridges.pop(self.ns, None)

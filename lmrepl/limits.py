"""Hard, global limits: budget, tokens, wall time, cancellation.

One ``LimitGuard`` serves a root run and every child at every depth; SRLM
candidates get derived guards that share the limits and usage but can also be
cancelled one by one (early stop).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from lmrepl.errors import (
    BudgetExceeded,
    LimitExceeded,
    RunCancelled,
    TimeoutExceeded,
    TokenLimitExceeded,
)
from lmrepl.usage import UsageTracker

T = TypeVar("T")


class LimitGuard:
    """Checks the run's limits; ``check()`` raises the matching ``LimitExceeded``."""

    def __init__(
        self,
        usage: UsageTracker,
        *,
        max_budget: float | None = None,
        max_tokens: int | None = None,
        max_timeout: float | None = None,
        cancel_events: tuple[threading.Event, ...] = (),
        deadline: float | None = None,
    ) -> None:
        self.usage = usage
        self.max_budget = max_budget
        self.max_tokens = max_tokens
        self.max_timeout = max_timeout
        if deadline is None and max_timeout is not None:
            deadline = time.monotonic() + max_timeout
        self.deadline = deadline
        self.cancel_event = threading.Event()
        self._cancel_events = (*cancel_events, self.cancel_event)
        self._hooks_lock = threading.Lock()
        self._hooks: list[Callable[[], None]] = []
        self._children: list[LimitGuard] = []

    def derive(self) -> LimitGuard:
        """A guard with the same limits and deadline that can be cancelled on its own."""
        child = LimitGuard(
            self.usage,
            max_budget=self.max_budget,
            max_tokens=self.max_tokens,
            max_timeout=self.max_timeout,
            cancel_events=self._cancel_events,
            deadline=self.deadline,
        )
        with self._hooks_lock:
            self._children.append(child)
        return child

    def on_cancel(self, hook: Callable[[], None]) -> Callable[[], None]:
        """Call ``hook`` when this guard (or an ancestor) is cancelled; returns a remover.

        The runner uses it to interrupt a running cell at once instead of waiting for
        the cell to end by itself.
        """
        with self._hooks_lock:
            self._hooks.append(hook)
        if self.cancelled:
            hook()

        def remove() -> None:
            with self._hooks_lock:
                if hook in self._hooks:
                    self._hooks.remove(hook)

        return remove

    @property
    def cancelled(self) -> bool:
        """True once this guard or one it derives from was cancelled."""
        return any(e.is_set() for e in self._cancel_events)

    def cancel(self) -> None:
        """Cancel this guard (and the guards derived from it), running their hooks."""
        self.cancel_event.set()
        self._run_hooks()

    def _run_hooks(self) -> None:
        with self._hooks_lock:
            hooks = list(self._hooks)
            children = list(self._children)
        for hook in hooks:
            # An interrupt that fails must not break the cancel.
            with contextlib.suppress(Exception):
                hook()
        for child in children:
            child._run_hooks()

    def remaining(self) -> float | None:
        """Seconds left before ``max_timeout`` (None = no limit)."""
        if self.deadline is None:
            return None
        return self.deadline - time.monotonic()

    def clamp(self, seconds: float | None) -> float | None:
        """``seconds`` limited to the time left (at least a few ms, so calls can fail fast)."""
        left = self.remaining()
        if left is None:
            return seconds
        left = max(left, 0.01)
        return left if seconds is None else min(seconds, left)

    def exceeded(self) -> LimitExceeded | RunCancelled | None:
        """The limit that is hit now, as an (unraised) exception, or None."""
        if self.cancelled:
            return RunCancelled("the run was cancelled")
        left = self.remaining()
        if left is not None and left <= 0:
            return TimeoutExceeded(f"max_timeout of {self.max_timeout:g} s reached")
        inp, out, cost = self.usage.totals()
        if self.max_tokens is not None and inp + out >= self.max_tokens:
            return TokenLimitExceeded(
                f"max_tokens of {self.max_tokens:,} reached ({inp + out:,} tokens used)"
            )
        if self.max_budget is not None and cost >= self.max_budget:
            return BudgetExceeded(f"max_budget of ${self.max_budget:g} reached (${cost:.4f} spent)")
        return None

    def check(self) -> None:
        """Raise if a limit is hit or the run was cancelled."""
        exc = self.exceeded()
        if exc is not None:
            raise exc

    def wait_for(self, fn: Callable[[], T], *, poll: float = 0.02) -> T:
        """Run ``fn`` in a helper thread and return its result, unless the run is cancelled
        or times out first — then raise at once and abandon the call (its result is
        dropped), so a stuck request cannot outlive ``max_timeout`` or a cancel."""
        box: dict[str, object] = {}
        done = threading.Event()

        def target() -> None:
            try:
                box["value"] = fn()
            except BaseException as exc:
                box["error"] = exc
            finally:
                done.set()

        threading.Thread(target=target, name="lmrepl-call", daemon=True).start()
        while not done.wait(poll):
            exc = self.exceeded()
            if isinstance(exc, (RunCancelled, TimeoutExceeded)):
                raise exc
        if "error" in box:
            raise box["error"]  # type: ignore[misc]
        return box["value"]  # type: ignore[return-value]

"""Hard, global limits: budget, tokens, wall time, cancellation, and the sub-call gate.

One ``LimitGuard`` serves a root run and every child at every depth; SRLM
candidates get derived guards that share the limits and usage but can also be
cancelled one by one (early stop).

Every model request is admitted by ``LimitGuard.admit`` (the sub-call gate and the
token and cost reservations): see ``lmrepl.admission`` for the rules and where the
``max_tokens`` guarantee is exact.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Callable, Mapping
from typing import TypeVar

from lmrepl.admission import (
    DEFAULT_OUTPUT_RESERVE,
    POLL_S,
    Admission,
    CellAbandoned,
    SharedLimits,
    estimate_request_tokens,
    per_token_prices,
)
from lmrepl.errors import (
    BudgetExceeded,
    LimitExceeded,
    RunCancelled,
    TimeoutExceeded,
    TokenLimitExceeded,
)
from lmrepl.usage import UsageTracker

T = TypeVar("T")

__all__ = ["Admission", "CellAbandoned", "LimitGuard", "estimate_request_tokens"]


class LimitGuard:
    """Checks the run's limits; ``check()`` raises the matching ``LimitExceeded``.

    ``max_concurrent`` sizes the run's sub-call gate (None: no gate); derived guards
    share it, the usage and the reservations.
    """

    def __init__(
        self,
        usage: UsageTracker,
        *,
        max_budget: float | None = None,
        max_tokens: int | None = None,
        max_timeout: float | None = None,
        max_concurrent: int | None = None,
        cancel_events: tuple[threading.Event, ...] = (),
        deadline: float | None = None,
        _shared: SharedLimits | None = None,
    ) -> None:
        self.usage = usage
        self.max_budget = max_budget
        self.max_tokens = max_tokens
        self.max_timeout = max_timeout
        self.max_concurrent = max_concurrent
        if deadline is None and max_timeout is not None:
            deadline = time.monotonic() + max_timeout
        self.deadline = deadline
        self._shared = _shared if _shared is not None else SharedLimits(max_concurrent)
        self.cancel_event = threading.Event()
        self._cancel_events = (*cancel_events, self.cancel_event)
        self._hooks_lock = threading.Lock()
        self._hooks: list[Callable[[], None]] = []
        self._children: list[LimitGuard] = []

    def derive(self) -> LimitGuard:
        """A guard with the same limits, deadline, gate and reservations that can be
        cancelled on its own."""
        child = LimitGuard(
            self.usage,
            max_budget=self.max_budget,
            max_tokens=self.max_tokens,
            max_timeout=self.max_timeout,
            max_concurrent=self.max_concurrent,
            cancel_events=self._cancel_events,
            deadline=self.deadline,
            _shared=self._shared,
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
        # Wake requests waiting for a reservation so they see the cancel at once.
        with self._shared.cond:
            self._shared.cond.notify_all()

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

    def reserved(self) -> tuple[int, float]:
        """(tokens, USD) reserved right now by requests in flight."""
        with self._shared.cond:
            return self._shared.tokens, self._shared.cost

    # -- admission ----------------------------------------------------------------------
    def admit(
        self,
        input_tokens: int,
        output_cap: int | None,
        prices: Mapping[str, float] | None = None,
        *,
        gated: bool = False,
        alive: threading.Event | None = None,
    ) -> Admission:
        """Admit one model request (see the module docstring); blocks while it must wait.

        ``input_tokens`` is the request's input estimate, ``output_cap`` the output cap
        it would send (None: none of its own), ``prices`` the client's per-million USD
        prices (None: unknown). ``gated`` requests take a slot of the run's gate first.
        ``alive`` is the scope of the cell that made a sub-call: once it is cleared a
        waiting request gives up with ``CellAbandoned``. Raises the matching
        ``LimitExceeded`` (or ``RunCancelled``) when the request cannot be admitted.
        """
        self.check()
        shared = self._shared
        slot = gated and shared.gate is not None
        if slot:
            self._take_slot(alive)
        try:
            return self._reserve(input_tokens, output_cap, prices, slot, alive)
        except BaseException:
            if slot and shared.gate is not None:
                shared.gate.release()
            raise

    def _stop_waiting(self, alive: threading.Event | None) -> None:
        """Raise if a waiting request must give up (a limit, a cancel, its cell ended)."""
        self.check()
        if alive is not None and not alive.is_set():
            raise CellAbandoned("the cell that made this call already ended")

    def _take_slot(self, alive: threading.Event | None) -> None:
        gate = self._shared.gate
        assert gate is not None
        while not gate.acquire(timeout=POLL_S):
            self._stop_waiting(alive)
        try:
            self._stop_waiting(alive)
        except BaseException:
            gate.release()
            raise

    def _reserve(
        self,
        input_tokens: int,
        output_cap: int | None,
        prices: Mapping[str, float] | None,
        slot: bool,
        alive: threading.Event | None,
    ) -> Admission:
        shared = self._shared
        unit = per_token_prices(prices) if self.max_budget is not None else None
        if self.max_tokens is None and unit is None:
            # Nothing to reserve against: the request goes as it would without limits.
            return Admission(shared, slot=slot, output_cap=output_cap)
        want = output_cap if output_cap is not None else DEFAULT_OUTPUT_RESERVE
        input_tokens = max(0, input_tokens)
        with shared.cond:
            while True:
                self._stop_waiting(alive)
                cap, binding = self._room(input_tokens, want, unit)
                if cap >= want or (shared.open == 0 and cap >= 1):
                    cost = 0.0 if unit is None else input_tokens * unit[0] + cap * unit[1]
                    tokens = input_tokens + cap
                    shared.tokens += tokens
                    shared.cost += cost
                    shared.open += 1
                    return Admission(
                        shared, slot=slot, output_cap=cap, tokens=tokens, cost=cost, reserved=True
                    )
                if shared.open == 0:
                    raise binding
                # Requests in flight hold reservations; they usually end below them.
                shared.cond.wait(POLL_S)

    def _room(
        self, input_tokens: int, want: int, unit: tuple[float, float] | None
    ) -> tuple[int, LimitExceeded]:
        """The largest output cap (≤ ``want``) that fits now, and the limit that binds."""
        shared = self._shared
        inp, out, spent = self.usage.totals()
        cap = want
        binding: LimitExceeded = TokenLimitExceeded("no limit binds")
        if self.max_tokens is not None:
            left = self.max_tokens - inp - out - shared.tokens
            if left - input_tokens < cap:
                cap = left - input_tokens
                binding = TokenLimitExceeded(
                    f"max_tokens of {self.max_tokens:,} reached: this request needs about "
                    f"{input_tokens:,} input tokens plus output, and {max(left, 0):,} are "
                    f"left ({inp + out:,} used)"
                )
        if self.max_budget is not None and unit is not None:
            per_in, per_out = unit
            left_usd = self.max_budget - spent - shared.cost - input_tokens * per_in
            if per_out > 0:
                fits = math.floor(left_usd / per_out) if left_usd > 0 else -1
            else:
                fits = want if left_usd >= 0 else -1
            if fits < cap:
                cap = fits
                binding = BudgetExceeded(
                    f"max_budget of ${self.max_budget:g} reached: this request would cost "
                    f"about ${input_tokens * per_in:.4f} for its input alone and "
                    f"${max(self.max_budget - spent - shared.cost, 0.0):.4f} is left "
                    f"(${spent:.4f} spent)"
                )
        return cap, binding

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

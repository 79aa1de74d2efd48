"""Run an engine call in a worker thread while the calling thread drives the display.

Worker threads (the engine's candidates and sub-calls) only ``queue.put`` events; the
calling thread — the magic's, i.e. the cell's own thread — drains the queue, folds the
events into the ``LiveState`` and refreshes the view in batches. It blocks until the
run ends, so the final display state belongs to the cell and is saved with the
notebook. A KeyboardInterrupt cancels the engine, waits for its threads, and still
returns what was gathered.
"""

from __future__ import annotations

import contextlib
import queue
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from lmrepl.errors import LMReplError
from lmrepl.events import Event
from lmrepl.live import LiveState
from lmrepl.types import RLMChatCompletion

_DONE = object()


class Engine(Protocol):
    """What the driver needs from ``RLM``/``SRLM``."""

    def subscribe(self, fn: Callable[[Event], None]) -> Callable[[], None]:
        """Add an event consumer; returns its remover."""
        ...

    def cancel(self) -> None:
        """Stop a running completion (called from another thread)."""
        ...


class View(Protocol):
    """A display of a ``LiveState`` (widget panel, rich view, or nothing)."""

    def start(self, state: LiveState) -> None:
        """Show the initial state."""
        ...

    def update(self, state: LiveState, now: float | None = None) -> None:
        """Show the current state."""
        ...

    def finish(self, state: LiveState) -> None:
        """Show the final state."""
        ...


class NullView:
    """No display at all."""

    def start(self, state: LiveState) -> None:
        """Nothing to show."""

    def update(self, state: LiveState, now: float | None = None) -> None:
        """Forget what changed; nothing to draw."""
        state.take_dirty()

    def finish(self, state: LiveState) -> None:
        """Nothing to show."""


@dataclass
class Outcome:
    """How the engine call ended."""

    completion: RLMChatCompletion | None = None
    error: BaseException | None = None
    cancelled: bool = False
    worker_alive: bool = False


def run_with_view(
    engine: Engine,
    call: Callable[[], RLMChatCompletion],
    state: LiveState,
    view: View,
    *,
    interval: float = 0.08,
    cancel_grace: float = 30.0,
) -> Outcome:
    """Run ``call()`` in a worker thread; apply ``engine``'s events to ``state`` and ``view``."""
    events: queue.Queue[Any] = queue.Queue()
    outcome = Outcome()
    unsubscribe = engine.subscribe(events.put)

    def work() -> None:
        try:
            outcome.completion = call()
        except BaseException as exc:  # handed to the magic's thread, which reports it
            outcome.error = exc
        finally:
            events.put(_DONE)

    worker = threading.Thread(target=work, name="lmrepl-magic-run", daemon=True)
    try:
        view.start(state)
        try:
            # Started inside the try: an interrupt that lands as the run begins (its first
            # model call can be under way before this thread runs again) cancels it too.
            worker.start()
            _pump(events, state, view, interval, deadline=None)
        except KeyboardInterrupt:
            outcome.cancelled = True
            engine.cancel()
            # A second interrupt stops the waiting; what was gathered is still reported.
            with contextlib.suppress(KeyboardInterrupt):
                if worker.ident is not None:  # else no _DONE will ever come
                    _pump(events, state, view, interval, deadline=time.monotonic() + cancel_grace)
            if worker.ident is not None:
                worker.join(0.5)
            outcome.worker_alive = worker.is_alive()
            if outcome.worker_alive:
                print(
                    "lmrepl: the run is still shutting down in the background",
                    file=sys.stderr,
                )
        _drain(events, state)
    except BaseException:
        # The display itself broke: stop the run rather than leave it printing into
        # later cells, then let the error through.
        engine.cancel()
        if worker.is_alive():
            worker.join(cancel_grace)
        raise
    finally:
        unsubscribe()
    return outcome


def _drain(events: queue.Queue[Any], state: LiveState) -> bool:
    """Apply every queued event; True when the end marker was among them."""
    done = False
    while True:
        try:
            item = events.get_nowait()
        except queue.Empty:
            return done
        if item is _DONE:
            done = True
        else:
            state.apply(item)


def _pump(
    events: queue.Queue[Any],
    state: LiveState,
    view: View,
    interval: float,
    deadline: float | None,
) -> None:
    """Apply events until the end marker (or ``deadline``), redrawing every ``interval``."""
    last_draw = 0.0
    while True:
        if deadline is not None and time.monotonic() > deadline:
            return
        try:
            item = events.get(timeout=interval)
        except queue.Empty:
            item = None
        if item is _DONE:
            return
        if item is not None:
            state.apply(item)
            # Take everything that is already waiting before drawing once.
            if _drain(events, state):
                events.put(_DONE)
        now = time.monotonic()
        if now - last_draw >= interval:
            view.update(state)
            last_draw = now


def message_of(exc: BaseException) -> str:
    """``exc`` in one line for a user.

    lmrepl's own errors are written to be read as they are, so their class name is left
    out; anything else keeps it ("KeyError: 'x'" says more than "'x'").
    """
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else ""
    if isinstance(exc, LMReplError) and text:
        return text
    return f"{type(exc).__name__}: {text}".rstrip(": ")


def settle(state: LiveState, outcome: Outcome) -> None:
    """Give ``state`` its final record and status from how the engine call ended.

    The engine's own record wins over what the events built; the magic's ``config``
    and clock are kept.
    """
    from lmrepl.errors import AllCandidatesFailed, RunCancelled, RunStopped

    comp, err = outcome.completion, outcome.error
    started_at = state.record.started_at
    record = comp.record if comp is not None else getattr(err, "record", None)
    if record is not None:
        state.replace(record)
        state.record.started_at = started_at or state.record.started_at
    if comp is not None:
        if outcome.cancelled:
            state.finish("cancelled", error="cancelled by the user")
        elif record is None:  # an engine without records (a stand-in in tests)
            state.finish("done", answer=comp.response)
    elif outcome.cancelled or isinstance(err, KeyboardInterrupt | RunCancelled):
        state.finish("cancelled", error="cancelled by the user")
    elif isinstance(err, AllCandidatesFailed):
        state.finish("failed", error=message_of(err))
    elif isinstance(err, RunStopped):
        state.finish("stopped", answer=err.partial_answer, error=message_of(err))
    elif err is not None:
        state.finish("failed", error=message_of(err))
    else:
        state.finish("failed", error="the engine returned nothing")

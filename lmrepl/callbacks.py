"""lm-repl's four callbacks, as a consumer of the engine's events."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lmrepl.events import (
    Event,
    IterationFinished,
    IterationStarted,
    SubcallFinished,
    SubcallStarted,
)

Callback = Callable[..., None]


class Callbacks:
    """Calls ``on_iteration_start(depth, iteration)``,
    ``on_iteration_complete(depth, iteration, seconds)``,
    ``on_subcall_start(depth, model, prompt_preview)`` and
    ``on_subcall_complete(depth, model, seconds, error)`` — the lm-repl signatures."""

    def __init__(self, **callbacks: Callback | None) -> None:
        self.callbacks = callbacks

    def __bool__(self) -> bool:
        return any(self.callbacks.values())

    def __call__(self, event: Event) -> None:
        """Dispatch one event to the callback that wants it, if any."""
        cb: dict[str, Any] = self.callbacks
        if isinstance(event, IterationStarted) and cb.get("on_iteration_start"):
            cb["on_iteration_start"](event.depth, event.iteration)
        elif isinstance(event, IterationFinished) and cb.get("on_iteration_complete"):
            step = event.step
            cb["on_iteration_complete"](event.depth, step.iteration, step.duration)
        elif isinstance(event, SubcallStarted) and cb.get("on_subcall_start"):
            cb["on_subcall_start"](event.depth, event.model, event.prompt_preview)
        elif isinstance(event, SubcallFinished) and cb.get("on_subcall_complete"):
            sub = event.subcall
            cb["on_subcall_complete"](event.depth, sub.model, sub.duration, sub.error)

"""What every part of a trajectory uses to talk to the outside: events and model calls.

``Publisher`` stamps a trajectory's events with its ``run_id``, ``depth`` and
``candidate``. ``ModelCaller`` makes one model request under the run's limits and
records its usage. The loop, the step runner, the sub-call bridge, compaction and
direct answers all receive these two callables instead of the trajectory itself.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Protocol

from lmrepl.clients.base import CallOptions, Completion, Message, ModelClient
from lmrepl.errors import BackendError
from lmrepl.events import Event, EventBus, ModelCallFinished, ModelCallStarted
from lmrepl.limits import LimitGuard
from lmrepl.usage import UsageTracker


class Publish(Protocol):
    """Publish an event of one trajectory: ``publish(EventClass, **fields)``."""

    def __call__(self, cls: type[Event], /, **fields: Any) -> None:
        """Build the event with the trajectory's identity and deliver it."""
        ...


class CallModel(Protocol):
    """One model request: ``call_model(messages, purpose=..., client=None)``."""

    def __call__(
        self, messages: list[Message], *, purpose: str, client: ModelClient | None = None
    ) -> Completion:
        """Send ``messages`` and return the completion (raises on failure or a limit)."""
        ...


class Publisher:
    """Publishes the events of one trajectory on the engine's bus."""

    def __init__(self, bus: EventBus, run_id: str, depth: int, candidate: int | None) -> None:
        self.bus = bus
        self.run_id = run_id
        self.depth = depth
        self.candidate = candidate

    def __call__(self, cls: type[Event], /, **fields: Any) -> None:
        """Build ``cls`` with this trajectory's identity and publish it."""
        self.bus.publish(
            cls(run_id=self.run_id, depth=self.depth, candidate=self.candidate, **fields)
        )


class ModelCaller:
    """Model requests of one trajectory: limits checked, events published, usage counted."""

    def __init__(
        self,
        client: ModelClient,
        *,
        guard: LimitGuard,
        usage: UsageTracker,
        publish: Publish,
        temperature: float | None = None,
        max_reply_tokens: int | None = None,
    ) -> None:
        self.client = client
        self.guard = guard
        self.usage = usage
        self.publish = publish
        self.temperature = temperature
        self.max_reply_tokens = max_reply_tokens

    def __call__(
        self, messages: list[Message], *, purpose: str, client: ModelClient | None = None
    ) -> Completion:
        """Send ``messages`` to ``client`` (default: the trajectory's) and return the reply."""
        client = client or self.client
        self.guard.check()
        call_id = uuid.uuid4().hex[:12]
        self.publish(
            ModelCallStarted,
            call_id=call_id,
            model=client.model_name,
            purpose=purpose,
            n_messages=len(messages),
        )
        options = CallOptions(
            temperature=self.temperature,
            max_tokens=self.max_reply_tokens,
            timeout=self.guard.clamp(None),
        )
        started = time.perf_counter()
        try:
            completion = self.guard.wait_for(lambda: client.complete(messages, options))
        except BaseException as exc:
            self.publish(
                ModelCallFinished,
                call_id=call_id,
                model=client.model_name,
                purpose=purpose,
                duration=time.perf_counter() - started,
                error=f"{type(exc).__name__}: {exc}",
            )
            # A request cut short by the run's own deadline is that limit, not a backend fault.
            limit = self.guard.exceeded() if isinstance(exc, BackendError) else None
            if limit is not None:
                raise limit from exc
            raise
        self.usage.record(completion)
        self.publish(
            ModelCallFinished,
            call_id=call_id,
            model=client.model_name,
            purpose=purpose,
            input_tokens=completion.input_tokens,
            output_tokens=completion.output_tokens,
            cost=completion.cost or 0.0,
            duration=time.perf_counter() - started,
        )
        return completion

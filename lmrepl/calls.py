"""What every part of a trajectory uses to talk to the outside: events and model calls.

``Publisher`` stamps a trajectory's events with its ``run_id``, ``depth`` and
``candidate``. ``ModelCaller`` makes one model request under the run's limits: admitted
by the guard first (the sub-call gate, token and cost reservations, an output cap that
fits; see ``lmrepl.limits``), its usage recorded in place of the reservation after.
The loop, the step runner, the sub-call bridge, compaction and direct answers all
receive these two callables instead of the trajectory itself.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Mapping
from typing import Any, Protocol

from lmrepl.admission import DEFAULT_OUTPUT_RESERVE, estimate_request_tokens
from lmrepl.clients.base import CallOptions, Completion, Message, ModelClient
from lmrepl.errors import BackendError, RunCancelled
from lmrepl.events import Event, EventBus, ModelCallFinished, ModelCallStarted
from lmrepl.limits import LimitGuard
from lmrepl.usage import UsageTracker
from lmrepl.window import fit_request, is_overflow, overflow_shrink, request_tokens

#: Tokens kept free beyond the reply's cap (template differences between servers).
WINDOW_MARGIN_TOKENS = 32


class Publish(Protocol):
    """Publish an event of one trajectory: ``publish(EventClass, **fields)``."""

    def __call__(self, cls: type[Event], /, **fields: Any) -> None:
        """Build the event with the trajectory's identity and deliver it."""
        ...


class CallModel(Protocol):
    """One model request: ``call_model(messages, purpose=..., client=None, alive=None)``."""

    def __call__(
        self,
        messages: list[Message],
        *,
        purpose: str,
        client: ModelClient | None = None,
        alive: threading.Event | None = None,
    ) -> Completion:
        """Send ``messages`` and return the completion (raises on failure or a limit).

        ``alive``: the scope of the cell that made a sub-call; a request still waiting
        for admission when it is cleared gives up (``CellAbandoned``).
        """
        ...


def client_output_cap(client: ModelClient) -> int | None:
    """The output cap ``client`` sends when a call names none, if it has one.

    The ``anthropic`` backend always sends ``max_tokens``, the ``local`` one
    ``max_tokens_default``, and any OpenAI-compatible client may carry one in
    ``default_extra_body``; a plain ``openai`` client sends none (None).
    """
    for name in ("max_tokens_default", "max_tokens"):
        value = getattr(client, name, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    extra = getattr(client, "default_extra_body", None)
    if isinstance(extra, Mapping):
        value = extra.get("max_tokens")
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def client_prices(client: ModelClient) -> Mapping[str, float] | None:
    """The client's configured ``prices`` (USD per million tokens), or None if unknown."""
    prices = getattr(client, "prices", None)
    return prices if isinstance(prices, Mapping) and prices else None


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
    """Model requests of one trajectory: admitted by the guard, events published, usage
    counted.

    ``gated``: every request of this trajectory is a sub-call (a child RLM started by
    ``rlm_query``) and passes the run's gate; otherwise only ``purpose="subcall"``
    requests (``llm_query`` and friends) do, while the root loop's own requests are
    not sub-calls and pass freely (they still reserve tokens and cost).
    """

    def __init__(
        self,
        client: ModelClient,
        *,
        guard: LimitGuard,
        usage: UsageTracker,
        publish: Publish,
        temperature: float | None = None,
        max_reply_tokens: int | None = None,
        gated: bool = False,
    ) -> None:
        self.client = client
        self.guard = guard
        self.usage = usage
        self.publish = publish
        self.temperature = temperature
        self.max_reply_tokens = max_reply_tokens
        self.gated = gated

    def reply_reserve(self, client: ModelClient | None = None) -> int | None:
        """Tokens kept free in the window for the reply (None: the window is unknown)."""
        client = client or self.client
        window = client.context_window
        if window is None:
            return None
        cap = self.max_reply_tokens or client_output_cap(client)
        # Without a cap of our own the reply may be long; never give it more than half.
        return min(cap or DEFAULT_OUTPUT_RESERVE, window // 2)

    def prompt_budget(self, client: ModelClient | None = None) -> int | None:
        """Tokens a request's messages may take on ``client`` (None: no known window)."""
        client = client or self.client
        reserve = self.reply_reserve(client)
        if reserve is None or client.context_window is None:
            return None
        return client.context_window - reserve - WINDOW_MARGIN_TOKENS

    def fit(
        self, messages: list[Message], client: ModelClient | None = None, *, shrink: float = 1.0
    ) -> list[Message]:
        """``messages`` cut (middles of the largest first) to fit ``client``'s window."""
        client = client or self.client
        budget = self.prompt_budget(client)
        if budget is None:
            return messages
        return fit_request(messages, int(budget * shrink), client.count_tokens)

    def __call__(
        self,
        messages: list[Message],
        *,
        purpose: str,
        client: ModelClient | None = None,
        alive: threading.Event | None = None,
    ) -> Completion:
        """Send ``messages`` to ``client`` (default: the trajectory's) and return the reply.

        The request is first fitted to the model's window; a server that still finds it
        too long (its tokenizer counted more) gets it once more, cut by the difference.
        """
        client = client or self.client
        fitted = self.fit(messages, client)
        try:
            return self._send(fitted, purpose, client, alive)
        except BackendError as exc:
            if not is_overflow(exc) or client.context_window is None:
                raise
            shrink = overflow_shrink(exc, request_tokens(fitted, client.count_tokens))
            return self._send(self.fit(messages, client, shrink=shrink), purpose, client, alive)

    def _send(
        self,
        messages: list[Message],
        purpose: str,
        client: ModelClient,
        alive: threading.Event | None,
    ) -> Completion:
        cap = self.max_reply_tokens
        admission = self.guard.admit(
            estimate_request_tokens(messages),
            cap if cap is not None else client_output_cap(client),
            client_prices(client),
            gated=self.gated or purpose == "subcall",
            alive=alive,
        )
        call_id = uuid.uuid4().hex[:12]
        options = CallOptions(
            temperature=self.temperature,
            max_tokens=admission.output_cap,
            timeout=self.guard.clamp(None),
        )

        def request() -> Completion:
            # Runs on the request's own thread, which ends the admission: a request
            # abandoned on a cancel or timeout keeps its slot and reservation while
            # it still runs, and its usage is recorded when it ends after all.
            if not admission.begin():
                raise RunCancelled("the request was abandoned before it started")
            try:
                done = client.complete(messages, options)
            except BaseException:
                admission.release()
                raise
            admission.settle(done, self.usage)
            return done

        started = time.perf_counter()
        try:
            self.publish(
                ModelCallStarted,
                call_id=call_id,
                model=client.model_name,
                purpose=purpose,
                n_messages=len(messages),
            )
            completion = self.guard.wait_for(request)
        except BaseException as exc:
            # Ends the admission only if the request never began (else its thread does).
            admission.drop_unstarted()
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

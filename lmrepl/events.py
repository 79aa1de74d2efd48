"""Typed events published by the engine.

The engine is the only producer. The logger, the terminal progress display, the
user callbacks and the notebook panel are consumers that subscribe to an
``EventBus``. Every event names its ``run_id`` (one per trajectory), the ``depth``
of that trajectory (0 = root, children count up) and, inside an SRLM search, the
``candidate`` index it belongs to.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from lmrepl.records import CandidateRecord, CellRecord, SearchRecord, StepRecord, SubcallRecord


class Event(BaseModel):
    """Fields common to every event."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: str
    run_id: str
    depth: int = 0
    candidate: int | None = None
    time: float = Field(default_factory=time.time)


class RunStarted(Event):
    """A trajectory began (root, child, or SRLM candidate)."""

    kind: Literal["run_started"] = "run_started"
    question: str
    context_info: str
    backend: str
    model: str
    environment: str
    sandbox: str | None = None
    parent_run_id: str | None = None


class RunFinished(Event):
    """A trajectory ended; ``status`` is done, failed, cancelled or stopped (a limit)."""

    kind: Literal["run_finished"] = "run_finished"
    status: Literal["done", "failed", "cancelled", "stopped"]
    answer: str | None = None
    error: str | None = None
    execution_time: float = 0.0
    iterations: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float = 0.0
    #: Whether the answer is grounded (lmrepl.grounding); None without an answer.
    grounded: bool | None = None
    #: Why it ended (``lmrepl.records.StopReason``): max_iterations and stuck mark a
    #: forced answer. None in logs written before lmrepl recorded it.
    stop_reason: str | None = None


class IterationStarted(Event):
    """One turn of the loop began (model reply, then its code)."""

    kind: Literal["iteration_started"] = "iteration_started"
    iteration: int


class IterationFinished(Event):
    """One turn ended: ``step`` is its record (reply, cells, confidence, answer)."""

    kind: Literal["iteration_finished"] = "iteration_finished"
    step: StepRecord


class ModelCallStarted(Event):
    """A request to a model client is about to be sent."""

    kind: Literal["model_call_started"] = "model_call_started"
    call_id: str
    model: str
    purpose: Literal["root", "subcall", "final", "direct", "compaction"]
    n_messages: int = 0


class ModelCallFinished(Event):
    """A model request returned (or failed, with ``error``)."""

    kind: Literal["model_call_finished"] = "model_call_finished"
    call_id: str
    model: str
    purpose: Literal["root", "subcall", "final", "direct", "compaction"]
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float = 0.0
    duration: float = 0.0
    error: str | None = None


class CellStarted(Event):
    """A code block is about to run in the REPL."""

    kind: Literal["cell_started"] = "cell_started"
    iteration: int
    index: int
    code: str


class CellFinished(Event):
    """A code block finished; ``cell.status`` tells ok, error, timeout, restarted or died."""

    kind: Literal["cell_finished"] = "cell_finished"
    iteration: int
    index: int
    cell: CellRecord


class SubcallStarted(Event):
    """``llm_query``/``rlm_query`` (or one slot of a batch) began."""

    kind: Literal["subcall_started"] = "subcall_started"
    subcall_id: str
    function: Literal["llm_query", "llm_query_batched", "rlm_query", "rlm_query_batched"]
    model: str
    prompt_preview: str
    batch_index: int | None = None


class SubcallFinished(Event):
    """A sub-call ended; ``subcall.error`` is set when its slot holds an error string."""

    kind: Literal["subcall_finished"] = "subcall_finished"
    subcall_id: str
    subcall: SubcallRecord


class CandidateQueued(Event):
    """An SRLM candidate is waiting for a parallel slot."""

    kind: Literal["candidate_queued"] = "candidate_queued"


class CandidateFinished(Event):
    """An SRLM candidate ended: its whole record, with the scoring inputs (VC, Len)."""

    kind: Literal["candidate_finished"] = "candidate_finished"
    record: CandidateRecord


class SearchStarted(Event):
    """An SRLM search began with ``n_candidates`` (``mode`` direct or rlm)."""

    kind: Literal["search_started"] = "search_started"
    mode: Literal["direct", "rlm"]
    n_candidates: int
    candidate_parallel: int
    question: str


class SearchFinished(Event):
    """An SRLM search ended: ``record`` is the result's whole record (SPEC §6)."""

    kind: Literal["search_finished"] = "search_finished"
    record: SearchRecord


AnyEvent = Annotated[
    RunStarted
    | RunFinished
    | IterationStarted
    | IterationFinished
    | ModelCallStarted
    | ModelCallFinished
    | CellStarted
    | CellFinished
    | SubcallStarted
    | SubcallFinished
    | CandidateQueued
    | CandidateFinished
    | SearchStarted
    | SearchFinished,
    Field(discriminator="kind"),
]

event_adapter: TypeAdapter[AnyEvent] = TypeAdapter(AnyEvent)


def parse_event(data: dict[str, Any] | str) -> Event:
    """Rebuild a typed event from its JSON form (as written by ``RLMLogger``)."""
    if isinstance(data, str):
        return event_adapter.validate_json(data)
    return event_adapter.validate_python(data)


Subscriber = Callable[[Event], None]


class EventBus:
    """Delivers events to subscribers, from any thread, in publish order per thread.

    A subscriber that raises is reported once on stderr and kept: a broken display
    must never stop a run.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribers: list[Subscriber] = []

    def subscribe(self, fn: Subscriber) -> Callable[[], None]:
        """Add ``fn``; returns a function that removes it again."""
        with self._lock:
            self._subscribers.append(fn)

        def unsubscribe() -> None:
            with self._lock:
                if fn in self._subscribers:
                    self._subscribers.remove(fn)

        return unsubscribe

    def publish(self, event: Event) -> None:
        """Deliver ``event`` to every subscriber."""
        with self._lock:
            subs = list(self._subscribers)
        for fn in subs:
            try:
                fn(event)
            except Exception as exc:  # a consumer's bug must not end the run
                import sys

                print(f"lmrepl: event subscriber {fn!r} failed: {exc!r}", file=sys.stderr)

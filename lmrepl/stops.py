"""How a run's end is recorded: the search-level status and ``stop_reason``, and the
``RunInterrupted`` a Ctrl-C becomes.

A trajectory sets its own ``stop_reason`` (``lmrepl.runner``); this module lifts it to
the search record, the one the result's metadata, the panel and the views read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lmrepl.errors import RunInterrupted
from lmrepl.records import Cluster, SearchRecord, StopReason

if TYPE_CHECKING:
    from lmrepl.types import RLMChatCompletion

__all__ = ["close_rlm_record", "close_search_record", "interrupted"]


def close_rlm_record(record: SearchRecord) -> None:
    """Fill a single trajectory's search record from candidate 0, its only vote."""
    run = record.candidates[0]
    record.answer, record.error = run.answer, run.error
    record.winner = 0 if run.answer else None
    record.survivors = [0] if run.answer else []
    record.clusters = [Cluster(answer=run.answer, members=[0], votes=1)] if run.answer else []
    record.selection_reason = "only" if run.answer else "none"
    record.stop_reason = run.stop_reason
    if run.status in ("cancelled", "stopped"):
        record.status = run.status
    else:
        record.status = "done" if run.answer else "failed"
        if not run.answer:
            record.error = run.error or "the trajectory ended without an answer"
            record.stop_reason = run.stop_reason or "failed"


def close_search_record(record: SearchRecord, *, cancelled: bool) -> None:
    """The search's ``stop_reason``: its winner's, else why no candidate answered.

    ``cancelled``: the whole search was cancelled (``cancel()`` or Ctrl-C).
    """
    reason: StopReason
    if record.winner is not None and not cancelled:
        reason = record.candidates[record.winner].stop_reason or "answered"
    elif cancelled:
        reason = "cancelled"
    elif record.candidates and all(c.stop_reason == "limit" for c in record.candidates):
        reason = "limit"
    else:
        reason = "failed"
    record.stop_reason = reason
    if cancelled:
        record.status = "cancelled"
        record.error = "the search was cancelled"


def interrupted(
    cause: BaseException, partial: RLMChatCompletion, answer: str | None = None
) -> RunInterrupted:
    """The ``RunInterrupted`` for a Ctrl-C, carrying what the run had (``partial``).

    ``answer``: the partial answer, when it is not the partial result's response.
    """
    exc = RunInterrupted(
        "interrupted (Ctrl-C); the partial answer, usage and metadata are on this exception",
        partial_answer=answer or partial.response or None,
        usage=partial.usage_summary,
        metadata=partial.metadata,
        record=partial.record,
    )
    exc.__cause__ = cause
    return exc

"""Thread-safe usage accounting shared by a run, its children and SRLM candidates."""

from __future__ import annotations

import threading

from lmrepl.clients.base import Completion
from lmrepl.types import ModelUsageSummary, UsageSummary


class UsageTracker:
    """Counts calls, tokens and cost per model; a record also reaches every ancestor.

    A root run owns one tracker; SRLM candidates and child RLMs get child trackers,
    so each level can read its own share while limits read the root's totals.
    """

    def __init__(self, parent: UsageTracker | None = None) -> None:
        self._lock = threading.Lock()
        self._models: dict[str, ModelUsageSummary] = {}
        self.parent = parent

    def child(self) -> UsageTracker:
        """A tracker whose records also count here."""
        return UsageTracker(parent=self)

    def record(self, completion: Completion) -> None:
        """Add one model call."""
        node: UsageTracker | None = self
        while node is not None:
            node._add(completion)
            node = node.parent

    def _add(self, c: Completion) -> None:
        with self._lock:
            m = self._models.setdefault(c.model, ModelUsageSummary())
            m.total_calls += 1
            m.total_input_tokens += c.input_tokens
            m.total_output_tokens += c.output_tokens
            m.total_cost += c.cost or 0.0
            if not c.usage_reported:
                m.estimated_calls += 1

    def summary(self) -> UsageSummary:
        """A snapshot."""
        with self._lock:
            return UsageSummary(
                model_usage_summaries={k: v.model_copy() for k, v in self._models.items()}
            )

    def totals(self) -> tuple[int, int, float]:
        """(input tokens, output tokens, cost) over all models."""
        with self._lock:
            return (
                sum(m.total_input_tokens for m in self._models.values()),
                sum(m.total_output_tokens for m in self._models.values()),
                sum(m.total_cost for m in self._models.values()),
            )

    @property
    def output_tokens(self) -> int:
        """Output tokens over all models (Len of SPEC §6 for a candidate's tracker)."""
        return self.totals()[1]

"""What an eval produces: one row per (task, method), the settings, and the summary."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field

__all__ = ["Accuracy", "EvalReport", "EvalRow", "EvalSettings", "EvalSummary", "summarize"]


class EvalSettings(BaseModel):
    """How the eval ran: methods, model, REPL, limits, the suite, and the command line."""

    model_config = ConfigDict(extra="forbid")

    methods: list[str] = Field(description="Method labels, e.g. direct, rlm, srlm(k=3).")
    backend: str
    backend_kwargs: dict[str, Any] = Field(
        default_factory=dict, description="With credentials masked."
    )
    environment: str
    environment_kwargs: dict[str, Any] = Field(default_factory=dict)
    max_iterations: int
    max_timeout: float | None
    families: list[str] = Field(default_factory=list)
    lengths: list[int] = Field(default_factory=list)
    seeds: list[int] = Field(default_factory=list)
    n_tasks: int = 0
    command: str | None = Field(default=None, description="The command line, when run from one.")


class EvalRow(BaseModel):
    """One method's attempt at one task."""

    model_config = ConfigDict(extra="forbid")

    task_id: str
    family: str
    length: int = Field(description="The requested context length in characters.")
    chars: int = Field(description="The context's actual length in characters.")
    seed: int
    method: str
    question: str
    truth: str | list[str]
    answer: str | None = None
    correct: bool = False
    seconds: float = 0.0
    status: Literal["done", "failed"] = "done"
    error: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    grounded: bool | None = Field(
        default=None, description="Whether the winner's answer was grounded, when recorded."
    )


class Accuracy(BaseModel):
    """How many rows were right out of how many (``accuracy`` is in the JSON too)."""

    model_config = ConfigDict(extra="ignore")

    n: int = 0
    correct: int = 0

    @computed_field  # type: ignore[prop-decorator]
    @property
    def accuracy(self) -> float:
        """The fraction right (0.0 when there are no rows)."""
        return self.correct / self.n if self.n else 0.0

    @property
    def percent(self) -> float:
        """The accuracy in percent."""
        return 100.0 * self.accuracy


class EvalSummary(BaseModel):
    """Accuracy per method, per method × length, per method × family; time per method."""

    model_config = ConfigDict(extra="forbid")

    accuracy: dict[str, Accuracy] = Field(default_factory=dict)
    by_length: dict[str, dict[int, Accuracy]] = Field(default_factory=dict)
    by_family: dict[str, dict[str, Accuracy]] = Field(default_factory=dict)
    mean_seconds: dict[str, float] = Field(default_factory=dict)
    failed: dict[str, int] = Field(
        default_factory=dict, description="Rows that raised or gave no answer."
    )


class EvalReport(BaseModel):
    """The whole eval: settings, when, every row, and the summary."""

    model_config = ConfigDict(extra="forbid")

    settings: EvalSettings
    started_at: str
    finished_at: str | None = None
    seconds: float = 0.0
    interrupted: bool = Field(default=False, description="Stopped by Ctrl-C: rows are partial.")
    rows: list[EvalRow] = Field(default_factory=list)
    summary: EvalSummary = Field(default_factory=EvalSummary)

    def accuracy(self, method: str) -> float:
        """The fraction of ``method``'s rows that were right."""
        return self.summary.accuracy[method].accuracy


def _add(table: dict[Any, Accuracy], key: Any, correct: bool) -> None:
    acc = table.setdefault(key, Accuracy())
    acc.n += 1
    acc.correct += int(correct)


def summarize(rows: Iterable[EvalRow], methods: Iterable[str] = ()) -> EvalSummary:
    """The summary of ``rows``; ``methods`` fixes the order (others follow as they come)."""
    summary = EvalSummary()
    order = list(methods)
    rows = list(rows)
    for label in [*order, *(r.method for r in rows)]:
        if label not in summary.accuracy:
            summary.accuracy[label] = Accuracy()
            summary.by_length[label] = {}
            summary.by_family[label] = {}
            summary.failed[label] = 0
    seconds: dict[str, list[float]] = {label: [] for label in summary.accuracy}
    for row in sorted(rows, key=lambda r: r.length):
        _add(summary.accuracy, row.method, row.correct)
        _add(summary.by_length[row.method], row.length, row.correct)
        _add(summary.by_family[row.method], row.family, row.correct)
        summary.failed[row.method] += int(row.status == "failed")
        seconds[row.method].append(row.seconds)
    summary.mean_seconds = {m: sum(s) / len(s) if s else 0.0 for m, s in seconds.items()}
    return summary

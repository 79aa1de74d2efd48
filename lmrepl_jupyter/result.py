"""``SRLMResult``: what ``%%srlm`` / ``%%rlm`` return, display and save.

Its MIME bundle carries the whole search record as
``application/vnd.lmrepl.trajectory+json`` plus a static ``text/html`` panel and a
``text/plain`` summary, so a saved notebook shows the result without a kernel and a
terminal shows text.
"""

from __future__ import annotations

import json
from collections.abc import Container
from pathlib import Path
from typing import Any

from lmrepl.html import RenderOptions, panel_html
from lmrepl.live import LiveState
from lmrepl.records import MIME_TYPE, SearchRecord, parse_record
from lmrepl.types import RLMChatCompletion, UsageSummary

_LOG_NOT_RECORD = (
    "{path} is an lmrepl event log (JSONL, one event per line, written by RLMLogger), "
    "not a trajectory record: read it with SRLMResult.from_log(path), or its events "
    "with lmrepl.logger.read_log(path)"
)


def _is_event_log(text: str) -> bool:
    """Whether ``text`` starts with a line that is an lmrepl event."""
    first = text.lstrip().split("\n", 1)[0]
    try:
        data = json.loads(first)
    except json.JSONDecodeError:
        return False
    return isinstance(data, dict) and "kind" in data and "run_id" in data


class SRLMResult:
    """The outcome of one ``%%srlm`` or ``%%rlm`` run (also after failure or cancel)."""

    def __init__(
        self,
        record: SearchRecord,
        completion: RLMChatCompletion | None = None,
        panel: Any = None,
    ) -> None:
        self.record = record
        self.completion = completion
        # The live WidgetPanel (or None); kept for inspection, never serialised.
        self.panel = panel
        #: The execution count of the cell whose live panel was replaced by this result:
        #: that cell already shows it, so its Out[] adds no second copy (None: not shown).
        self.shown_in: int | None = None

    # -- the search's outcome ----------------------------------------------------------

    @property
    def answer(self) -> str | None:
        """The selected answer (None when the run produced none)."""
        return self.record.answer

    @property
    def status(self) -> str:
        """``done``, ``failed``, ``cancelled`` or ``stopped`` (a limit ended the run)."""
        return self.record.status

    @property
    def error(self) -> str | None:
        """Why the run failed or stopped, if it did."""
        return self.record.error

    @property
    def candidates(self) -> list[dict[str, Any]]:
        """One dict per candidate: status, answer, cluster, vc, length, score, steps…"""
        return [c.model_dump(mode="json") for c in self.record.candidates]

    @property
    def clusters(self) -> list[dict[str, Any]]:
        """The answer clusters: answer, members, votes."""
        return [c.model_dump(mode="json") for c in self.record.clusters]

    @property
    def winner(self) -> int | None:
        """Index of the winning candidate."""
        return self.record.winner

    @property
    def metadata(self) -> dict[str, Any]:
        """The engine's own metadata (SPEC §6), empty when the run did not complete."""
        return self.completion.metadata if self.completion is not None else {}

    @property
    def usage(self) -> UsageSummary | None:
        """Usage over every candidate and depth (None when the run did not complete)."""
        return self.completion.usage_summary if self.completion is not None else None

    @property
    def execution_time(self) -> float:
        """Wall time of the run in seconds."""
        if self.completion is not None:
            return self.completion.execution_time
        return self.record.execution_time or 0.0

    # -- serialisation -----------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The trajectory record as JSON data (schema in docs/trajectory-schema.md)."""
        return self.record.model_dump(mode="json")

    def to_json(self, indent: int | None = 1) -> str:
        """The trajectory record as JSON text."""
        return self.record.to_json(indent)

    def save(self, path: str | Path) -> Path:
        """Write the record to ``path`` as JSON; returns the path."""
        return self.record.save(path)

    @classmethod
    def load(cls, path: str | Path) -> SRLMResult:
        """Read a record written by ``save`` (or taken from a notebook's output).

        A JSONL event log (``RLMLogger``) is not a record: it raises ``ValueError``
        saying so and naming :meth:`from_log`, which reads one.
        """
        text = Path(path).read_text(encoding="utf-8")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            if _is_event_log(text):
                raise ValueError(_LOG_NOT_RECORD.format(path=path)) from None
            raise ValueError(f"{path}: not a trajectory record (invalid JSON: {exc})") from exc
        if isinstance(data, dict) and "schema_version" not in data and _is_event_log(text):
            raise ValueError(_LOG_NOT_RECORD.format(path=path))
        return cls.from_dict(data)

    @classmethod
    def from_log(cls, path: str | Path, index: int = -1) -> SRLMResult:
        """Rebuild the result of a run from an ``RLMLogger`` JSONL log.

        A log can hold several runs (one logger, many ``completion()`` calls): ``index``
        picks one, in the order they ran, negative from the end; the default ``-1`` is
        the last. A finished search comes back exactly as ``completion()`` recorded it;
        an RLM run or a search cut short is rebuilt from its events. ``read_records``
        (``lmrepl.logger``) returns them all. No completion object is attached, so
        ``metadata`` and ``usage`` are empty; ``record`` holds everything.
        """
        from lmrepl.logger import read_records

        records = read_records(path)
        if not records:
            raise ValueError(f"{path}: the log holds no run")
        try:
            return cls(records[index])
        except IndexError:
            raise IndexError(
                f"{path}: no run {index}; the log holds {len(records)} "
                f"(index 0 to {len(records) - 1}, or -1 for the last)"
            ) from None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SRLMResult:
        """Rebuild a result from its record (no completion object attached)."""
        return cls(parse_record(data))

    # -- display -----------------------------------------------------------------------

    def summary(self) -> str:
        """One line: status, candidates, winner and votes, time, calls, tokens."""
        rec = self.record
        name = "rlm" if rec.kind == "rlm" else "srlm"
        parts = [f"[lmrepl] {name} {rec.status}"]
        if rec.kind == "srlm":
            parts.append(f"mode {rec.mode}" if rec.mode == "direct" else f"K={rec.n_candidates}")
        if rec.winner is not None and rec.kind == "srlm":
            votes = next((c.votes for c in rec.clusters if rec.winner in c.members), None)
            total = sum(c.votes for c in rec.clusters)
            parts.append(f"winner #{rec.winner}" + (f" ({votes}/{total} votes)" if votes else ""))
        elif rec.kind == "rlm" and rec.candidates:
            parts.append(f"{len(rec.candidates[0].steps)} steps")
        parts.append(f"{self.execution_time:.1f} s")
        parts.append(f"{rec.model_calls} model calls")
        parts.append(f"{rec.input_tokens + rec.output_tokens:,} tokens")
        line = " · ".join(parts)
        if rec.error:
            line += f" — {rec.error.splitlines()[0] if rec.error.strip() else rec.error}"
        return line

    def _text(self) -> str:
        answer = self.answer if self.answer is not None else "(no answer)"
        return f"{answer}\n{self.summary()}"

    def _html(self) -> str:
        return panel_html(LiveState.from_record(self.record), RenderOptions())

    def _repr_mimebundle_(
        self, include: Container[str] | None = None, exclude: Container[str] | None = None
    ) -> dict[str, Any]:
        bundle: dict[str, Any] = {
            MIME_TYPE: self.to_dict(),
            "text/html": self._html(),
            "text/plain": self._text(),
        }
        if include:
            bundle = {k: v for k, v in bundle.items() if k in include}
        if exclude:
            bundle = {k: v for k, v in bundle.items() if k not in exclude}
        return bundle

    def _ipython_display_(self) -> None:
        # The magic's own cell already shows the result where the live panel was; any
        # later display (`res`, `display(res)`, `_`) shows the whole bundle again.
        from IPython import get_ipython
        from IPython.display import display

        shell = get_ipython()
        if self.shown_in is not None and getattr(shell, "execution_count", None) == self.shown_in:
            return
        display(self._repr_mimebundle_(), raw=True)  # type: ignore[no-untyped-call]

    def __repr__(self) -> str:
        return self._text()

    def __str__(self) -> str:
        return self.answer or ""

"""JSONL trajectory log: a consumer of the engine's events.

``RLMLogger`` is subscribed to a run's ``EventBus`` (``RLM(logger=RLMLogger("logs"))``
does it). It writes one event per line to
``<log_dir>/<file_name>_<YYYY-mm-dd_HH-MM-SS>_<id>.jsonl`` — the same name pattern as
lm-repl. :func:`read_log` turns a file back into typed events and :func:`read_records`
into the record of each run or search in it (``SRLMResult.from_log`` wraps that).

Decisions:

- **The main file has every event**, in arrival order, so one file replays a whole run
  or SRLM search. Events that carry a ``candidate`` index are *also* written to
  ``<same stem>_cand<N>.jsonl`` so a single trajectory can be read on its own.
- Events carry no context, only the short ``context_info``, which appears once per
  trajectory (in ``RunStarted``): the log grows with the trajectory, not with
  iterations × context size.
- Each line is written and flushed under one lock, so events from many threads never
  interleave inside a line and a crash loses at most the event being written.
- After :meth:`RLMLogger.close` further events are dropped silently: a late event
  from a worker thread must not raise into the engine.
- A line that is an lmrepl event this version cannot read (a kind or a field from
  another lmrepl version) is skipped with one ``UserWarning`` that counts them, so an
  old log still opens; a line that is no event at all means the file is not a log.
"""

from __future__ import annotations

import json
import threading
import uuid
import warnings
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from lmrepl import checks
from lmrepl import events as ev
from lmrepl.events import Event, parse_event
from lmrepl.records import SearchRecord

__all__ = ["RLMLogger", "read_log", "read_records"]


#: A log file's stem: a plain name, no folder in it.
_PLAIN_NAME = checks.Rule(
    "a plain file name (no '/' or '\\')",
    lambda v: isinstance(v, str) and bool(v) and "/" not in v and "\\" not in v,
)


class RLMLogger:
    """Event subscriber that writes JSONL logs (main file plus one per candidate).

    ``path`` is the main file (created at construction); ``paths`` lists every file
    written so far, main first, then candidates by index.
    """

    def __init__(self, log_dir: str | Path, file_name: str = "rlm") -> None:
        checks.check("RLMLogger file_name", file_name, _PLAIN_NAME)
        self.log_dir = Path(log_dir)
        self.file_name = file_name
        self.log_dir.mkdir(parents=True, exist_ok=True)
        timestamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
        self.run_id = uuid.uuid4().hex[:8]
        self._stem = f"{file_name}_{timestamp}_{self.run_id}"
        self.path = self.log_dir / f"{self._stem}.jsonl"
        self._lock = threading.Lock()
        self._main: IO[str] = self.path.open("a", encoding="utf-8")
        self._per_candidate: dict[int, IO[str]] = {}
        self._closed = False
        self.events_written = 0

    @property
    def log_file_path(self) -> str:
        """The main file as a string (the attribute name lm-repl users know)."""
        return str(self.path)

    @property
    def paths(self) -> list[Path]:
        """Every file of this logger: the main file, then per-candidate files."""
        with self._lock:
            indices = sorted(self._per_candidate)
        return [self.path, *(self.candidate_path(i) for i in indices)]

    def candidate_path(self, candidate: int) -> Path:
        """Where the events of SRLM candidate ``candidate`` are (or would be) written."""
        return self.log_dir / f"{self._stem}_cand{candidate}.jsonl"

    def __call__(self, event: Event) -> None:
        """Write ``event`` (the subscriber entry point)."""
        line = event.model_dump_json() + "\n"
        with self._lock:
            if self._closed:
                return
            self._main.write(line)
            self._main.flush()
            if event.candidate is not None:
                handle = self._per_candidate.get(event.candidate)
                if handle is None:
                    handle = self.candidate_path(event.candidate).open("a", encoding="utf-8")
                    self._per_candidate[event.candidate] = handle
                handle.write(line)
                handle.flush()
            self.events_written += 1

    def close(self) -> None:
        """Close every file; later events are ignored. Safe to call twice."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            handles = [self._main, *self._per_candidate.values()]
        for handle in handles:
            handle.close()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def __enter__(self) -> RLMLogger:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RLMLogger(path={str(self.path)!r})"


def _event_shaped(line: str) -> str | None:
    """The ``kind`` of a line that is an event's JSON object, else None."""
    try:
        data = json.loads(line)
    except ValueError:
        return None
    if isinstance(data, dict) and isinstance(data.get("kind"), str) and "run_id" in data:
        return str(data["kind"])
    return None


def read_log(path: str | Path) -> list[Event]:
    """Read a log written by :class:`RLMLogger` back into typed events.

    Blank lines are skipped. A cut-off last line (the process died mid-write) is
    ignored. A line that is an event this lmrepl cannot read — an unknown ``kind``, or
    fields it does not know, as written by another lmrepl version — is skipped, and one
    ``UserWarning`` says how many were (by kind). Any other malformed line means the
    file is not a log: ``ValueError`` naming its number.
    """
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    events: list[Event] = []
    skipped: Counter[str] = Counter()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            events.append(parse_event(line))
        except ValueError as exc:  # pydantic's ValidationError is a ValueError
            if number == len(lines):
                break
            kind = _event_shaped(line)
            if kind is not None:
                skipped[kind] += 1
                continue
            # The validator's own report (every event kind it tried) stays in __cause__.
            raise ValueError(
                f"{path}: line {number} is not an lmrepl event (a log of RLMLogger has one "
                "JSON event per line)"
            ) from exc
    if skipped:
        kinds = ", ".join(f"{k} ×{n}" for k, n in sorted(skipped.items()))
        warnings.warn(
            f"{path}: skipped {skipped.total()} event line(s) this lmrepl cannot read "
            f"({kinds}); written by another lmrepl version?",
            UserWarning,
            stacklevel=2,
        )
    return events


def split_runs(events: list[Event]) -> list[list[Event]]:
    """Cut a log's events into runs: one SRLM search or one root RLM ``completion()`` each.

    A search runs from its ``SearchStarted`` to its ``SearchFinished``; an RLM run from
    the ``RunStarted`` of a root trajectory (depth 0, no candidate) to its
    ``RunFinished``. Runs are taken one after another, as one process writes them: a
    start begins a new run even if the one before never ended (its process died), and
    events of two runs that shared a logger at the same time are not told apart.
    """
    runs: list[list[Event]] = []
    current: list[Event] | None = None
    closing: str | None = None  # the run_id whose end closes the current run
    for event in events:
        starts_search = isinstance(event, ev.SearchStarted)
        starts_root = (
            isinstance(event, ev.RunStarted) and event.depth == 0 and event.candidate is None
        )
        if current is None or starts_search or starts_root:
            current = []
            runs.append(current)
            closing = event.run_id if (starts_search or starts_root) else None
        current.append(event)
        ends = isinstance(event, ev.SearchFinished) or (
            isinstance(event, ev.RunFinished) and event.depth == 0 and event.candidate is None
        )
        if ends and event.run_id == closing:
            current, closing = None, None
    return runs


def read_records(path: str | Path) -> list[SearchRecord]:
    """The record of every run in a log, in order (see :func:`split_runs`).

    A finished search is its ``SearchFinished`` record, exactly what ``completion()``
    returned; anything else (an RLM run, a search cut short) is folded from its events
    by ``lmrepl.live.LiveState``, as the live views build it.
    """
    from lmrepl.live import LiveState

    records: list[SearchRecord] = []
    for run in split_runs(read_log(path)):
        state = LiveState()
        state.apply_all(run)
        records.append(state.record)
    return records

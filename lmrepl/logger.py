"""JSONL trajectory log: a consumer of the engine's events.

``RLMLogger`` is subscribed to a run's ``EventBus`` (``RLM(logger=RLMLogger("logs"))``
does it). It writes one event per line to
``<log_dir>/<file_name>_<YYYY-mm-dd_HH-MM-SS>_<id>.jsonl`` — the same name pattern as
lm-repl — and :func:`read_log` turns a file back into typed events.

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
"""

from __future__ import annotations

import threading
import uuid
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from lmrepl.events import Event, parse_event

__all__ = ["RLMLogger", "read_log"]


class RLMLogger:
    """Event subscriber that writes JSONL logs (main file plus one per candidate).

    ``path`` is the main file (created at construction); ``paths`` lists every file
    written so far, main first, then candidates by index.
    """

    def __init__(self, log_dir: str | Path, file_name: str = "rlm") -> None:
        if not file_name or "/" in file_name or "\\" in file_name:
            raise ValueError(f"file_name must be a plain name, got {file_name!r}")
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


def read_log(path: str | Path) -> list[Event]:
    """Read a log written by :class:`RLMLogger` back into typed events.

    Blank lines are skipped. A cut-off last line (the process died mid-write) is
    ignored; a malformed line anywhere else raises ``ValueError`` naming its number.
    """
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    events: list[Event] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            events.append(parse_event(line))
        except ValueError as exc:  # pydantic's ValidationError is a ValueError
            if number == len(lines):
                break
            # The validator's own report (every event kind it tried) stays in __cause__.
            raise ValueError(
                f"{path}: line {number} is not an lmrepl event (a log of RLMLogger has one "
                "JSON event per line)"
            ) from exc
    return events

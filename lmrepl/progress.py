"""Live terminal progress for RLM and SRLM runs: a consumer of the engine's events.

``TerminalProgress`` keeps one row per trajectory — per SRLM candidate, or per root
run — with its status, iteration, the code being run, the last cell's status,
sub-call counts, tokens and elapsed time. On a terminal it redraws the table with
``rich.live.Live``; elsewhere (a pipe, a log file, a test's ``StringIO``) it prints one
plain line per notable event. When an SRLM search ends it shows the candidates,
answer clusters, scores and winner (:func:`render_search_summary`).

Events arrive from many threads while Live redraws from its own, so all state sits
behind one lock, and no Live method is ever called while holding it (Live holds its
own lock while it asks us for the table; taking them in both orders would deadlock).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from lmrepl import events as ev

__all__ = ["TerminalProgress", "render_search_summary"]

_STATUS_STYLE = {
    "queued": "dim",
    "running": "cyan",
    "done": "green",
    "failed": "red",
    "cancelled": "yellow",
    "stopped": "yellow",
}


def _one_line(text: str | None, limit: int) -> str:
    """First non-empty line of ``text``, cut to ``limit`` characters."""
    if not text:
        return ""
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    first = lines[0] if lines else ""
    more = len(lines) > 1
    if len(first) > limit:
        return first[: max(limit - 1, 0)] + "…"
    return first + (" …" if more else "")


def _tokens(n: int) -> str:
    return f"{n / 1000:.1f}k" if n >= 10_000 else str(n)


def _num(value: Any, fmt: str) -> str:
    return "–" if value is None else format(value, fmt)


@dataclass
class _Row:
    """What the display knows about one trajectory (a candidate or a root run)."""

    label: str
    status: str = "queued"
    iteration: int = 0
    code: str = ""
    cell: str = ""
    subcalls: int = 0
    subcalls_running: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    confidence: float | None = None
    started: float | None = None
    finished: float | None = None
    answer: str | None = None
    error: str | None = None

    def elapsed(self, now: float) -> float:
        if self.started is None:
            return 0.0
        return (self.finished if self.finished is not None else now) - self.started


class TerminalProgress:
    """Event subscriber that shows live progress in a terminal (or plain lines).

    ``console`` defaults to a new stderr console. ``live`` forces the Live table on
    or off; by default it is used exactly when the console is a terminal.
    """

    def __init__(
        self,
        console: Console | None = None,
        *,
        live: bool | None = None,
        refresh_per_second: float = 4.0,
        code_lines: int = 2,
    ) -> None:
        if refresh_per_second <= 0:
            raise ValueError(f"refresh_per_second must be > 0, got {refresh_per_second!r}")
        self.console = console if console is not None else Console(stderr=True)
        self._use_live = self.console.is_terminal if live is None else live
        self._refresh = refresh_per_second
        self._code_lines = max(1, code_lines)
        self._lock = threading.Lock()
        self._rows: dict[str, _Row] = {}
        self._row_of_run: dict[str, str] = {}
        self._search: dict[str, Any] | None = None
        self._search_mode: str | None = None
        self._live: Live | None = None
        self._live_lock = threading.Lock()
        self._redraw: threading.Thread | None = None
        self._stop_redraw = threading.Event()
        self._closed = False

    # ----------------------------------------------------------------- state
    def _row_key(self, event: ev.Event) -> str:
        if event.candidate is not None:
            return f"cand:{event.candidate}"
        return self._row_of_run.get(event.run_id, f"run:{event.run_id}")

    def _row(self, key: str, event: ev.Event) -> _Row:
        row = self._rows.get(key)
        if row is None:
            label = f"cand {event.candidate}" if event.candidate is not None else "run"
            row = self._rows[key] = _Row(label=label)
        return row

    def _apply(self, event: ev.Event) -> str | None:
        """Update state with ``event``; returns a plain-mode line, if it merits one."""
        if isinstance(event, ev.SearchStarted):
            self._search_mode = event.mode
            for i in range(event.n_candidates):
                self._rows.setdefault(f"cand:{i}", _Row(label=f"cand {i}"))
            return (
                f"search: {event.mode}, {event.n_candidates} candidates, "
                f"{event.candidate_parallel} at once"
            )
        if isinstance(event, ev.SearchFinished):
            self._search = {
                "mode": self._search_mode or "rlm",
                "answer": event.answer,
                "winner": event.winner,
                "clusters": event.clusters,
                "candidates": event.candidates,
                "execution_time": event.execution_time,
                "error": event.error,
            }
            return None  # the summary is printed whole, not as one line
        if isinstance(event, ev.RunStarted) and event.parent_run_id is not None:
            parent = self._row_of_run.get(event.parent_run_id)
            if parent is not None:
                self._row_of_run[event.run_id] = parent
        key = self._row_key(event)
        if event.depth > 0 and key not in self._rows:
            return None  # a child whose parent we never saw: no row of its own
        self._row_of_run.setdefault(event.run_id, key)
        row = self._row(key, event)
        root = event.depth == 0
        if isinstance(event, ev.CandidateQueued):
            row.status = "queued"
        elif isinstance(event, ev.RunStarted) and root:
            row.status, row.started = "running", event.time
            return f"{row.label}: started ({event.model}, {event.environment})"
        elif isinstance(event, ev.IterationStarted) and root:
            row.iteration = event.iteration
        elif isinstance(event, ev.CellStarted) and root:
            row.code = "\n".join(event.code.strip().splitlines()[: self._code_lines])
            row.cell = "running"
        elif isinstance(event, ev.CellFinished) and root:
            row.cell = event.status
        elif isinstance(event, ev.SubcallStarted):
            row.subcalls += 1
            row.subcalls_running += 1
        elif isinstance(event, ev.SubcallFinished):
            row.subcalls_running = max(0, row.subcalls_running - 1)
        elif isinstance(event, ev.ModelCallFinished):
            row.input_tokens += event.input_tokens
            row.output_tokens += event.output_tokens
        elif isinstance(event, ev.IterationFinished) and root:
            row.iteration = event.iteration
            if event.confidence is not None:
                row.confidence = event.confidence
            conf = "" if event.confidence is None else f" · conf {event.confidence:g}"
            code = _one_line(event.code_blocks[0], 50) if event.code_blocks else "(no code)"
            return (
                f"{row.label}: iter {event.iteration} · {len(event.code_blocks)} cell(s) · "
                f"{row.subcalls} sub-calls · {_tokens(row.output_tokens)} out tok{conf} · {code}"
            )
        elif isinstance(event, ev.RunFinished) and root:
            row.finished = row.finished or event.time
            if event.candidate is None or row.status == "running":
                row.status = event.status
            row.answer, row.error = event.answer, event.error
            row.iteration = max(row.iteration, event.iterations)
            if event.candidate is not None:
                return None  # CandidateFinished follows with the scoring inputs
            what = _one_line(event.error, 60) if event.error else _one_line(event.answer, 60)
            return f"{row.label}: {event.status} after {event.execution_time:.1f}s · {what}"
        elif isinstance(event, ev.CandidateFinished):
            row.status = event.status
            row.finished = row.finished or event.time
            row.answer = event.answer if event.answer is not None else row.answer
            row.error = event.error or row.error
            vc = "" if event.vc is None else f" · VC {event.vc:.2f}"
            what = _one_line(event.error, 60) if event.error else _one_line(event.answer, 60)
            return f"{row.label}: {event.status} · {event.length} tok{vc} · {what}"
        return None

    # ------------------------------------------------------------- rendering
    def _table(self, now: float) -> Table:
        table = Table(expand=False, show_edge=False, pad_edge=False)
        for name in ("run", "status", "iter", "code", "cell", "sub-calls", "tokens", "time"):
            table.add_column(name, no_wrap=name != "code", overflow="ellipsis")
        table.add_column("answer", overflow="ellipsis", max_width=40)
        for row in self._rows.values():
            subs = str(row.subcalls)
            if row.subcalls_running:
                subs += f" ({row.subcalls_running} running)"
            answer = _one_line(row.error, 40) if row.error else _one_line(row.answer, 40)
            table.add_row(
                row.label,
                Text(row.status, style=_STATUS_STYLE.get(row.status, "")),
                str(row.iteration),
                Text(row.code),  # Text, not str: model code is not rich markup
                Text(row.cell),
                subs,
                f"{_tokens(row.input_tokens)} in / {_tokens(row.output_tokens)} out",
                f"{row.elapsed(now):.1f}s",
                Text(answer),
            )
        return table

    def _render(self) -> RenderableType:
        with self._lock:
            table = self._table(time.time())
            search = self._search
        if search is None:
            return table
        return Group(table, render_search_summary(search))

    def __rich__(self) -> RenderableType:
        """The current view, so a ``TerminalProgress`` can be printed with rich."""
        return self._render()

    # ------------------------------------------------------------ subscriber
    def __call__(self, event: ev.Event) -> None:
        """Take one event (from any thread)."""
        if self._closed:
            return
        with self._lock:
            line = self._apply(event)
            summary = self._search if isinstance(event, ev.SearchFinished) else None
            if not self._use_live:
                # Printing under the lock keeps lines from different threads whole
                # and in the order their events were applied.
                if line is not None:
                    self.console.print(Text(line), soft_wrap=True)
                if summary is not None:
                    self.console.print(render_search_summary(summary))
        if self._use_live:
            self._ensure_live()

    def _ensure_live(self) -> None:
        with self._live_lock:
            if self._live is not None or self._closed:
                return
            # Our own redraw thread rather than Live's: Live.stop() does not join its
            # thread, and close() must leave no thread behind.
            self._live = Live(
                console=self.console,
                get_renderable=self._render,
                auto_refresh=False,
                redirect_stdout=False,
                redirect_stderr=False,
            )
            self._live.start(refresh=True)
            self._stop_redraw.clear()
            self._redraw = threading.Thread(
                target=self._redraw_loop, args=(self._live,), name="lmrepl-progress", daemon=True
            )
            self._redraw.start()

    def _redraw_loop(self, live: Live) -> None:
        interval = 1.0 / self._refresh
        while not self._stop_redraw.wait(interval):
            live.refresh()

    def close(self) -> None:
        """Stop the live display (drawing the final state once). Safe to call twice."""
        with self._live_lock:
            self._closed = True
            live, self._live = self._live, None
            redraw, self._redraw = self._redraw, None
        self._stop_redraw.set()
        if redraw is not None:
            redraw.join()
        if live is not None:
            live.stop()  # draws the final frame

    def __enter__(self) -> TerminalProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def render_search_summary(metadata: dict[str, Any]) -> RenderableType:
    """Candidates, clusters, scores and the winner of an SRLM result's ``metadata``."""
    mode = metadata.get("mode", "rlm")
    winner = metadata.get("winner")
    answer = metadata.get("answer")
    parts: list[RenderableType] = []
    if mode == "direct":
        parts.append(Text(f"direct answer (no REPL): {_one_line(answer, 100)}"))
        return Group(*parts)

    cands = Table(title="candidates", title_justify="left", show_edge=False)
    for name in ("#", "status", "answer", "cluster", "VC", "Len", "VC·Len", ""):
        cands.add_column(name, overflow="fold" if name == "answer" else "ellipsis")
    for cand in metadata.get("candidates") or []:
        index = cand.get("index")
        is_winner = index is not None and index == winner
        text = cand.get("error") if cand.get("status") != "done" else cand.get("answer")
        cands.add_row(
            str(index),
            Text(str(cand.get("status", "")), style=_STATUS_STYLE.get(cand.get("status", ""), "")),
            Text(_one_line(text, 50)),
            _num(cand.get("cluster"), "d"),
            _num(cand.get("vc"), ".3f"),
            _num(cand.get("length"), "d"),
            _num(cand.get("score"), ".1f"),
            "winner" if is_winner else "",
            style="bold green" if is_winner else None,
        )
    parts.append(cands)

    clusters = Table(title="answer clusters", title_justify="left", show_edge=False)
    for name in ("cluster", "answer", "votes", "members"):
        clusters.add_column(name, overflow="fold" if name == "answer" else "ellipsis")
    for pos, cluster in enumerate(metadata.get("clusters") or []):
        members = list(cluster.get("members") or [])
        clusters.add_row(
            str(pos),
            Text(_one_line(cluster.get("answer"), 50)),
            str(cluster.get("votes", len(members))),
            ", ".join(str(m) for m in members),
            style="bold green" if winner is not None and winner in members else None,
        )
    parts.append(clusters)

    if winner is None:
        error = metadata.get("error")
        parts.append(Text(f"no winner{': ' + _one_line(error, 80) if error else ''}", "red"))
    else:
        parts.append(
            Text(f"winner: candidate {winner} — {_one_line(answer, 80)}", style="bold green")
        )
    return Group(*parts)

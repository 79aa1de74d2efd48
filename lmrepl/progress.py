"""Live terminal progress for RLM and SRLM runs: a consumer of the engine's events.

``TerminalProgress`` folds events into a ``LiveState`` (the reducer the notebook panel
uses too) and shows one row per candidate — per SRLM candidate, or per root run —
with its status, iteration, the code being run, the last cell's status, sub-call
counts, tokens and elapsed time. On a terminal it redraws the table with
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
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from lmrepl import checks
from lmrepl import events as ev
from lmrepl.live import LiveState
from lmrepl.records import CandidateRecord, SearchRecord, stop_tag

__all__ = ["TerminalProgress", "render_live", "render_search_summary"]

_STATUS_STYLE = {
    "queued": "dim",
    "running": "cyan",
    "done": "green",
    "no_answer": "yellow",
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


def grounding_tag(grounded: bool | None) -> str:
    """``grounded``/``ungrounded`` for a finished answer, "" when unknown or no answer."""
    if grounded is None:
        return ""
    return "grounded" if grounded else "ungrounded"


def _answer_text(answer: str | None, grounded: bool | None, limit: int) -> Text:
    """An answer cut to ``limit`` characters with its grounding tag after it (kept whole)."""
    tag = grounding_tag(grounded) if answer is not None else ""
    text = Text(_one_line(answer, max(limit - len(tag) - 1, 8) if tag else limit))
    if tag:
        text.append(f" {tag}", style="green" if grounded else "yellow")
    return text


def _tokens(n: int) -> str:
    return f"{n / 1000:.1f}k" if n >= 10_000 else str(n)


def _num(value: Any, fmt: str) -> str:
    return "–" if value is None else format(value, fmt)


def _label(state: LiveState, index: int) -> str:
    if state.record.kind == "srlm":
        return f"cand {index}"
    return "run" if len(state.record.candidates) <= 1 else f"run {index}"


def _elapsed(cand: CandidateRecord, now: float) -> float:
    if cand.started_at is None:
        return 0.0
    return (cand.finished_at if cand.finished_at is not None else now) - cand.started_at


def event_line(event: ev.Event, state: LiveState) -> str | None:
    """The plain-mode line for ``event`` (already applied to ``state``), if it merits one."""
    if isinstance(event, ev.SearchStarted):
        return (
            f"search: {event.mode}, {event.n_candidates} candidates, "
            f"{event.candidate_parallel} at once"
        )
    if event.depth > 0 or isinstance(event, ev.SearchFinished):
        return None  # children show as sub-calls; a search's end prints the summary
    index = event.candidate
    if index is None:
        index = next((c.index for c in state.record.candidates if c.run_id == event.run_id), None)
    if index is None or index >= len(state.record.candidates):
        return None
    cand = state.record.candidates[index]
    label = _label(state, index)
    if isinstance(event, ev.RunStarted):
        return f"{label}: started ({event.model}, {event.environment})"
    if isinstance(event, ev.IterationFinished):
        step = event.step
        conf = "" if step.confidence is None else f" · conf {step.confidence:g}"
        cells = [c.code for c in step.cells]
        code = _one_line(cells[0], 50) if cells else "(no code)"
        return (
            f"{label}: iter {step.iteration} · {len(cells)} cell(s) · "
            f"{cand.subcall_count()} sub-calls · {_tokens(cand.output_tokens)} out tok{conf}"
            f" · {code}"
        )
    if isinstance(event, ev.RunFinished) and event.candidate is None:
        what = _one_line(event.error, 60) if event.error else _one_line(event.answer, 60)
        tag = "" if event.error else _tag_suffix(event.grounded)
        status = _status(event.status, event.stop_reason)
        return f"{label}: {status} after {event.execution_time:.1f}s · {what}{tag}"
    if isinstance(event, ev.CandidateFinished):
        rec = event.record
        vc = "" if rec.vc is None else f" · VC {rec.vc:.2f}"
        what = _one_line(rec.error, 60) if rec.error else _one_line(rec.answer, 60)
        tag = "" if rec.error else _tag_suffix(rec.grounded)
        status = _status(rec.status, rec.stop_reason)
        return f"{label}: {status} · {rec.length} tok{vc} · {what}{tag}"
    return None


def _status(status: str, stop_reason: str | None, *, short: bool = False) -> str:
    """``done`` or, for a forced answer or a limit, ``done (forced: max_iterations)``
    (``short``, for table cells: ``done (forced)``)."""
    tag = stop_tag(stop_reason, has_answer=status == "done")
    if not tag:
        return status
    if short or tag == stop_reason:
        return f"{status} ({tag})"
    return f"{status} ({tag}: {stop_reason})"


def _tag_suffix(grounded: bool | None) -> str:
    tag = grounding_tag(grounded)
    return f" ({tag})" if tag else ""


def progress_table(state: LiveState, now: float, code_lines: int = 2) -> Table:
    """One row per candidate: status, iteration, code, last cell, sub-calls, tokens, time."""
    table = Table(expand=False, show_edge=False, pad_edge=False)
    for name in ("run", "status", "iter", "code", "cell", "sub-calls", "tokens", "time"):
        table.add_column(name, no_wrap=name != "code", overflow="ellipsis")
    table.add_column("answer", overflow="ellipsis", max_width=40)
    for cand in state.record.candidates:
        i = cand.index
        running = state.running_code.get(i)
        code = running if running is not None else (cand.steps[-1].code if cand.steps else "")
        subs = str(cand.subcall_count())
        if state.subcalls_running.get(i):
            subs += f" ({state.subcalls_running[i]} running)"
        answer = (
            Text(_one_line(cand.error, 40))
            if cand.error
            else _answer_text(cand.answer, cand.grounded, 40)
        )
        table.add_row(
            _label(state, i),
            Text(
                _status(cand.status, cand.stop_reason, short=True),
                style=_STATUS_STYLE.get(cand.status, ""),
            ),
            str(max(state.iteration.get(i, 0), len(cand.steps))),
            Text("\n".join(code.strip().splitlines()[:code_lines])),  # not rich markup
            Text(state.cell_status.get(i, "")),
            subs,
            f"{_tokens(cand.input_tokens)} in / {_tokens(cand.output_tokens)} out",
            f"{_elapsed(cand, now):.1f}s",
            answer,
        )
    return table


def header_line(state: LiveState, title: str | None = None, now: float | None = None) -> Text:
    """``title status  elapsed · calls · tokens`` for the top of the view."""
    rec = state.record
    head = Text()
    head.append(f"{title or 'lmrepl ' + rec.kind} ", style="bold")
    head.append(
        _status(rec.status, rec.stop_reason),
        style=f"bold {_STATUS_STYLE.get(rec.status, '')}".strip(),
    )
    head.append(
        f"  {state.elapsed(now):.1f} s · {rec.model_calls} model calls · "
        f"{rec.input_tokens:,} in / {rec.output_tokens:,} out tokens"
    )
    if rec.sandbox:
        head.append(f" · sandbox {rec.sandbox}")
    return head


def render_live(
    state: LiveState, now: float | None = None, code_lines: int = 2, title: str | None = None
) -> RenderableType:
    """The terminal view of ``state``: a header, the table, then the outcome once finished."""
    t = time.time() if now is None else now
    parts: list[RenderableType] = [
        header_line(state, title, t),
        progress_table(state, t, code_lines),
    ]
    rec = state.record
    if state.finished:
        if rec.kind == "srlm":
            parts.append(render_search_summary(rec))
        elif rec.answer is not None:
            run = rec.candidates[rec.winner] if rec.winner is not None else None
            answer = _answer_text(rec.answer, run.grounded if run else None, 200)
            parts.append(Text.assemble("answer: ", answer, style="bold"))
        if rec.error and rec.kind == "rlm":
            parts.append(Text(_one_line(rec.error, 200), style="red"))
    return Group(*parts)


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
        checks.check("refresh_per_second", refresh_per_second, checks.number(0, exclusive=True))
        self.console = console if console is not None else Console(stderr=True)
        self._use_live = self.console.is_terminal if live is None else live
        self._refresh = refresh_per_second
        self._code_lines = max(1, code_lines)
        self._lock = threading.Lock()
        #: What the display shows, folded from the events (the panel's reducer too).
        self.state = LiveState()
        self._live: Live | None = None
        self._live_lock = threading.Lock()
        self._redraw: threading.Thread | None = None
        self._stop_redraw = threading.Event()
        self._closed = False

    def _render(self) -> RenderableType:
        with self._lock:
            return render_live(self.state, code_lines=self._code_lines)

    def __rich__(self) -> RenderableType:
        """The current view, so a ``TerminalProgress`` can be printed with rich."""
        return self._render()

    # ------------------------------------------------------------ subscriber
    def __call__(self, event: ev.Event) -> None:
        """Take one event (from any thread)."""
        if self._closed:
            return
        with self._lock:
            self.state.apply(event)
            line = event_line(event, self.state)
            summary = self.state.record if isinstance(event, ev.SearchFinished) else None
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


def render_search_summary(record: SearchRecord) -> RenderableType:
    """Candidates, clusters, scores and the winner of an SRLM search's record."""
    winner = record.winner
    if record.mode == "direct":
        return Group(Text(f"direct answer (no REPL): {_one_line(record.answer, 100)}"))
    parts: list[RenderableType] = []
    cands = Table(title="candidates", title_justify="left", show_edge=False)
    for name in ("#", "status", "answer", "cluster", "VC", "Len", "VC·Len", ""):
        cands.add_column(name, overflow="fold" if name == "answer" else "ellipsis")
    for cand in record.candidates:
        is_winner = cand.index == winner
        done = cand.status == "done"
        cands.add_row(
            str(cand.index),
            Text(
                _status(cand.status, cand.stop_reason, short=True),
                style=_STATUS_STYLE.get(cand.status, ""),
            ),
            _answer_text(cand.answer, cand.grounded, 50)
            if done
            else Text(_one_line(cand.error, 50)),
            _num(cand.cluster, "d"),
            _num(cand.vc, ".3f"),
            _num(cand.length, "d"),
            _num(cand.score, ".1f"),
            "winner" if is_winner else "",
            style="bold green" if is_winner else None,
        )
    parts.append(cands)
    clusters = Table(title="answer clusters", title_justify="left", show_edge=False)
    for name in ("cluster", "answer", "votes", "members"):
        clusters.add_column(name, overflow="fold" if name == "answer" else "ellipsis")
    for pos, cluster in enumerate(record.clusters):
        clusters.add_row(
            str(pos),
            Text(_one_line(cluster.answer, 50)),
            str(cluster.votes),
            ", ".join(str(m) for m in cluster.members),
            style="bold green" if winner is not None and winner in cluster.members else None,
        )
    parts.append(clusters)
    if winner is None:
        error = record.error
        parts.append(Text(f"no winner{': ' + _one_line(error, 80) if error else ''}", "red"))
    else:
        parts.append(
            Text(
                f"winner: candidate {winner} — {_one_line(record.answer, 80)}",
                style="bold green",
            )
        )
    return Group(*parts)

"""A ``rich`` live view of the same state, for terminal IPython and ``--no-panel``.

Refreshed explicitly from the magic's thread (``auto_refresh=False``), so rich's own
refresh thread never reads the state while it changes.
"""

from __future__ import annotations

import sys
from typing import IO

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from lmrepl_jupyter.html import BADGE_COLOURS, fmt_float, joint_score, survivors, truncate
from lmrepl_jupyter.panel_state import PanelState


def render(state: PanelState, now: float | None = None) -> Group:
    """A rich renderable of ``state``: a header line, the clusters and the candidates."""
    rec = state.record
    magic = "%%rlm" if rec.kind == "rlm" else "%%srlm"
    head = Text()
    head.append(f"{magic} ", style="bold")
    head.append(rec.status, style=f"bold {BADGE_COLOURS.get(rec.status, 'white')}")
    head.append(
        f"  {state.elapsed(now):.1f} s · {rec.model_calls} model calls · "
        f"{rec.input_tokens:,} in / {rec.output_tokens:,} out tokens"
    )
    parts: list[Text | Table] = [head, Text(truncate(rec.question, 3, 200), style="dim")]
    if rec.error:
        parts.append(Text(rec.error, style="red"))
    if rec.clusters:
        ct = Table(title="clusters", show_edge=False)
        for col in ("#", "answer", "votes", "members"):
            ct.add_column(col)
        for i, cl in enumerate(rec.clusters):
            win = rec.winner is not None and rec.winner in cl.members
            ct.add_row(
                str(i),
                truncate(cl.answer or "", 1, 60),
                str(cl.votes),
                ", ".join(map(str, cl.members)),
                style="bold green" if win else None,
            )
        parts.append(ct)
    table = Table(show_lines=True, expand=True)
    table.add_column("")
    alive = survivors(rec)
    for cand in rec.candidates:
        star = " ★" if rec.winner == cand.index else ""
        label = "trajectory" if rec.kind == "rlm" else f"#{cand.index}"
        table.add_column(f"{label}{star}", style="green" if star else None, overflow="fold")
    if rec.candidates:
        cands = rec.candidates

        def row(name: str, cells: list[str]) -> None:
            table.add_row(name, *cells)

        row("status", [c.status for c in cands])
        row("steps", [f"{len(c.steps)} ({c.model_calls} calls, {c.subcalls} sub)" for c in cands])
        last_code = []
        for c in cands:
            running = state.running_code.get(c.index)
            code = running if running is not None else (c.steps[-1].code if c.steps else "")
            last_code.append(truncate(code, 4, 160))
        row("code", last_code)
        row("output", [truncate(c.steps[-1].output, 3, 120) if c.steps else "" for c in cands])
        row(
            "conf",
            [
                ""
                if not c.steps or c.steps[-1].confidence is None
                else f"{c.steps[-1].confidence:g}"
                for c in cands
            ],
        )
        row(
            "VC·Len",
            [
                f"{fmt_float(c.vc)}·{c.length}={fmt_float(joint_score(c), 1)}"
                if c.index in alive
                else ""
                for c in cands
            ],
        )
        row("answer", [truncate(c.answer or c.error or "", 3, 160) for c in cands])
        parts.append(table)
    if rec.answer is not None and rec.status != "running":
        parts.append(Text(f"answer: {truncate(rec.answer, 5, 400)}", style="bold"))
    return Group(*parts)


class RichView:
    """A ``rich.live.Live`` display driven by ``update`` calls."""

    def __init__(self, file: IO[str] | None = None) -> None:
        # Not Jupyter's rich integration: it would need widgets, which are missing here.
        self.console = Console(file=file or sys.stdout, force_jupyter=False)
        self.live: Live | None = None

    def start(self, state: PanelState) -> None:
        """Begin the live display."""
        self.live = Live(render(state), console=self.console, auto_refresh=False, transient=False)
        self.live.start()

    def update(self, state: PanelState, now: float | None = None) -> None:
        """Redraw with the current state."""
        state.take_dirty()
        if self.live is not None:
            self.live.update(render(state, now), refresh=True)

    def finish(self, state: PanelState) -> None:
        """Draw the final state and stop."""
        if self.live is not None:
            self.live.update(render(state), refresh=True)
            self.live.stop()
            self.live = None

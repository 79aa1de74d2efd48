"""The live ipywidgets panel: header, clusters, one column per candidate.

Only the magic's thread calls ``update`` (see driver.py), so no widget is ever written
from two threads. Each update re-renders only the parts the reducer marked dirty and
sends each widget's changes in one message (``hold_sync``).
"""

from __future__ import annotations

import contextlib
from typing import Any

import ipywidgets as widgets

from lmrepl.html import (
    WINNER_COLOUR,
    RenderOptions,
    candidate_body_html,
    candidate_title_html,
    clusters_html,
    header_html,
)
from lmrepl.live import CLUSTERS, HEADER, LiveState

PANEL_CLASS = "lmrepl-panel"
COLUMN_CLASS = "lmrepl-candidate"
WINNER_CLASS = "lmrepl-winner"


class PanelBox(widgets.VBox):  # type: ignore[misc]
    """The panel's outer box; its text form stands in where widgets cannot render."""

    def __repr__(self) -> str:
        return "<lmrepl live panel: where widgets do not render, see the result below>"


class CandidateColumn:
    """One candidate's column: a title and a body, in a VBox."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.title = widgets.HTML()
        self.body = widgets.HTML()
        self.box = widgets.VBox(
            [self.title, self.body],
            layout=widgets.Layout(
                flex="1 1 0",
                min_width="240px",
                border="1px solid #ccc",
                padding="4px",
                margin="0 3px",
                overflow="hidden",
            ),
        )
        self.box.add_class(COLUMN_CLASS)
        self.winner = False

    def set_winner(self, winner: bool) -> None:
        """Highlight (or un-highlight) this column as the winner."""
        if winner == self.winner:
            return
        self.winner = winner
        if winner:
            self.box.add_class(WINNER_CLASS)
            self.box.layout.border = f"3px solid {WINNER_COLOUR}"
        else:
            self.box.remove_class(WINNER_CLASS)
            self.box.layout.border = "1px solid #ccc"


class WidgetPanel:
    """The candidate panel as ipywidgets, kept in step with a ``LiveState``."""

    def __init__(self, options: RenderOptions | None = None) -> None:
        self.options = options or RenderOptions()
        self.header = widgets.HTML()
        self.clusters = widgets.HTML()
        self.row = widgets.HBox(
            [], layout=widgets.Layout(width="100%", align_items="flex-start", overflow="auto")
        )
        self.widget = PanelBox([self.header, self.clusters, self.row])
        self.widget.add_class(PANEL_CLASS)
        self.columns: list[CandidateColumn] = []
        # The display the panel lives in; ``replace_with`` swaps it for the result.
        self.handle: Any = None

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)  # type: ignore[no-untyped-call]

    def start(self, state: LiveState) -> None:
        """Show the panel in the current cell's output."""
        from IPython.display import display

        self.update(state)
        self.handle = display(self.widget, display_id=True)  # type: ignore[no-untyped-call]

    def finish(self, state: LiveState) -> None:
        """Show the final state (the widgets stay, so the notebook saves them)."""
        self.update(state)

    def update(self, state: LiveState, now: float | None = None) -> None:
        """Bring the widgets up to date with ``state`` (call from one thread only)."""
        dirty = state.take_dirty()
        rec = state.record
        with contextlib.ExitStack() as stack:

            def hold(w: Any) -> None:
                stack.enter_context(w.hold_sync())

            # The header carries the elapsed clock, so it changes on every tick.
            hold(self.header)
            self.header.value = header_html(state, now)
            if CLUSTERS in dirty:
                hold(self.clusters)
                self.clusters.value = clusters_html(rec)
            if len(self.columns) != len(rec.candidates):
                hold(self.row)
                while len(self.columns) < len(rec.candidates):
                    self.columns.append(CandidateColumn(len(self.columns)))
                del self.columns[len(rec.candidates) :]
                self.row.children = tuple(c.box for c in self.columns)
                dirty.update(range(len(self.columns)))
            for col in self.columns:
                if col.index not in dirty and HEADER not in dirty:
                    continue
                cand = rec.candidates[col.index]
                for w in (col.title, col.body, col.box, col.box.layout):
                    hold(w)
                col.title.value = candidate_title_html(cand, rec)
                if col.index in dirty:
                    col.body.value = candidate_body_html(
                        cand,
                        state.running_code.get(col.index),
                        self.options,
                        state.activity(col.index),
                    )
                col.set_winner(rec.winner is not None and rec.winner == col.index)

    def replace_with(self, bundle: dict[str, Any]) -> bool:
        """Show the MIME ``bundle`` where the panel was, then close the panel's widgets.

        The output the panel occupied is updated in place (``update_display_data``), so
        the cell keeps one rich rendering: the result's own MIME bundle, which a saved
        notebook shows with no kernel and no widget state. Returns False when the panel
        was never displayed (nothing to replace).
        """
        if self.handle is None:
            return False
        self.handle.update(bundle, raw=True)
        self.dispose()
        return True

    def dispose(self) -> None:
        """Close every widget of the panel (drops them from the notebook's state)."""
        for col in self.columns:
            col.box.close()
            col.title.close()
            col.body.close()
        for w in (self.row, self.header, self.clusters, self.widget):
            w.close()

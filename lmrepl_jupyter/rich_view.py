"""The terminal view of a run, for terminal IPython and ``--no-panel``.

The live display is erased when the run ends. The view is progress; what stays is the
result, shown once — as the cell's ``Out[]`` when the run has an answer, as one stderr
line when it failed. Left in place, the final frame would repeat what ``Out[]`` prints,
and off a terminal (a pipe, a notebook's stream) rich would end it without a newline,
running into the next prompt.

The same rendering as the engine's ``TerminalProgress`` (``lmrepl.progress.render_live``)
over the same ``LiveState``, refreshed explicitly from the magic's thread
(``auto_refresh=False``), so rich's own refresh thread never reads the state while it
changes.
"""

from __future__ import annotations

import sys
from typing import IO

from rich.console import Console
from rich.live import Live

from lmrepl.live import LiveState
from lmrepl.progress import render_live


class RichView:
    """A ``rich.live.Live`` display driven by ``update`` calls, erased by ``finish``."""

    def __init__(self, file: IO[str] | None = None, title: str | None = None) -> None:
        # Not Jupyter's rich integration: it would need widgets, which are missing here.
        self.console = Console(file=file or sys.stdout, force_jupyter=False)
        self.title = title
        self.live: Live | None = None

    def start(self, state: LiveState) -> None:
        """Begin the live display."""
        self.live = Live(
            render_live(state, title=self.title),
            console=self.console,
            auto_refresh=False,
            transient=True,
        )
        self.live.start()

    def update(self, state: LiveState, now: float | None = None) -> None:
        """Redraw with the current state."""
        state.take_dirty()
        if self.live is not None:
            self.live.update(render_live(state, now, title=self.title), refresh=True)

    def finish(self, state: LiveState) -> None:
        """Draw the final state and stop (the display is then erased)."""
        if self.live is not None:
            self.live.update(render_live(state, title=self.title), refresh=True)
            self.live.stop()
            self.live = None

"""The widget panel and the driver loop that feeds it from a queue."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
from test_jupyter_panel_state import candidate_events, search_events

from lmrepl.events import Event, IterationFinished, RunStarted
from lmrepl.types import RLMChatCompletion, UsageSummary
from lmrepl_jupyter.driver import NullView, run_with_view
from lmrepl_jupyter.panel import COLUMN_CLASS, WINNER_CLASS, WidgetPanel
from lmrepl_jupyter.panel_state import PanelState


def test_widget_panel_after_a_search() -> None:
    state = PanelState(kind="srlm", question="q?", n_candidates=3)
    panel = WidgetPanel()
    try:
        panel.update(state)
        assert len(panel.row.children) == 3
        assert all("queued" in c.title.value for c in panel.columns)
        state.apply_all(search_events(["42", "42", "41"], winner=1))
        panel.update(state)
        boxes = panel.row.children
        assert len(boxes) == 3
        assert all(COLUMN_CLASS in b._dom_classes for b in boxes)
        assert [WINNER_CLASS in b._dom_classes for b in boxes] == [False, True, False]
        assert "3px solid" in boxes[1].layout.border
        assert all("done" in c.title.value for c in panel.columns)
        assert "★ winner" in panel.columns[1].title.value
        # Per step the code (highlighted), the output and the confidence.
        body = panel.columns[0].body.value
        assert "confidence 80" in body and "len" in body and "11" in body
        assert "timed out" in body
        clusters = panel.clusters.value
        assert "VC·Len" in clusters and "-9.0" in clusters  # candidate 1's score
        assert "done" in panel.header.value and "3 model calls" in panel.header.value
    finally:
        panel.dispose()


def test_widget_panel_grows_with_new_candidates_and_moves_the_winner() -> None:
    state = PanelState(kind="srlm", n_candidates=1)
    panel = WidgetPanel()
    try:
        panel.update(state)
        state.apply_all(candidate_events(2, "x"))
        state.record.winner = 2
        panel.update(state)
        assert len(panel.row.children) == 3
        state.record.winner = 0
        state.apply(
            RunStarted(
                run_id="c0",
                candidate=0,
                question="q",
                context_info="",
                backend="b",
                model="m",
                environment="local",
            )
        )
        panel.update(state)
        assert [WINNER_CLASS in b._dom_classes for b in panel.row.children] == [True, False, False]
    finally:
        panel.dispose()


class FakeEngine:
    """Publishes a scripted event list from several worker threads, like SRLM does."""

    def __init__(self, events_per_worker: list[list[Event]], hold: bool = False) -> None:
        self.events = events_per_worker
        self.subscribers: list[Callable[[Event], None]] = []
        self.cancelled = threading.Event()
        self.hold = hold

    def subscribe(self, fn: Callable[[Event], None]) -> Callable[[], None]:
        self.subscribers.append(fn)
        return lambda: self.subscribers.remove(fn)

    def cancel(self) -> None:
        self.cancelled.set()

    def completion(self) -> RLMChatCompletion:
        def work(evs: list[Event]) -> None:
            for ev in evs:
                for fn in list(self.subscribers):
                    fn(ev)
                time.sleep(0.001)

        threads = [threading.Thread(target=work, args=(e,)) for e in self.events]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if self.hold:
            # Like a run blocked in a model call: only cancel() lets it go.
            assert self.cancelled.wait(10)
            raise KeyboardInterrupt
        return RLMChatCompletion(
            root_model="m", response="ok", usage_summary=UsageSummary(), execution_time=0.1
        )


class CountingView(NullView):
    def __init__(self, interrupt_after: int | None = None) -> None:
        self.updates = 0
        self.thread_ids: set[int] = set()
        self.interrupt_after = interrupt_after

    def update(self, state: PanelState, now: float | None = None) -> None:
        self.updates += 1
        self.thread_ids.add(threading.get_ident())
        state.take_dirty()
        if self.interrupt_after is not None and self.updates == self.interrupt_after:
            raise KeyboardInterrupt


def test_driver_applies_all_events_in_the_calling_thread() -> None:
    evs = [candidate_events(i, "a") for i in range(4)]
    engine = FakeEngine(evs)
    state = PanelState(kind="srlm", n_candidates=4)
    view = CountingView()
    outcome = run_with_view(engine, engine.completion, state, view, interval=0.01)
    assert outcome.completion is not None and outcome.error is None
    assert not outcome.cancelled
    assert [c.status for c in state.record.candidates] == ["done"] * 4
    assert view.thread_ids == {threading.get_ident()}
    assert engine.subscribers == []  # unsubscribed afterwards


def test_driver_interrupt_cancels_and_keeps_the_partial_state() -> None:
    evs = [candidate_events(i, "a")[:6] for i in range(2)]
    engine = FakeEngine(evs, hold=True)
    state = PanelState(kind="srlm", n_candidates=2)
    view = CountingView(interrupt_after=3)
    outcome = run_with_view(engine, engine.completion, state, view, interval=0.01)
    assert outcome.cancelled and engine.cancelled.is_set()
    assert isinstance(outcome.error, KeyboardInterrupt)
    assert not outcome.worker_alive
    assert all(c.status == "running" for c in state.record.candidates)


def test_driver_reports_engine_errors() -> None:
    class Broken(FakeEngine):
        def completion(self) -> RLMChatCompletion:
            for fn in list(self.subscribers):
                fn(IterationFinished(run_id="r", candidate=0, iteration=1, reply="x"))
            raise ConnectionError("refused")

    engine = Broken([])
    state = PanelState(kind="srlm", n_candidates=1)
    outcome = run_with_view(engine, engine.completion, state, NullView(), interval=0.01)
    assert isinstance(outcome.error, ConnectionError)
    assert len(state.record.candidates[0].steps) == 1


def test_a_broken_view_cancels_the_run_and_raises() -> None:
    class BrokenView(NullView):
        def update(self, state: PanelState, now: float | None = None) -> None:
            raise ValueError("display broke")

    engine = FakeEngine([candidate_events(0, "a")[:4]], hold=True)
    state = PanelState(kind="srlm", n_candidates=1)
    with pytest.raises(ValueError, match="display broke"):
        run_with_view(engine, engine.completion, state, BrokenView(), interval=0.01)
    assert engine.cancelled.is_set()
    assert engine.subscribers == []


def test_the_idle_clock_sends_about_one_update_per_second() -> None:
    """Long runs must not flood IOPub (front ends like nbval read it only afterwards)."""
    state = PanelState(kind="srlm", n_candidates=2)
    state.record.started_at = 1000.0
    panel = WidgetPanel()
    changes: list[object] = []
    try:
        panel.update(state, now=1000.0)
        for w in (panel.header, panel.clusters, *(c.title for c in panel.columns)):
            w.observe(changes.append, names="value")
        for tick in range(1, 126):  # 10 s of 80 ms ticks
            panel.update(state, now=1000.0 + tick * 0.08)
        assert 9 <= len(changes) <= 11
        changes.clear()
        for tick in range(1, 101):  # later, 100 s more: a tick every 5 s
            panel.update(state, now=1060.0 + tick)
        assert 19 <= len(changes) <= 21
    finally:
        panel.dispose()

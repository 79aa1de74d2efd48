"""The widget panel and the driver loop that feeds it from a queue (recorded events)."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from recorded import events, record

from lmrepl.events import CandidateFinished, Event, SearchFinished
from lmrepl.html import panel_html
from lmrepl.live import LiveState
from lmrepl.types import RLMChatCompletion, UsageSummary
from lmrepl_jupyter.driver import NullView, run_with_view
from lmrepl_jupyter.panel import COLUMN_CLASS, WINNER_CLASS, WidgetPanel


def _per_candidate(evs: list[Event]) -> list[list[Event]]:
    out: dict[int, list[Event]] = {}
    for e in evs:
        if e.candidate is not None:
            out.setdefault(e.candidate, []).append(e)
    return [out[i] for i in sorted(out)]


def test_widget_panel_after_a_search() -> None:
    state = LiveState(kind="srlm", question="q?", n_candidates=3)
    panel = WidgetPanel()
    try:
        panel.update(state)
        assert len(panel.row.children) == 3
        assert all("queued" in c.title.value for c in panel.columns)
        state.apply_all(events("srlm_search"))
        panel.update(state)
        boxes = panel.row.children
        assert len(boxes) == 3
        assert all(COLUMN_CLASS in b._dom_classes for b in boxes)
        assert [WINNER_CLASS in b._dom_classes for b in boxes] == [False, True, False]
        assert "3px solid" in boxes[1].layout.border
        titles = [c.title.value for c in panel.columns]
        assert ["done" in titles[0], "done" in titles[1], "failed" in titles[2]] == [True] * 3
        assert "★ winner" in titles[1]
        assert "2 sub-calls" in titles[0]
        assert "1 child RLM" in titles[0] and "1 child RLMs" not in titles[0]
        # Per step the code (highlighted), the output and the confidence.
        body = panel.columns[0].body.value
        assert "confidence 70" in body and "len" in body and "186" in body
        engine = record("srlm_search")
        clusters = panel.clusters.value
        assert "VC·Len" in clusters and f"{engine.candidates[1].score:.1f}" in clusters
        assert "done" in panel.header.value
        assert f"{engine.model_calls} model calls" in panel.header.value
    finally:
        panel.dispose()


def test_a_timeout_notice_shows_in_its_step() -> None:
    state = LiveState(kind="rlm")
    panel = WidgetPanel()
    try:
        state.apply_all(events("rlm_run"))
        panel.update(state)
        assert len(panel.columns) == 1
        body = panel.columns[0].body.value
        assert "timed out after 1.0 s" in body and "short" in body
        assert "★ winner" in panel.columns[0].title.value
    finally:
        panel.dispose()


def test_widget_panel_grows_with_new_candidates_and_moves_the_winner() -> None:
    state = LiveState(kind="srlm", n_candidates=1)
    panel = WidgetPanel()
    try:
        panel.update(state)
        evs = events("srlm_search")
        state.apply_all([e for e in evs if not isinstance(e, SearchFinished)])
        state.record.winner = 2
        panel.update(state)
        assert len(panel.row.children) == 3
        assert [WINNER_CLASS in b._dom_classes for b in panel.row.children] == [False, False, True]
        state.apply(evs[-1])  # the engine's record: candidate 1 won
        panel.update(state)
        assert [WINNER_CLASS in b._dom_classes for b in panel.row.children] == [False, True, False]
    finally:
        panel.dispose()


class FakeEngine:
    """Publishes recorded events from several worker threads, like SRLM does."""

    def __init__(self, events_per_worker: list[list[Event]], hold: bool = False) -> None:
        self.events = events_per_worker
        self.subscribers: list[Callable[[Event], None]] = []
        self.cancelled = threading.Event()
        self.hold = hold
        self.published = threading.Event()

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

        threads = [threading.Thread(target=work, args=(e,)) for e in self.events]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.published.set()
        if self.hold:
            # Like a run blocked in a model call: only cancel() lets it go.
            assert self.cancelled.wait(10)
            raise KeyboardInterrupt
        return RLMChatCompletion(
            root_model="m", response="ok", usage_summary=UsageSummary(), execution_time=0.1
        )


class CountingView(NullView):
    def __init__(self, interrupt_when: threading.Event | None = None) -> None:
        self.updates = 0
        self.thread_ids: set[int] = set()
        self.interrupt_when = interrupt_when

    def update(self, state: LiveState, now: float | None = None) -> None:
        self.updates += 1
        self.thread_ids.add(threading.get_ident())
        state.take_dirty()
        if self.interrupt_when is not None and self.interrupt_when.is_set():
            raise KeyboardInterrupt


def test_driver_applies_all_events_in_the_calling_thread() -> None:
    evs = events("srlm_search")
    engine = FakeEngine(_per_candidate(evs))
    state = LiveState(kind="srlm", n_candidates=3)
    view = CountingView()
    outcome = run_with_view(engine, engine.completion, state, view, interval=0.01)
    assert outcome.completion is not None and outcome.error is None
    assert not outcome.cancelled
    assert [c.status for c in state.record.candidates] == ["done", "done", "failed"]
    assert view.thread_ids == {threading.get_ident()}
    assert engine.subscribers == []  # unsubscribed afterwards


def test_driver_interrupt_cancels_and_keeps_the_partial_state() -> None:
    started = [
        [e for e in evs if not isinstance(e, CandidateFinished)][:6]
        for evs in _per_candidate(events("srlm_search"))[:2]
    ]
    engine = FakeEngine(started, hold=True)
    state = LiveState(kind="srlm", n_candidates=2)
    view = CountingView(interrupt_when=engine.published)
    outcome = run_with_view(engine, engine.completion, state, view, interval=0.01)
    assert outcome.cancelled and engine.cancelled.is_set()
    assert isinstance(outcome.error, KeyboardInterrupt)
    assert not outcome.worker_alive
    assert all(c.status == "running" for c in state.record.candidates)


def test_driver_reports_engine_errors() -> None:
    step = next(e for e in events("rlm_run") if e.kind == "iteration_finished")

    class Broken(FakeEngine):
        def completion(self) -> RLMChatCompletion:
            for fn in list(self.subscribers):
                fn(step.model_copy(update={"candidate": 0}))
            raise ConnectionError("refused")

    engine = Broken([])
    state = LiveState(kind="srlm", n_candidates=1)
    outcome = run_with_view(engine, engine.completion, state, NullView(), interval=0.01)
    assert isinstance(outcome.error, ConnectionError)
    assert outcome.completion is None


def test_a_broken_view_cancels_the_run_and_raises() -> None:
    class BrokenView(NullView):
        def update(self, state: LiveState, now: float | None = None) -> None:
            raise ValueError("display broke")

    engine = FakeEngine([_per_candidate(events("srlm_search"))[0][:4]], hold=True)
    state = LiveState(kind="srlm", n_candidates=1)
    with pytest.raises(ValueError, match="display broke"):
        run_with_view(engine, engine.completion, state, BrokenView(), interval=0.01)
    assert engine.cancelled.is_set()
    assert engine.subscribers == []


def test_the_idle_clock_sends_about_one_update_per_second() -> None:
    """Long runs must not flood IOPub (front ends like nbval read it only afterwards)."""
    state = LiveState(kind="srlm", n_candidates=2)
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


def test_finished_answers_show_a_grounding_badge() -> None:
    rec = record("srlm_search")
    rec.candidates[0].grounded, rec.candidates[1].grounded = False, True
    state = LiveState.from_record(rec)
    panel = WidgetPanel()
    try:
        panel.update(state)
        bodies = [c.body.value for c in panel.columns]
        assert 'class="lmrepl-grounding"' in bodies[0] and ">ungrounded</span>" in bodies[0]
        assert ">grounded</span>" in bodies[1]
        assert "lmrepl-grounding" not in bodies[2]  # failed: no answer, no badge
    finally:
        panel.dispose()
    # The static rendering (saved notebooks) shows the same badges.
    html = panel_html(state)
    assert html.count('class="lmrepl-grounding"') == 2

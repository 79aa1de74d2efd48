"""LiveState: the one reducer behind the terminal view and the panel, fed recorded logs."""

from __future__ import annotations

import queue
import threading

from recorded import events, record, until

from lmrepl.events import (
    CandidateFinished,
    CellStarted,
    Event,
    IterationStarted,
    RunFinished,
    RunStarted,
    SearchFinished,
)
from lmrepl.live import CLUSTERS, HEADER, LiveState
from lmrepl.records import RunRecord


def _same_run(built: RunRecord, engine: RunRecord) -> None:
    """The reducer rebuilt what the engine recorded for this trajectory."""
    assert built.run_id == engine.run_id
    assert built.steps == engine.steps
    assert built.subcalls == engine.subcalls
    assert (built.model_calls, built.input_tokens, built.output_tokens, built.cost) == (
        engine.model_calls,
        engine.input_tokens,
        engine.output_tokens,
        engine.cost,
    )
    assert [c.run_id for c in built.children] == [c.run_id for c in engine.children]
    for mine, theirs in zip(built.children, engine.children, strict=True):
        _same_run(mine, theirs)


def test_events_rebuild_the_engines_record_before_it_arrives() -> None:
    engine = record("srlm_search")
    evs = [
        e for e in events("srlm_search") if not isinstance(e, CandidateFinished | SearchFinished)
    ]
    state = LiveState()
    state.apply_all(evs)
    rec = state.record
    assert rec.kind == "srlm" and rec.mode == "rlm" and rec.n_candidates == 3
    assert (rec.backend, rec.model, rec.environment) == ("openai", "m", "kernel")
    for built, theirs in zip(rec.candidates, engine.candidates, strict=True):
        _same_run(built, theirs)
    # Child RLMs are under their parent, with their own steps.
    (child,) = rec.candidates[0].children
    assert child.depth == 1 and child.steps and child.answer == "42"
    assert rec.candidates[0].subcall_count() == 2 and rec.candidates[0].child_count() == 1
    assert (rec.model_calls, rec.input_tokens, rec.output_tokens) == (
        engine.model_calls,
        engine.input_tokens,
        engine.output_tokens,
    )


def test_the_engines_final_records_win() -> None:
    state = LiveState()
    state.record.config = {"variable": "doc"}
    state.apply_all(events("srlm_search"))
    engine = record("srlm_search")
    assert state.finished
    assert state.record.model_dump(exclude={"config"}) == engine.model_dump(exclude={"config"})
    assert state.record.config == {"variable": "doc"}  # the magic's own header survives
    assert state.record.candidates[1].score is not None and state.record.winner == 1


def test_running_state_before_the_end() -> None:
    evs = events("srlm_search")
    state = LiveState()
    state.apply_all(until(evs, CellStarted, candidate=0))
    rec = state.record
    assert rec.status == "running" and not state.finished
    assert [c.status for c in rec.candidates] == ["running", "queued", "queued"]
    assert state.running_code[0] == "n = len(context)\nprint(n)"
    assert state.activity(0) == "step 1: running code…"
    assert state.activity(1) is None  # still queued
    rest = evs[len(until(evs, CellStarted, candidate=0)) :]
    state.apply_all(until(rest, IterationStarted, candidate=1))
    assert state.activity(1) == "step 1: waiting for the model…"
    assert state.record.candidates[0].status == "done"  # its CandidateFinished came first


def test_dirty_parts_are_reported_once() -> None:
    state = LiveState(kind="srlm", n_candidates=2)
    assert state.take_dirty() == {HEADER, CLUSTERS, 0, 1}
    assert state.take_dirty() == set()
    first_run = next(e for e in events("srlm_search") if isinstance(e, RunStarted))
    state.apply(first_run)
    assert state.take_dirty() == {HEADER, 0}


def test_a_plain_rlm_run_is_candidate_zero() -> None:
    state = LiveState()
    state.apply_all(events("rlm_run"))
    rec, engine = state.record, record("rlm_run")
    assert rec.kind == "rlm" and len(rec.candidates) == 1
    cand = rec.candidates[0]
    assert cand.status == "done" and cand.answer == "done"
    assert rec.status == "done" and rec.answer == "done" and rec.winner == 0
    _same_run(cand, engine.candidates[0])
    assert cand.steps[0].notices[0].startswith("The cell timed out after 1.0 s")


def test_a_direct_answer_is_one_candidate() -> None:
    state = LiveState()
    state.apply_all(events("srlm_direct"))
    rec = state.record
    assert rec.mode == "direct" and rec.answer == "Forty-two."
    assert len(rec.candidates) == 1 and rec.candidates[0].model_calls == 1


def test_cancel_marks_unfinished_candidates() -> None:
    state = LiveState()
    state.apply_all(until(events("srlm_search"), CandidateFinished, candidate=0))
    state.finish("cancelled", error="cancelled by the user")
    rec = state.record
    assert rec.status == "cancelled" and rec.error == "cancelled by the user"
    assert [c.status for c in rec.candidates] == ["done", "cancelled", "cancelled"]
    assert all(v is None for v in state.running_code.values())


def test_events_put_from_many_threads_at_once() -> None:
    """Each candidate's events come from its own thread; one thread drains and reduces."""
    evs = events("srlm_search")
    per_candidate: dict[int, list[Event]] = {}
    for e in evs:
        if e.candidate is not None:
            per_candidate.setdefault(e.candidate, []).append(e)
    q: queue.Queue[Event] = queue.Queue()
    q.put(evs[0])  # SearchStarted
    start = threading.Barrier(len(per_candidate))

    def worker(mine: list[Event]) -> None:
        start.wait()
        for e in mine:
            q.put(e)

    threads = [threading.Thread(target=worker, args=(m,)) for m in per_candidate.values()]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    state = LiveState()
    while not q.empty():
        state.apply(q.get_nowait())
    engine = record("srlm_search")
    assert [c.status for c in state.record.candidates] == ["done", "done", "failed"]
    for built, theirs in zip(state.record.candidates, engine.candidates, strict=True):
        _same_run(built, theirs)


def test_a_finished_run_carries_its_grounding() -> None:
    state = LiveState()
    state.apply(
        RunStarted(
            run_id="r", question="q", context_info="", backend="b", model="m", environment="local"
        )
    )
    assert state.record.candidates[0].grounded is None
    state.apply(RunFinished(run_id="r", status="done", answer="25", grounded=False))
    cand = state.record.candidates[0]
    assert cand.answer == "25" and cand.grounded is False

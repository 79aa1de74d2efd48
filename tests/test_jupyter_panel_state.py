"""PanelState: the pure reducer behind the panel, fed hand-built event sequences."""

from __future__ import annotations

import queue
import threading

from lmrepl.events import (
    CandidateFinished,
    CandidateQueued,
    CellFinished,
    CellStarted,
    Event,
    IterationFinished,
    IterationStarted,
    ModelCallFinished,
    ModelCallStarted,
    RunFinished,
    RunStarted,
    SearchFinished,
    SearchStarted,
    SubcallStarted,
)
from lmrepl_jupyter.panel_state import CLUSTERS, HEADER, PanelState


def candidate_events(k: int, answer: str, conf: float = 80.0, t0: float = 100.0) -> list[Event]:
    """One candidate's root run: two steps, a sub-call with a child RLM, then done."""
    rid = f"c{k}"
    return [
        CandidateQueued(run_id=rid, candidate=k, time=t0),
        RunStarted(
            run_id=rid,
            candidate=k,
            question="q?",
            context_info="str of 11 chars",
            backend="openai",
            model="m",
            environment="local",
            time=t0 + 0.1,
        ),
        IterationStarted(run_id=rid, candidate=k, iteration=1, time=t0 + 0.2),
        ModelCallStarted(run_id=rid, candidate=k, call_id=f"{k}a", model="m", purpose="root"),
        ModelCallFinished(
            run_id=rid,
            candidate=k,
            call_id=f"{k}a",
            model="m",
            purpose="root",
            input_tokens=100,
            output_tokens=10,
        ),
        CellStarted(run_id=rid, candidate=k, iteration=1, index=0, code="print(len(context))"),
        SubcallStarted(
            run_id=rid,
            candidate=k,
            subcall_id=f"{k}s",
            function="rlm_query",
            model="m",
            prompt_preview="p",
        ),
        RunStarted(
            run_id=f"{rid}.child",
            depth=1,
            candidate=k,
            question="sub",
            context_info="",
            backend="openai",
            model="m",
            environment="local",
        ),
        IterationFinished(
            run_id=f"{rid}.child", depth=1, candidate=k, iteration=1, reply="child step"
        ),
        RunFinished(run_id=f"{rid}.child", depth=1, candidate=k, status="done", answer="sub"),
        CellFinished(
            run_id=rid,
            candidate=k,
            iteration=1,
            index=0,
            code="print(len(context))",
            output="11",
            status="timeout",
            notice="cell timed out after 1 s; variables kept",
        ),
        IterationFinished(
            run_id=rid,
            candidate=k,
            iteration=1,
            reply="r1",
            code_blocks=["print(len(context))"],
            outputs=["11"],
            confidence=conf,
        ),
        IterationFinished(
            run_id=rid,
            candidate=k,
            iteration=2,
            reply="r2",
            code_blocks=[f"FINAL({answer!r})"],
            outputs=[""],
            confidence=conf,
            submitted=True,
            answer=answer,
        ),
        RunFinished(run_id=rid, candidate=k, status="done", answer=answer, output_tokens=20),
        CandidateFinished(
            run_id=rid, candidate=k, status="done", answer=answer, vc=-0.4, length=20
        ),
    ]


def search_events(answers: list[str], winner: int) -> list[Event]:
    """A whole K-candidate search, candidates one after another."""
    k = len(answers)
    events: list[Event] = [
        SearchStarted(
            run_id="s", mode="rlm", n_candidates=k, candidate_parallel=k, question="q?", time=99.0
        )
    ]
    for i, a in enumerate(answers):
        events += candidate_events(i, a)
    clusters: dict[str, list[int]] = {}
    for i, a in enumerate(answers):
        clusters.setdefault(a, []).append(i)
    cl = [{"answer": a, "members": m, "votes": len(m)} for a, m in clusters.items()]
    metas = [
        {"index": i, "status": "done", "answer": a, "score": -8.0 - i, "cluster": 0}
        for i, a in enumerate(answers)
    ]
    events.append(
        SearchFinished(
            run_id="s",
            answer=answers[winner],
            winner=winner,
            clusters=cl,
            candidates=metas,
            execution_time=2.5,
            time=102.0,
        )
    )
    return events


def test_search_sequence_builds_candidates_steps_and_winner() -> None:
    state = PanelState(kind="srlm", question="q?", n_candidates=3)
    state.apply_all(search_events(["42", "42", "41"], winner=1))
    rec = state.record
    assert [c.status for c in rec.candidates] == ["done", "done", "done"]
    assert [c.answer for c in rec.candidates] == ["42", "42", "41"]
    # Depth-1 events are counted, never shown as steps.
    assert all(len(c.steps) == 2 for c in rec.candidates)
    assert all(c.subcalls == 1 and c.child_runs == 1 for c in rec.candidates)
    step = rec.candidates[0].steps[0]
    assert step.code == "print(len(context))"
    assert step.output == "11"
    assert step.confidence == 80.0
    assert step.notices == ["cell timed out after 1 s; variables kept"]
    assert rec.candidates[0].steps[1].submitted
    assert rec.winner == 1 and rec.answer == "42" and rec.status == "done"
    assert [c.votes for c in rec.clusters] == [2, 1]
    assert rec.candidates[2].score == -10.0
    assert rec.candidates[0].vc == -0.4 and rec.candidates[0].length == 20
    assert rec.model_calls == 3 and rec.input_tokens == 300 and rec.output_tokens == 30
    assert rec.model == "m" and rec.backend == "openai"
    assert rec.execution_time == 2.5
    assert state.elapsed() == 102.0 - 99.0
    assert state.finished


def test_running_state_before_the_end() -> None:
    state = PanelState(kind="srlm", n_candidates=2)
    evs = search_events(["a", "b"], winner=0)
    # Stop right after candidate 0's cell started.
    cut = next(i for i, e in enumerate(evs) if isinstance(e, CellStarted) and e.candidate == 0)
    state.apply_all(evs[: cut + 1])
    rec = state.record
    assert rec.status == "running"
    assert rec.candidates[0].status == "running"
    assert rec.candidates[1].status == "queued"
    assert state.running_code[0] == "print(len(context))"
    assert state.calls_in_flight == 0
    assert not state.finished
    assert state.activity(0) == "step 1: running code…"
    assert state.activity(1) is None  # still queued
    state.apply(IterationStarted(run_id="c1", candidate=1, iteration=1))
    state.apply(
        RunStarted(
            run_id="c1",
            candidate=1,
            question="q",
            context_info="",
            backend="b",
            model="m",
            environment="local",
        )
    )
    assert state.activity(1) == "step 1: waiting for the model…"


def test_dirty_parts_are_reported_once() -> None:
    state = PanelState(kind="srlm", n_candidates=2)
    assert state.take_dirty() == {HEADER, CLUSTERS, 0, 1}
    assert state.take_dirty() == set()
    state.apply(IterationStarted(run_id="c1", candidate=1, iteration=1))
    assert state.take_dirty() == {HEADER, 1}


def test_plain_rlm_run_is_column_zero() -> None:
    state = PanelState(kind="rlm", question="q")
    evs = [e.model_copy(update={"candidate": None}) for e in candidate_events(0, "x")]
    state.apply_all(evs)
    rec = state.record
    assert len(rec.candidates) == 1
    assert rec.candidates[0].status == "done" and rec.candidates[0].answer == "x"
    assert rec.status == "done" and rec.answer == "x" and rec.winner == 0
    assert len(rec.candidates[0].steps) == 2


def test_cancel_marks_unfinished_candidates() -> None:
    state = PanelState(kind="srlm", n_candidates=3)
    evs = search_events(["a", "b", "c"], winner=0)
    first_done = next(i for i, e in enumerate(evs) if isinstance(e, CandidateFinished))
    state.apply_all(evs[: first_done + 3])
    state.finish("cancelled", error="cancelled by the user")
    rec = state.record
    assert rec.status == "cancelled"
    assert [c.status for c in rec.candidates] == ["done", "cancelled", "cancelled"]
    assert all(v is None for v in state.running_code.values())


def test_metadata_overlay_fills_what_events_missed() -> None:
    state = PanelState(kind="srlm", n_candidates=2)
    state.merge_metadata(
        {
            "mode": "rlm",
            "winner": 1,
            "clusters": [{"answer": "7", "members": [0, 1], "votes": 2}],
            "candidates": [
                {
                    "index": i,
                    "status": "done",
                    "answer": "7",
                    "vc": -1.0,
                    "length": 30 + i,
                    "score": -30.0 - i,
                    "steps": [{"code": ["a = 1", "a"], "output": ["", "1"], "confidence": 50}],
                }
                for i in range(2)
            ],
        }
    )
    rec = state.record
    assert rec.winner == 1 and rec.clusters[0].members == [0, 1]
    assert rec.candidates[1].length == 31
    assert rec.candidates[0].steps[0].code == "a = 1\n\na"
    assert rec.candidates[0].steps[0].output == "1"


def test_events_put_from_eight_threads_at_once() -> None:
    """Eight candidates' workers put concurrently; one thread drains and reduces."""
    k = 8
    answers = [str(i % 3) for i in range(k)]
    q: queue.Queue[Event] = queue.Queue()
    start = threading.Barrier(k)

    def worker(i: int) -> None:
        start.wait()
        for ev in candidate_events(i, answers[i]):
            q.put(ev)

    q.put(SearchStarted(run_id="s", mode="rlm", n_candidates=k, candidate_parallel=k, question="q"))
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(k)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    state = PanelState(kind="srlm", n_candidates=k)
    n = 0
    while not q.empty():
        state.apply(q.get_nowait())
        n += 1
    rec = state.record
    assert n == 1 + k * len(candidate_events(0, "x"))
    assert len(rec.candidates) == k
    assert [c.status for c in rec.candidates] == ["done"] * k
    assert [c.answer for c in rec.candidates] == answers
    assert all(len(c.steps) == 2 and c.child_runs == 1 for c in rec.candidates)
    assert rec.model_calls == k and rec.input_tokens == 100 * k

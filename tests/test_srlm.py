"""SRLM end to end against the loopback server: candidates, selection, the record."""

from __future__ import annotations

import threading

import pytest
from engine_helpers import by_request_order, make_srlm, repl, turns

from lmrepl import AllCandidatesFailed
from lmrepl.events import CandidateFinished, Event, SearchFinished, SearchStarted
from lmrepl.testing import ScriptedReply, ScriptedRequest, ScriptedServer

SPEC_CANDIDATE_KEYS = {
    "index",
    "status",
    "answer",
    "cluster",
    "vc",
    "length",
    "score",
    "usage",
    "error",
    "steps",
}


def _by_candidate(answers: dict[str, str], confidences: dict[str, int]) -> object:
    """Each candidate finds its tag in its own REPL variable and answers from a table."""

    def responder(req: ScriptedRequest) -> str | ScriptedReply:
        if turns(req) == 0:
            return repl("import threading\ntag = threading.current_thread().name", confidence=80)
        # Candidates run one at a time, so the n-th second-turn request is candidate n's.
        with lock:
            n = counter[0]
            counter[0] += 1
        tag = order[n % len(order)]
        return repl(f"FINAL({answers[tag]!r})", confidence=confidences[tag])

    lock = threading.Lock()
    counter = [0]
    order = sorted(answers)
    return responder


def test_k4_disagreeing_candidates_majority_wins(scripted_server: ScriptedServer) -> None:
    scripted_server.script(
        responder=_by_candidate(  # type: ignore[arg-type]
            {"a": "1,000", "b": "1000.0", "c": "The answer is 1000", "d": "999"},
            {"a": 90, "b": 50, "c": 70, "d": 99},
        )
    )
    events: list[Event] = []
    srlm = make_srlm(
        scripted_server, n_candidates=4, candidate_parallel=1, confidence_elicitation=True
    )
    srlm.subscribe(events.append)
    result = srlm.completion("ctx", "how many?")
    meta = result.metadata
    assert meta["mode"] == "rlm"
    assert len(meta["candidates"]) == 4
    for cand in meta["candidates"]:
        assert set(cand) >= SPEC_CANDIDATE_KEYS
        assert cand["status"] == "done"
        assert all({"code", "output", "confidence"} <= set(s) for s in cand["steps"])
    big = max(meta["clusters"], key=lambda c: c["votes"])
    assert big["votes"] == 3
    winner = meta["candidates"][meta["winner"]]
    assert winner["index"] in big["members"]
    assert normalize(winner["answer"]) == "1000"
    # Highest VC·Len among survivors (closest to 0) won.
    survivors = [meta["candidates"][i] for i in big["members"]]
    assert winner["score"] == max(c["score"] for c in survivors)
    assert result.usage_summary.total_calls == 8
    assert sum(c["usage"]["total_calls"] for c in meta["candidates"]) == 8
    kinds = {type(e) for e in events}
    assert {SearchStarted, SearchFinished, CandidateFinished} <= kinds
    assert {e.candidate for e in events if e.candidate is not None} == {0, 1, 2, 3}


def normalize(text: str) -> str:
    from lmrepl.selection import normalize_answer

    return normalize_answer(text).replace("the answer is ", "")


def test_without_confidence_the_shortest_trace_wins(scripted_server: ScriptedServer) -> None:
    def responder(req: ScriptedRequest) -> str:
        # Candidate replies differ in length; all answer "x".
        pad = "# " + "pad " * (10 * (len(scripted_server.model_requests()) % 3))
        return repl(f"{pad}\nFINAL('x')")

    scripted_server.script(responder=responder)
    result = make_srlm(scripted_server, n_candidates=3, candidate_parallel=1).completion("c", "q")
    meta = result.metadata
    lengths = {c["index"]: c["length"] for c in meta["candidates"]}
    assert meta["winner"] == min(lengths, key=lambda i: (lengths[i], i))
    assert all(c["vc"] is None and c["score"] is None for c in meta["candidates"])


def test_a_grounded_answer_beats_shorter_guesses(scripted_server: ScriptedServer) -> None:
    # One vote each and no confidence: before grounding the shortest trace (a blind
    # guess) won. Candidate 1 computes its answer, in the longest trace.
    pad = "# " + "working " * 60
    replies = {
        1: repl("FINAL(81330)"),
        2: repl(f"{pad}\nn = context.count('E')\nFINAL(n)"),
        3: repl("FINAL(7)"),
    }
    scripted_server.script(responder=by_request_order(lambda n: replies[n]))
    srlm = make_srlm(scripted_server, n_candidates=3, candidate_parallel=1)
    result = srlm.completion("E E E", "How many E?")
    meta = result.metadata
    assert [c["grounded"] for c in meta["candidates"]] == [False, True, False]
    assert [c["votes"] for c in meta["clusters"]] == [1, 1, 1]
    lengths = [c["length"] for c in meta["candidates"]]
    assert lengths[1] == max(lengths)
    assert meta["winner"] == 1 and result.response == "3"
    assert meta["selection_reason"] == "grounded"


def test_a_failing_candidate_is_recorded_and_dropped(scripted_server: ScriptedServer) -> None:
    # Candidates run one at a time: the first one's requests (with its retry) all fail.
    scripted_server.script(
        responder=by_request_order(
            lambda n: ScriptedReply(status=500) if n <= 2 else repl("FINAL('ok')")
        )
    )
    srlm = make_srlm(scripted_server, n_candidates=3, candidate_parallel=1)
    meta = srlm.completion("c", "q").metadata
    statuses = [c["status"] for c in meta["candidates"]]
    assert statuses == ["failed", "done", "done"]
    assert "500" in meta["candidates"][0]["error"]
    assert meta["winner"] in (1, 2)
    assert 0 not in [m for cl in meta["clusters"] for m in cl["members"]]


def test_all_candidates_failing_raises_with_every_error(scripted_server: ScriptedServer) -> None:
    scripted_server.script(responder=lambda req: ScriptedReply(status=503))
    srlm = make_srlm(scripted_server, n_candidates=3, candidate_parallel=3)
    with pytest.raises(AllCandidatesFailed) as info:
        srlm.completion("c", "q")
    assert len(info.value.errors) == 3
    assert all("503" in e for e in info.value.errors)
    assert info.value.metadata["winner"] is None


def test_direct_routing_sends_the_question(scripted_server: ScriptedServer) -> None:
    scripted_server.script(["Paris"])
    srlm = make_srlm(scripted_server, direct_threshold=1000, n_candidates=4)
    result = srlm.completion("France's capital is Paris.", "What is the capital?")
    assert result.response == "Paris"
    assert result.metadata["mode"] == "direct"
    sent = scripted_server.model_requests()[0].messages[-1]["content"]
    assert "What is the capital?" in sent and "France's capital is Paris." in sent
    # Above the threshold the RLM path runs.
    scripted_server.script([repl("FINAL('p')")])
    long = make_srlm(scripted_server, direct_threshold=5).completion("a long context", "q")
    assert long.metadata["mode"] == "rlm"


def test_candidate_temperature_reaches_the_server(scripted_server: ScriptedServer) -> None:
    scripted_server.script(responder=lambda req: repl("FINAL('t')"))
    make_srlm(scripted_server, n_candidates=2, candidate_temperature=0.9).completion("c", "q")
    assert {r.temperature for r in scripted_server.model_requests()} == {0.9}


def test_candidates_run_in_parallel(scripted_server: ScriptedServer) -> None:
    # Every candidate's first request waits for the other three: only 4 at once pass.
    together = threading.Barrier(4, timeout=30)

    def respond(req: ScriptedRequest) -> str:
        if turns(req) == 0:
            together.wait()
        return repl("FINAL('p')")

    scripted_server.script(responder=respond)
    result = make_srlm(scripted_server, n_candidates=4, candidate_parallel=4).completion("c", "q")
    assert [c["status"] for c in result.metadata["candidates"]] == ["done"] * 4
    assert not together.broken


def test_early_stop_cancels_the_rest(scripted_server: ScriptedServer) -> None:
    # Three candidates agree; the fourth is stuck in a model call until the test ends.
    release = threading.Event()

    def by_order(n: int) -> str:
        if n <= 3:
            return repl("FINAL('agreed')")
        release.wait(60)
        return repl("x = 1")

    scripted_server.script(responder=by_request_order(by_order))
    srlm = make_srlm(
        scripted_server, n_candidates=4, candidate_parallel=4, early_stop=True, max_iterations=20
    )

    try:
        meta = srlm.completion("c", "q").metadata
        assert not release.is_set()  # it returned while the fourth call was still held
    finally:
        release.set()
    statuses = sorted(c["status"] for c in meta["candidates"])
    assert statuses == ["cancelled", "done", "done", "done"]
    assert meta["candidates"][meta["winner"]]["answer"] == "agreed"


def test_srlm_rejects_bad_arguments() -> None:
    from lmrepl import SRLM

    base = {"backend": "openai", "backend_kwargs": {"model_name": "m", "api_key": "k"}}
    for bad in (
        {"n_candidates": 0},
        {"candidate_parallel": 0},
        {"candidate_temperature": -1},
        {"direct_threshold": -3},
        {"persistent": True},
    ):
        with pytest.raises(ValueError):
            SRLM(**base, **bad)

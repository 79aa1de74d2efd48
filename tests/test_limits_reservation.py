"""Limits reserve before they spend, and one gate per run bounds sub-call requests.

Unit-level tests drive ``LimitGuard.admit`` directly; the rest make real requests to
the loopback ``ScriptedServer`` through ``ModelCaller`` or the whole engine. No test
measures time: a request that must wait is shown to wait because its thread is still
blocked while the request it waits for is held open.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from engine_helpers import is_root, make_rlm, make_srlm, repl, turns

from lmrepl import BudgetExceeded, RunCancelled, TokenLimitExceeded
from lmrepl.admission import (
    DEFAULT_OUTPUT_RESERVE,
    Admission,
    CellAbandoned,
    estimate_request_tokens,
)
from lmrepl.calls import ModelCaller, Publisher
from lmrepl.clients.base import Completion
from lmrepl.clients.openai import OpenAIClient
from lmrepl.events import EventBus
from lmrepl.limits import LimitGuard
from lmrepl.testing import ScriptedReply, ScriptedRequest, ScriptedServer, count_tokens
from lmrepl.usage import UsageTracker


def _completion(inp: int, out: int, cost: float | None = None) -> Completion:
    return Completion(text="r", model="m", input_tokens=inp, output_tokens=out, cost=cost)


def _in_thread(fn: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    """Run ``fn`` on a thread; the box gets its "value" or "error"."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, box


def _still_blocked(thread: threading.Thread) -> bool:
    # Waits a little for a thread that must not finish; a correct guard never lets it.
    thread.join(0.3)
    return thread.is_alive()


def _client(server: ScriptedServer, **kwargs: Any) -> OpenAIClient:
    return OpenAIClient("m", base_url=server.base_url, api_key="k", max_retries=0, **kwargs)


def _caller(client: OpenAIClient, guard: LimitGuard, usage: UsageTracker) -> ModelCaller:
    return ModelCaller(
        client, guard=guard, usage=usage, publish=Publisher(EventBus(), "r", 0, None)
    )


# -- the accounting ---------------------------------------------------------------------
def test_output_cap_is_cut_to_what_is_left_and_reservation_becomes_real_usage() -> None:
    usage = UsageTracker()
    guard = LimitGuard(usage, max_tokens=1000)
    first = guard.admit(300, None)
    # No cap of its own: it would reserve DEFAULT_OUTPUT_RESERVE, but only 700 are left.
    assert DEFAULT_OUTPUT_RESERVE > 700
    assert first.output_cap == 700
    assert guard.reserved() == (1000, 0.0)

    thread, box = _in_thread(lambda: guard.admit(300, None))
    # Everything is reserved: the second request waits for the first instead of
    # being refused or overshooting.
    assert _still_blocked(thread)
    first.settle(_completion(300, 50), usage)
    thread.join(10)
    second: Admission = box["value"]
    # 1000 - 350 used - 300 input estimate.
    assert second.output_cap == 350
    assert guard.reserved() == (650, 0.0)
    second.settle(_completion(300, 350), usage)
    assert guard.reserved() == (0, 0.0)
    assert usage.totals()[:2] == (600, 400)
    # The limit is reached exactly; the next request is refused.
    with pytest.raises(TokenLimitExceeded):
        guard.admit(1, 1)


def test_refused_when_the_input_alone_does_not_fit() -> None:
    usage = UsageTracker()
    guard = LimitGuard(usage, max_tokens=100)
    with pytest.raises(TokenLimitExceeded, match="max_tokens of 100"):
        guard.admit(100, 10)
    # A refused request reserves nothing.
    assert guard.reserved() == (0, 0.0)
    assert guard.admit(99, 10).output_cap == 1


def test_a_failed_request_releases_its_reservation_once() -> None:
    usage = UsageTracker()
    guard = LimitGuard(usage, max_tokens=1000)
    admission = guard.admit(100, 200)
    assert guard.reserved() == (300, 0.0)
    admission.release()
    admission.release()
    admission.settle(_completion(100, 200), usage)  # already ended: nothing recorded
    assert guard.reserved() == (0, 0.0)
    assert usage.totals() == (0, 0, 0.0)


def test_budget_reserves_priced_cost_and_cuts_the_output_cap() -> None:
    usage = UsageTracker()
    # USD 0.5 per input token, 0.25 per output token (exact in binary floating point).
    prices = {"input": 500_000.0, "output": 250_000.0}
    guard = LimitGuard(usage, max_budget=10.0)
    admission = guard.admit(4, 1000, prices)
    # 4 input tokens cost 2.0; 8.0 buys 32 output tokens.
    assert admission.output_cap == 32
    assert guard.reserved() == (36, 10.0)
    with pytest.raises(BudgetExceeded):
        LimitGuard(UsageTracker(), max_budget=1.0).admit(4, 10, prices)
    # Without known prices nothing can be reserved: the cap is the request's own.
    assert LimitGuard(UsageTracker(), max_budget=1.0).admit(4, 10, None).output_cap == 10


def test_derived_guards_share_reservations_and_the_gate() -> None:
    usage = UsageTracker()
    root = LimitGuard(usage, max_tokens=10_000, max_concurrent=2)
    a, b = root.derive(), root.derive().derive()
    held = [a.admit(10, 100, gated=True), b.admit(10, 100, gated=True)]
    assert root.reserved() == (220, 0.0)
    # Root requests (not gated) still pass while the gate is full.
    root.admit(10, 100).release()
    thread, box = _in_thread(lambda: root.admit(10, 100, gated=True))
    assert _still_blocked(thread)
    held[0].settle(_completion(10, 5), usage)
    thread.join(10)
    assert isinstance(box["value"], Admission)
    box["value"].release()
    held[1].release()
    assert root.reserved() == (0, 0.0)


def test_a_waiting_request_gives_up_when_its_cell_ends_or_the_run_is_cancelled() -> None:
    guard = LimitGuard(UsageTracker(), max_concurrent=1)
    slot = guard.admit(1, None, gated=True)
    alive = threading.Event()
    alive.set()
    thread, box = _in_thread(lambda: guard.admit(1, None, gated=True, alive=alive))
    assert _still_blocked(thread)
    alive.clear()
    thread.join(10)
    assert isinstance(box["error"], CellAbandoned)

    thread, box = _in_thread(lambda: guard.derive().admit(1, None, gated=True))
    assert _still_blocked(thread)
    guard.cancel()
    thread.join(10)
    assert isinstance(box["error"], RunCancelled)
    slot.release()


def test_estimate_is_at_least_the_scripted_servers_honest_count() -> None:
    messages = [
        {"role": "system", "content": "s" * 1001},
        {"role": "user", "content": "u" * 7},
        {"role": "assistant", "content": ""},
    ]
    server_count = count_tokens("\n".join(m["content"] for m in messages))
    assert estimate_request_tokens(messages) >= server_count


# -- through ModelCaller and a real server ------------------------------------------------
def test_model_caller_sends_the_cap_that_fits(scripted_server: ScriptedServer) -> None:
    usage = UsageTracker()
    guard = LimitGuard(usage, max_tokens=500)
    caller = _caller(_client(scripted_server), guard, usage)
    messages = [{"role": "user", "content": "q" * 400}]
    completion = caller(messages, purpose="subcall")
    (request,) = scripted_server.model_requests()
    assert request.body["max_tokens"] == 500 - estimate_request_tokens(messages)
    # The reservation was replaced by what the server reported.
    assert guard.reserved() == (0, 0.0)
    assert usage.totals()[:2] == (completion.input_tokens, completion.output_tokens)
    assert completion.input_tokens == count_tokens("q" * 400)


def test_no_limits_no_cap_sent(scripted_server: ScriptedServer) -> None:
    usage = UsageTracker()
    caller = _caller(_client(scripted_server), LimitGuard(usage), usage)
    caller([{"role": "user", "content": "hi"}], purpose="root")
    assert "max_tokens" not in scripted_server.model_requests()[0].body


def test_forty_concurrent_calls_stay_within_max_tokens_and_the_gate(
    scripted_server: ScriptedServer,
) -> None:
    held = [0]
    lock = threading.Lock()

    def responder(req: ScriptedRequest) -> str:
        with lock:
            held[0] += 1
            first = held[0] <= 4
        if first:  # a fifth request let through would show in the peak
            scripted_server.hold_at_peak(4)
        return "ok"

    scripted_server.script(responder=responder)
    usage = UsageTracker()
    limit = 3000
    guard = LimitGuard(usage, max_tokens=limit, max_concurrent=4)
    # A 10-token output cap: ~9 requests fit the tokens at once, so only the gate
    # keeps them to 4.
    client = _client(scripted_server, default_extra_body={"max_tokens": 10})
    caller = _caller(client, guard, usage)
    prompt = "p" * 1200  # ~300 tokens in, 1 out: 40 of them would use ~12,000

    def one() -> str:
        try:
            return caller([{"role": "user", "content": prompt}], purpose="subcall").text
        except TokenLimitExceeded as exc:
            return f"refused: {exc}"

    threads = [_in_thread(one) for _ in range(40)]
    for thread, _ in threads:
        thread.join(60)
    results = [box["value"] for _, box in threads]
    answered = [r for r in results if r == "ok"]
    assert answered and len(answered) < 40
    assert all(r.startswith("refused: max_tokens") for r in results if r != "ok")
    inp, out, _ = usage.totals()
    assert inp + out <= limit
    assert len(scripted_server.model_requests()) == len(answered)
    assert scripted_server.peak_concurrency == 4


def test_priced_budget_holds_under_concurrency(scripted_server: ScriptedServer) -> None:
    usage = UsageTracker()
    budget = 0.05
    guard = LimitGuard(usage, max_budget=budget, max_concurrent=8)
    # USD 10 / USD 20 per million tokens; each call ~100 input tokens, 1 output.
    client = _client(scripted_server, prices={"input": 10.0, "output": 20.0})
    caller = _caller(client, guard, usage)

    def one() -> str:
        try:
            return caller([{"role": "user", "content": "c" * 400}], purpose="subcall").text
        except BudgetExceeded:
            return "refused"

    threads = [_in_thread(one) for _ in range(100)]
    for thread, _ in threads:
        thread.join(60)
    results = [box["value"] for _, box in threads]
    assert "ok" in results and "refused" in results
    assert usage.totals()[2] <= budget
    # Every request carried an output cap that kept its worst case within the budget.
    assert all("max_tokens" in r.body for r in scripted_server.model_requests())


# -- the gate through the engine -------------------------------------------------------
def _is_child_root(req: ScriptedRequest) -> bool:
    return is_root(req) and "helper working" in str(req.messages[0].get("content"))


def _subcall_request(req: ScriptedRequest) -> bool:
    """Every request but the top-level trajectories' own (sub-calls, child RLMs)."""
    return not is_root(req) or _is_child_root(req)


def test_rlm_query_waiting_for_its_child_holds_no_slot(scripted_server: ScriptedServer) -> None:
    """With one slot, a child's own requests still run while its parent waits for it."""

    def responder(req: ScriptedRequest) -> str:
        if _is_child_root(req):
            if turns(req) == 0:
                return repl("r = llm_query_batched(['a', 'b', 'c'])\nFINAL('child:' + r[2])")
            return repl("FINAL('x')")
        if is_root(req):
            return [repl("print(rlm_query('sub task'))"), repl("FINAL('done')")][turns(req)]
        return "leaf"

    server = ScriptedServer(responder=responder, concurrency_filter=_subcall_request).start()
    try:
        result = make_rlm(server, max_concurrent_subcalls=1, max_depth=2).completion("c", "q")
        shown = [r for r in server.model_requests() if is_root(r) and turns(r) == 1]
        assert result.response == "done"
        assert "child:leaf" in str(shown[0].messages[-1]["content"])
        assert server.peak_concurrency == 1
    finally:
        server.stop()


def test_one_gate_for_all_srlm_candidates() -> None:
    """``max_concurrent_subcalls`` bounds the sub-calls of all candidates together."""

    def responder(req: ScriptedRequest) -> str:
        if is_root(req):
            code = "r = llm_query_batched([str(i) for i in range(6)])\nFINAL('ok')"
            return repl(code) if turns(req) == 0 else repl("FINAL('ok')")
        return "leaf"

    server = ScriptedServer(responder=responder, latency=0.02, concurrency_filter=_subcall_request)
    server.start()
    try:
        srlm = make_srlm(server, n_candidates=3, candidate_parallel=3, max_concurrent_subcalls=2)
        assert srlm.completion("c", "q").response == "ok"
        subcalls = [r for r in server.model_requests() if not is_root(r)]
        assert len(subcalls) == 18
        assert 1 <= server.peak_concurrency <= 2
    finally:
        server.stop()


def test_reported_cost_without_prices_is_checked_between_calls(
    scripted_server: ScriptedServer,
) -> None:
    """No prices known: nothing to reserve, the budget stops the run after the fact."""
    scripted_server.script(
        responder=lambda req: ScriptedReply(text=repl("y = 1"), usage={"cost": 0.4})
    )
    with pytest.raises(BudgetExceeded):
        make_rlm(scripted_server, max_budget=1.0).completion("c", "q")
    assert "max_tokens" not in scripted_server.model_requests()[0].body

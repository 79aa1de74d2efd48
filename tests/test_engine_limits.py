"""Hard, global limits and what a stopped run hands back."""

from __future__ import annotations

import threading
import time

import pytest
from engine_helpers import is_root, make_rlm, repl, turns

from lmrepl import (
    BudgetExceeded,
    ErrorLimitExceeded,
    RunCancelled,
    TimeoutExceeded,
    TokenLimitExceeded,
)
from lmrepl.testing import ScriptedReply, ScriptedRequest, ScriptedServer


def test_max_tokens_counts_children_and_keeps_the_draft(scripted_server: ScriptedServer) -> None:
    def responder(req: ScriptedRequest) -> str | ScriptedReply:
        if "helper working" in req.messages[0]["content"]:
            return ScriptedReply(
                text=repl("FINAL('child')"),
                usage={"prompt_tokens": 5000, "completion_tokens": 10, "total_tokens": 5010},
            )
        return [
            repl("answer['content'] = 'draft-1'\nr = rlm_query('t')"),
            repl("x = 1"),
            repl("FINAL('never')"),
        ][turns(req)]

    scripted_server.script(responder=responder)
    rlm = make_rlm(scripted_server, max_tokens=3000)
    with pytest.raises(TokenLimitExceeded) as info:
        rlm.completion("c", "q")
    exc = info.value
    assert exc.partial_answer == "draft-1"
    assert exc.usage.total_input_tokens >= 5000
    assert exc.metadata["status"] == "stopped"
    assert rlm.last_partial is not None and rlm.last_partial.response == "draft-1"


def test_max_budget_uses_reported_cost(scripted_server: ScriptedServer) -> None:
    scripted_server.script(
        responder=lambda req: ScriptedReply(text=repl("y = 1"), usage={"cost": 0.4})
    )
    with pytest.raises(BudgetExceeded) as info:
        make_rlm(scripted_server, max_budget=1.0).completion("c", "q")
    assert info.value.usage.total_cost == pytest.approx(1.2)


def test_max_timeout_interrupts_a_slow_model_call(scripted_server: ScriptedServer) -> None:
    scripted_server.script(
        responder=lambda req: ScriptedReply(text=repl("z = 1"), delay=0.0 if turns(req) == 0 else 5)
    )
    started = time.perf_counter()
    with pytest.raises(TimeoutExceeded):
        make_rlm(scripted_server, max_timeout=0.8).completion("c", "q")
    assert time.perf_counter() - started < 3.0


def test_max_timeout_interrupts_a_running_cell(scripted_server: ScriptedServer) -> None:
    scripted_server.script(
        [repl("import time\nanswer['content'] = 'p'\ntime.sleep(20)"), repl("x=1")]
    )
    started = time.perf_counter()
    with pytest.raises(TimeoutExceeded) as info:
        make_rlm(scripted_server, max_timeout=1.0).completion("c", "q")
    assert time.perf_counter() - started < 4.0
    assert info.value.partial_answer == "p"


def test_max_errors_stops_after_consecutive_failures(scripted_server: ScriptedServer) -> None:
    scripted_server.script(responder=lambda req: repl("1/0"))
    with pytest.raises(ErrorLimitExceeded):
        make_rlm(scripted_server, max_errors=3).completion("c", "q")
    assert len(scripted_server.model_requests()) == 3


def test_cancel_from_another_thread(scripted_server: ScriptedServer) -> None:
    scripted_server.script(responder=lambda req: ScriptedReply(text=repl("x=1"), delay=0.2))
    rlm = make_rlm(scripted_server, max_iterations=50)
    threading.Timer(0.5, rlm.cancel).start()
    started = time.perf_counter()
    with pytest.raises(RunCancelled):
        rlm.completion("c", "q")
    assert time.perf_counter() - started < 2.0


def test_model_api_error_names_backend_model_and_status(scripted_server: ScriptedServer) -> None:
    from lmrepl import BackendError

    scripted_server.script(responder=lambda req: ScriptedReply(status=503))
    with pytest.raises(BackendError) as info:
        make_rlm(scripted_server).completion("c", "q")
    text = str(info.value)
    assert "openai" in text and "'m'" in text and "503" in text


def test_limits_reach_sub_calls_in_a_batch(scripted_server: ScriptedServer) -> None:
    def responder(req: ScriptedRequest) -> str | ScriptedReply:
        if is_root(req):
            return [repl("out = llm_query_batched(['a'] * 20)"), repl("FINAL(out[-1])")][turns(req)]
        return ScriptedReply(text="x", usage={"prompt_tokens": 400, "completion_tokens": 1})

    scripted_server.script(responder=responder)
    with pytest.raises(TokenLimitExceeded):
        make_rlm(scripted_server, max_tokens=2000, max_concurrent_subcalls=2).completion("c", "q")
    # The batch stopped early instead of spending all 20 calls.
    assert len(scripted_server.model_requests()) < 15


@pytest.mark.parametrize("environment", ["local", "kernel"])
def test_cancel_interrupts_a_running_cell(
    scripted_server: ScriptedServer, environment: str
) -> None:
    scripted_server.script([repl("import time\nfor _ in range(600):\n    time.sleep(0.05)")])
    rlm = make_rlm(scripted_server, environment=environment)
    timer = threading.Timer(1.5, rlm.cancel)
    timer.start()
    started = time.perf_counter()
    with pytest.raises(RunCancelled):
        rlm.completion("c", "q")
    timer.join()
    assert time.perf_counter() - started < 8.0

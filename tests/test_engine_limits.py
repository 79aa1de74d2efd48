"""Hard, global limits and what a stopped run hands back, on both REPLs.

No test here measures time: a limit or a cancel is shown to have interrupted a model
call or a cell because that call or cell was still held (or still running) when the
run stopped; pytest-timeout is the only clock.
"""

from __future__ import annotations

import threading

import pytest
from engine_helpers import is_root, make_rlm, repl, turns, warm_kernel

from lmrepl import (
    BudgetExceeded,
    ErrorLimitExceeded,
    RunCancelled,
    TimeoutExceeded,
    TokenLimitExceeded,
)
from lmrepl.testing import ScriptedReply, ScriptedRequest, ScriptedServer

# A cell that drafts an answer, then works for 30 s unless interrupted; were it not
# interrupted, the draft would read "finished".
SLOW_CELL = (
    "import time\nanswer['content'] = 'p'\n{signal}"
    "for _ in range(600):\n    time.sleep(0.05)\nanswer['content'] = 'finished'"
)


class HeldCall:
    """A responder whose chosen root turn blocks until released (or 60 s pass)."""

    def __init__(self, held_turn: int) -> None:
        self.held_turn = held_turn
        self.entered = threading.Event()
        self.returned = threading.Event()
        self.release = threading.Event()

    def __call__(self, req: ScriptedRequest) -> str:
        if turns(req) < self.held_turn:
            return repl("z = 1")
        self.entered.set()
        self.release.wait(60)
        self.returned.set()
        return repl("FINAL('too late')")


def test_max_tokens_counts_children_and_keeps_the_draft(
    scripted_server: ScriptedServer, environment: str
) -> None:
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
    rlm = make_rlm(scripted_server, environment=environment, max_tokens=3000, max_depth=2)
    with pytest.raises(TokenLimitExceeded) as info:
        rlm.completion("c", "q")
    exc = info.value
    assert exc.partial_answer == "draft-1"
    assert exc.usage.total_input_tokens >= 5000
    assert exc.metadata["status"] == "stopped"
    assert rlm.last_partial is not None and rlm.last_partial.response == "draft-1"


def test_max_budget_uses_reported_cost(scripted_server: ScriptedServer, environment: str) -> None:
    scripted_server.script(
        responder=lambda req: ScriptedReply(text=repl("y = 1"), usage={"cost": 0.4})
    )
    with pytest.raises(BudgetExceeded) as info:
        make_rlm(scripted_server, environment=environment, max_budget=1.0).completion("c", "q")
    assert info.value.usage.total_cost == pytest.approx(1.2)


def test_max_timeout_interrupts_a_slow_model_call(
    scripted_server: ScriptedServer, environment: str
) -> None:
    held = HeldCall(held_turn=1)
    scripted_server.script(responder=held)
    warm_kernel(environment)
    try:
        with pytest.raises(TimeoutExceeded):
            make_rlm(scripted_server, environment=environment, max_timeout=2.0).completion("c", "q")
        # The run stopped inside the held model call, without waiting for its reply.
        assert held.entered.is_set()
        assert not held.returned.is_set()
    finally:
        held.release.set()


def test_max_timeout_interrupts_a_running_cell(
    scripted_server: ScriptedServer, environment: str
) -> None:
    scripted_server.script([repl(SLOW_CELL.format(signal="")), repl("x=1")])
    warm_kernel(environment)
    with pytest.raises(TimeoutExceeded) as info:
        make_rlm(scripted_server, environment=environment, max_timeout=2.0).completion("c", "q")
    # The cell started (its draft is kept) and was stopped before the end of its loop.
    assert info.value.partial_answer == "p"
    assert len(scripted_server.model_requests()) == 1


def test_max_errors_stops_after_consecutive_failures(
    scripted_server: ScriptedServer, environment: str
) -> None:
    scripted_server.script(responder=lambda req: repl("1/0"))
    with pytest.raises(ErrorLimitExceeded):
        make_rlm(scripted_server, environment=environment, max_errors=3).completion("c", "q")
    assert len(scripted_server.model_requests()) == 3


def test_cancel_from_another_thread(scripted_server: ScriptedServer, environment: str) -> None:
    held = HeldCall(held_turn=1)
    scripted_server.script(responder=held)
    rlm = make_rlm(scripted_server, environment=environment, max_iterations=50)

    def cancel_when_held() -> None:
        if held.entered.wait(60):
            rlm.cancel()

    canceller = threading.Thread(target=cancel_when_held)
    canceller.start()
    try:
        with pytest.raises(RunCancelled) as info:
            rlm.completion("c", "q")
        # The cancel cut the held model call short: it has not answered yet.
        assert not held.returned.is_set()
        assert info.value.metadata["status"] == "cancelled"
    finally:
        held.release.set()
        canceller.join(60)
    assert len(scripted_server.model_requests()) == 2


def test_model_api_error_names_backend_model_and_status(
    scripted_server: ScriptedServer, environment: str
) -> None:
    from lmrepl import BackendError

    scripted_server.script(responder=lambda req: ScriptedReply(status=503))
    with pytest.raises(BackendError) as info:
        make_rlm(scripted_server, environment=environment).completion("c", "q")
    text = str(info.value)
    assert "openai" in text and "'m'" in text and "503" in text


def test_limits_reach_sub_calls_in_a_batch(
    scripted_server: ScriptedServer, environment: str
) -> None:
    def responder(req: ScriptedRequest) -> str | ScriptedReply:
        if is_root(req):
            return [repl("out = llm_query_batched(['a'] * 20)"), repl("FINAL(out[-1])")][turns(req)]
        return ScriptedReply(text="x", usage={"prompt_tokens": 400, "completion_tokens": 1})

    scripted_server.script(responder=responder)
    rlm = make_rlm(
        scripted_server, environment=environment, max_tokens=2000, max_concurrent_subcalls=2
    )
    with pytest.raises(TokenLimitExceeded):
        rlm.completion("c", "q")
    # The batch stopped early instead of spending all 20 calls.
    assert len(scripted_server.model_requests()) < 15


def test_cancel_interrupts_a_running_cell(
    scripted_server: ScriptedServer, environment: str
) -> None:
    started = threading.Event()
    scripted_server.script([repl(SLOW_CELL.format(signal="started()\n"))])
    rlm = make_rlm(
        scripted_server,
        environment=environment,
        custom_tools={"started": {"tool": started.set, "description": "say the cell runs"}},
    )

    def cancel_once_running() -> None:
        if started.wait(60):
            rlm.cancel()

    canceller = threading.Thread(target=cancel_once_running)
    canceller.start()
    try:
        with pytest.raises(RunCancelled) as info:
            rlm.completion("c", "q")
    finally:
        canceller.join(60)
    assert started.is_set()
    # Stopped in the middle of its loop: the draft was never overwritten by "finished".
    assert info.value.partial_answer == "p"

"""Honest stops: ``max_iterations`` counts every model turn, a forced answer says so, and
Ctrl-C raises the same ``RunCancelled`` as ``cancel()``, with the partial result."""

from __future__ import annotations

import io
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from engine_helpers import is_root, last_user, make_rlm, make_srlm, repl, turns
from rich.console import Console

from lmrepl import LimitExceeded, RunCancelled
from lmrepl.errors import RunInterrupted
from lmrepl.prompts import FINAL_REQUEST
from lmrepl.testing import ScriptedRequest, ScriptedServer


def _explorer(req: ScriptedRequest) -> str:
    """A model that explores and never submits, then answers in prose when asked to."""
    if FINAL_REQUEST in last_user(req):
        return "The answer is 7."
    return repl(f"print({turns(req) + 1} * 100)")


@pytest.mark.parametrize("limit", [1, 3])
def test_max_iterations_counts_every_turn_and_marks_the_forced_answer(
    scripted_server: ScriptedServer, environment: str, limit: int
) -> None:
    scripted_server.script(responder=_explorer)
    rlm = make_rlm(scripted_server, environment=environment, max_iterations=limit)
    res = rlm.completion("ctx", root_prompt="q")
    roots = [r for r in scripted_server.model_requests() if is_root(r)]
    assert len(roots) == limit  # the final-answer request is one of the turns
    assert FINAL_REQUEST in last_user(roots[-1])
    assert all(FINAL_REQUEST not in last_user(r) for r in roots[:-1])
    assert res.response == "The answer is 7."
    assert res.metadata["stop_reason"] == "max_iterations"
    assert res.metadata["iterations"] == limit
    assert res.record is not None and res.record.stop_reason == "max_iterations"
    assert res.record.status == "done"
    last = res.metadata["steps"][-1]
    assert any("Forced final answer (max_iterations)" in n for n in last["notices"])


def test_an_answer_the_model_submits_itself_is_answered(
    scripted_server: ScriptedServer,
) -> None:
    scripted_server.script(replies=[repl("x = 6 * 7"), repl("FINAL_VAR('x')")])
    res = make_rlm(scripted_server, max_iterations=5).completion("ctx", root_prompt="q")
    assert res.response == "42"
    assert res.metadata["stop_reason"] == "answered"
    assert len(scripted_server.model_requests()) == 2


def test_repeated_code_forces_the_answer_early_and_says_why(
    scripted_server: ScriptedServer,
) -> None:
    def responder(req: ScriptedRequest) -> str:
        if "this is your last step" in last_user(req):
            return "FINAL(5)"
        return repl("print(5)")

    scripted_server.script(responder=responder)
    res = make_rlm(scripted_server, max_iterations=10).completion("ctx", root_prompt="q")
    assert res.response == "5"
    assert res.metadata["stop_reason"] == "stuck"
    assert len(scripted_server.model_requests()) == 3  # two same steps, then the forced turn


def test_a_hard_limit_is_stop_reason_limit(scripted_server: ScriptedServer) -> None:
    scripted_server.script(responder=_explorer)
    rlm = make_rlm(scripted_server, max_tokens=40, max_iterations=30)
    with pytest.raises(LimitExceeded) as info:
        rlm.completion("ctx", root_prompt="q")
    assert info.value.record is not None
    assert info.value.record.stop_reason == "limit"
    assert info.value.metadata["stop_reason"] == "limit"


def test_cancel_from_another_thread_is_stop_reason_cancelled(
    scripted_server: ScriptedServer,
) -> None:
    started = threading.Event()

    def responder(req: ScriptedRequest) -> str:
        started.set()
        return repl(f"import time\ntime.sleep(0.2)\nprint({turns(req)})")

    scripted_server.script(responder=responder)
    rlm = make_rlm(scripted_server, max_iterations=100)
    threading.Thread(target=lambda: (started.wait(30), time.sleep(0.5), rlm.cancel())).start()
    with pytest.raises(RunCancelled) as info:
        rlm.completion("ctx", root_prompt="q")
    assert not isinstance(info.value, RunInterrupted)
    assert info.value.metadata["stop_reason"] == "cancelled"
    assert info.value.usage.total_calls >= 1


def test_srlm_forced_answers_mark_the_search_and_cancel_raises_run_cancelled(
    scripted_server: ScriptedServer,
) -> None:
    scripted_server.script(responder=_explorer)
    res = make_srlm(scripted_server, n_candidates=2, max_iterations=2).completion(
        "ctx", root_prompt="q"
    )
    assert res.response == "The answer is 7."
    assert res.metadata["stop_reason"] == "max_iterations"
    assert {c["stop_reason"] for c in res.metadata["candidates"]} == {"max_iterations"}

    started = threading.Event()

    def slow(req: ScriptedRequest) -> str:
        started.set()
        return repl(f"import time\ntime.sleep(0.2)\nprint({turns(req)})")

    scripted_server.script(responder=slow)
    srlm = make_srlm(scripted_server, n_candidates=2, candidate_parallel=2, max_iterations=100)
    threading.Thread(target=lambda: (started.wait(30), time.sleep(0.5), srlm.cancel())).start()
    with pytest.raises(RunCancelled) as info:
        srlm.completion("ctx", root_prompt="q")
    assert info.value.metadata["status"] == "cancelled"
    assert info.value.metadata["stop_reason"] == "cancelled"


# Ctrl-C: the cell sends its host SIGINT once the model has drafted an answer (the host's
# pid is the context), so no fixed sleep orders the events.
CTRL_C = textwrap.dedent(
    """
    import os, signal, sys
    signal.signal(signal.SIGINT, signal.default_int_handler)
    from lmrepl import RLM, SRLM, RunCancelled
    from lmrepl.testing import ScriptedServer

    code = ("answer['content'] = 'half-way'\\nimport os, signal, time\\n"
            "os.kill(int(context), signal.SIGINT)\\nwhile True: time.sleep(0.05)")
    with ScriptedServer(replies=["```repl\\n" + code + "\\n```"] * 4) as srv:
        kind = RLM if sys.argv[1] == "rlm" else SRLM
        extra = {} if sys.argv[1] == "rlm" else {"n_candidates": 1}
        rlm = kind(backend="openai",
                   backend_kwargs={"model_name": "m", "base_url": srv.base_url, "api_key": "x"},
                   environment="kernel", environment_kwargs={"sandbox": "none"}, **extra)
        try:
            rlm.completion(str(os.getpid()), "q")
            print("NOT INTERRUPTED")
        except RunCancelled as exc:
            print("CLASS", type(exc).__name__, isinstance(exc, KeyboardInterrupt))
            print("PARTIAL", exc.partial_answer)
            print("CALLS", exc.usage.total_calls)
            print("STOP", exc.metadata["stop_reason"], exc.record.stop_reason)
    """
)


@pytest.mark.parametrize("kind", ["rlm", "srlm"])
def test_ctrl_c_raises_run_cancelled_with_the_partial_result(kind: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", CTRL_C, kind],
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = proc.stdout + proc.stderr
    assert "CLASS RunInterrupted True" in out, out
    assert "PARTIAL half-way" in out, out
    assert "CALLS 1" in out, out
    assert "STOP cancelled cancelled" in out, out


def test_a_forced_answer_is_marked_in_the_terminal_the_panel_and_the_views(
    scripted_server: ScriptedServer, tmp_path: Path
) -> None:
    from lmrepl import RLMLogger
    from lmrepl.html import panel_html
    from lmrepl.live import LiveState
    from lmrepl.progress import TerminalProgress
    from lmrepl.view import write_html

    scripted_server.script(responder=_explorer)
    buf = io.StringIO()
    progress = TerminalProgress(console=Console(file=buf, width=160, color_system=None))
    rlm = make_rlm(scripted_server, max_iterations=2, logger=RLMLogger(str(tmp_path)))
    rlm.subscribe(progress)
    res = rlm.completion("ctx", root_prompt="q")
    progress.close()
    assert "done (forced: max_iterations) after" in buf.getvalue()
    assert res.record is not None
    html = panel_html(LiveState.from_record(res.record))
    assert html.count('class="lmrepl-stop"') == 2  # the header and the candidate
    assert "forced answer: the last of max_iterations turns" in html
    # The static page, from the saved record and from the event log alike.
    saved = res.record.save(tmp_path / "run.json")
    (log,) = tmp_path.glob("*.jsonl")
    for source in (saved, log):
        page = write_html(source, tmp_path / f"{source.stem}.html").read_text()
        assert 'class="lmrepl-stop"' in page, source
    # A forced turn that gave no answer is named for what it was, not "forced".
    scripted_server.script(replies=[repl("x = 1"), ""])
    empty = make_rlm(scripted_server, max_iterations=2).completion("ctx", root_prompt="q")
    assert empty.record is not None and empty.record.stop_reason == "max_iterations"
    html = panel_html(LiveState.from_record(empty.record))
    assert ">max iterations</span>" in html and ">forced</span>" not in html
    # An answer the model submitted itself shows no such mark.
    scripted_server.script(replies=[repl("FINAL(3)")])
    plain = make_rlm(scripted_server).completion("ctx", root_prompt="q")
    assert plain.record is not None
    assert "lmrepl-stop" not in panel_html(LiveState.from_record(plain.record))

"""Submission hygiene and grounding through the real engine (scripted model server)."""

from __future__ import annotations

import pytest
from engine_helpers import last_user, make_rlm, make_srlm, repl

from lmrepl.errors import ConfigurationError
from lmrepl.events import Event, RunFinished
from lmrepl.prompts import describe_context
from lmrepl.testing import ScriptedServer

CONTEXT = "log start: total=999\n" + "ERROR disk\nINFO ok\n" * 12
QUESTION = "How many lines contain ERROR?"


def test_a_placeholder_is_refused_then_the_real_answer_accepted(
    scripted_server: ScriptedServer,
) -> None:
    scripted_server.script([repl("FINAL('your answer')"), repl("FINAL(context.count('ERROR'))")])
    result = make_rlm(scripted_server).completion(CONTEXT, QUESTION)
    assert result.response == "12"
    first, second = result.metadata["steps"]
    assert not first["submitted"] and first["answer"] is None
    assert "placeholder" in first["notices"][0] and "[lmrepl] Not accepted" in first["output"]
    assert "is a placeholder" in last_user(scripted_server.model_requests()[1])
    assert second["submitted"] and result.metadata["grounded"] is True


def test_a_plain_text_placeholder_gets_the_same_refusal(scripted_server: ScriptedServer) -> None:
    scripted_server.script(["Done.\nFINAL(the value)", "Found it.\nFINAL(12)"])
    result = make_rlm(scripted_server).completion(CONTEXT, QUESTION)
    assert result.response == "12"
    assert "is a placeholder" in last_user(scripted_server.model_requests()[1])
    # A plain-text answer that never appeared in output is a guess.
    assert result.metadata["grounded"] is False


def test_a_guess_next_to_unread_output_is_held_then_confirmed(
    scripted_server: ScriptedServer,
) -> None:
    scripted_server.script([repl("print(context[:50])\nFINAL(999)"), repl("FINAL(999)")])
    events: list[Event] = []
    rlm = make_rlm(scripted_server)
    rlm.subscribe(events.append)
    result = rlm.completion(CONTEXT, QUESTION)
    assert result.response == "999"
    held, confirmed = result.metadata["steps"]
    assert not held["submitted"] and "You submitted '999' before seeing" in held["notices"][0]
    feedback = last_user(scripted_server.model_requests()[1])
    assert "total=999" in feedback and "You submitted '999' before seeing this output" in feedback
    assert confirmed["submitted"] and confirmed["answer"] == "999"
    # The value was in the output the model then read: grounded.
    assert result.metadata["grounded"] is True
    finished = [e for e in events if isinstance(e, RunFinished)]
    assert finished[-1].grounded is True


def test_a_held_guess_is_corrected(scripted_server: ScriptedServer) -> None:
    scripted_server.script(
        [
            repl("print(context[:50])\nFINAL(81330)"),
            repl("n = context.count('ERROR')\nFINAL(n)"),
        ]
    )
    result = make_rlm(scripted_server).completion(CONTEXT, QUESTION)
    assert result.response == "12"
    assert result.metadata["grounded"] is True


def test_holding_turned_off_accepts_at_once(scripted_server: ScriptedServer) -> None:
    scripted_server.script([repl("print(context[:50])\nFINAL(81330)")])
    result = make_rlm(scripted_server, hold_unseen_final=False).completion(CONTEXT, QUESTION)
    assert result.response == "81330"
    assert len(scripted_server.model_requests()) == 1
    assert result.metadata["grounded"] is False  # a constant never seen in output


def test_a_copied_description_is_refused(scripted_server: ScriptedServer) -> None:
    context = "ERROR a\nINFO b\nERROR c\n"
    # What the model read about `context`, without the name: "a str with 23 characters …".
    description = describe_context([context]).split(": ", 1)[1]
    scripted_server.script([repl(f"FINAL({description!r})"), repl("FINAL(context.count('ERROR'))")])
    result = make_rlm(scripted_server).completion(context, QUESTION)
    assert result.response == "2"
    assert "copies the description" in result.metadata["steps"][0]["notices"][0]


def test_the_question_echoed_back_is_refused(scripted_server: ScriptedServer) -> None:
    scripted_server.script([repl(f"FINAL({QUESTION!r})"), repl("FINAL(12)")])
    result = make_rlm(scripted_server).completion(CONTEXT, QUESTION)
    assert result.response == "12"
    assert "repeats the question" in result.metadata["steps"][0]["notices"][0]


def test_the_last_step_keeps_a_held_answer(scripted_server: ScriptedServer) -> None:
    # Held on the first step; the out-of-steps reply runs code but submits nothing.
    scripted_server.script(
        [repl("print(context[:20])\nFINAL(81330)"), repl("print('still looking')")]
    )
    result = make_rlm(scripted_server, max_iterations=2).completion(CONTEXT, QUESTION)
    assert result.response == "81330"
    assert result.metadata["grounded"] is False


def test_the_out_of_steps_reply_is_never_held(scripted_server: ScriptedServer) -> None:
    scripted_server.script([repl("x = 1"), repl("print(context[:20])\nFINAL(999)")])
    result = make_rlm(scripted_server, max_iterations=2).completion(CONTEXT, QUESTION)
    assert result.response == "999"
    assert len(scripted_server.model_requests()) == 2


def test_held_then_confirmed_on_the_kernel(scripted_server: ScriptedServer) -> None:
    scripted_server.script(
        [
            repl("print(context[:50])\nanswer['content'] = '999'\nanswer['ready'] = True"),
            repl("FINAL('999')"),
        ]
    )
    result = make_rlm(scripted_server, environment="kernel").completion(CONTEXT, QUESTION)
    assert result.response == "999"
    assert not result.metadata["steps"][0]["submitted"]
    assert "You submitted '999'" in last_user(scripted_server.model_requests()[1])
    assert result.metadata["grounded"] is True


def test_hold_unseen_final_must_be_a_bool(scripted_server: ScriptedServer) -> None:
    with pytest.raises(ConfigurationError, match="hold_unseen_final"):
        make_rlm(scripted_server, hold_unseen_final="yes")
    srlm = make_srlm(scripted_server, hold_unseen_final=False)
    assert srlm.hold_unseen_final is False

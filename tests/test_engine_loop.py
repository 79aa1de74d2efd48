"""The iteration loop against a real loopback model server, on both REPLs (local, kernel)."""

from __future__ import annotations

import json

import pytest
from engine_helpers import is_root, last_user, make_rlm, repl, turns

from lmrepl.testing import ScriptedServer


def test_needle_search_over_context_with_final(
    scripted_server: ScriptedServer, environment: str
) -> None:
    context = "hay " * 5000 + "needle=4217 " + "hay " * 5000
    scripted_server.script(
        [
            repl("i = context.find('needle=')\nprint(context[i:i+12])"),
            repl("FINAL(context[i+7:i+11])"),
        ]
    )
    result = make_rlm(scripted_server, environment=environment).completion(
        context, "What is the needle?"
    )
    assert result.response == "4217"
    first = scripted_server.model_requests()[0]
    # The model sees metadata about the context, never the context itself.
    assert "hay hay" not in json.dumps(first.messages)
    assert "40,012 characters" in first.messages[1]["content"]
    assert "needle=4217" in last_user(scripted_server.model_requests()[1])
    assert result.metadata["steps"][0]["output"].strip() == "needle=4217"
    assert result.usage_summary.model_usage_summaries["m"].total_calls == 2
    assert result.execution_time > 0


@pytest.mark.parametrize(
    "code",
    [
        "answer['content'] = 'B'\nanswer['ready'] = True",
        "answer.update({'content': 'B', 'ready': True})",
        "answer = {'content': 'B', 'ready': True}",
        "FINAL('B')",
        "x = 'B'\nFINAL_VAR('x')",
    ],
)
def test_every_submission_form(
    scripted_server: ScriptedServer, code: str, environment: str
) -> None:
    scripted_server.script([repl(code)])
    assert make_rlm(scripted_server, environment=environment).completion("ctx", "q").response == "B"


def test_plain_text_final_only_as_last_line(
    scripted_server: ScriptedServer, environment: str
) -> None:
    scripted_server.script(
        [
            "You can call FINAL(answer) when ready; I will look first.",
            "I found it.\nFINAL(Paris)",
        ]
    )
    result = make_rlm(scripted_server, environment=environment).completion("ctx", "capital?")
    assert result.response == "Paris"
    # The first reply mentioned FINAL in prose: not an answer, so a nudge followed.
    assert "no ```repl code block" in last_user(scripted_server.model_requests()[1])


def test_plain_text_final_of_a_variable_reads_the_repl(
    scripted_server: ScriptedServer, environment: str
) -> None:
    scripted_server.script([repl("result = 6 * 7"), "FINAL(result)"])
    assert (
        make_rlm(scripted_server, environment=environment).completion("ctx", "q").response == "42"
    )


def test_reply_without_code_gets_a_nudge_and_loop_continues(
    scripted_server: ScriptedServer, environment: str
) -> None:
    scripted_server.script(["I think about it.", "Still thinking.", repl("FINAL(7)")])
    result = make_rlm(scripted_server, environment=environment).completion("ctx", "q")
    assert result.response == "7"
    assert len(result.metadata["steps"]) == 3


def test_max_iterations_asks_once_for_a_final_answer(
    scripted_server: ScriptedServer, environment: str
) -> None:
    # max_iterations counts every turn: the third and last is the final-answer request.
    scripted_server.script([repl("x = 1"), repl("x += 1"), "The answer is 2"])
    result = make_rlm(scripted_server, environment=environment, max_iterations=3).completion(
        "ctx", "q"
    )
    assert result.response == "The answer is 2"
    assert result.metadata["stop_reason"] == "max_iterations"
    assert len(scripted_server.model_requests()) == 3
    assert "This is your last step" in last_user(scripted_server.model_requests()[2])


def test_final_request_code_runs_once(scripted_server: ScriptedServer, environment: str) -> None:
    scripted_server.script([repl("x = 40"), repl("FINAL(x + 2)")])
    result = make_rlm(scripted_server, environment=environment, max_iterations=2).completion(
        "ctx", "q"
    )
    assert result.response == "42"


def test_output_is_truncated_for_the_model(
    scripted_server: ScriptedServer, environment: str
) -> None:
    scripted_server.script([repl("print('x' * 100000)"), repl("FINAL(1)")])
    make_rlm(
        scripted_server, environment=environment, environment_kwargs={"max_output_chars": 500}
    ).completion("c", "q")
    feedback = last_user(scripted_server.model_requests()[1])
    assert "characters truncated" in feedback
    assert len(feedback) < 1000


def test_traceback_goes_back_to_the_model_and_state_survives(
    scripted_server: ScriptedServer, environment: str
) -> None:
    scripted_server.script([repl("kept = 5\n1/0"), repl("FINAL(kept)")])
    result = make_rlm(scripted_server, environment=environment).completion("ctx", "q")
    assert result.response == "5"
    feedback = last_user(scripted_server.model_requests()[1])
    assert "ZeroDivisionError" in feedback and "\x1b[" not in feedback


def test_bare_expression_is_echoed(scripted_server: ScriptedServer, environment: str) -> None:
    scripted_server.script([repl("len(context)"), repl("FINAL(1)")])
    make_rlm(scripted_server, environment=environment).completion("abcdef", "q")
    assert "6" in last_user(scripted_server.model_requests()[1])


def test_overwritten_names_are_restored(scripted_server: ScriptedServer, environment: str) -> None:
    scripted_server_responder_calls: list[str] = []

    def responder(req):  # type: ignore[no-untyped-def]
        if not is_root(req):
            scripted_server_responder_calls.append(last_user(req))
            return "!"
        return [
            repl("context = 'gone'\nllm_query = None"),
            repl("FINAL(context + llm_query('x'))"),
        ][turns(req)]

    scripted_server.script(responder=responder)
    assert (
        make_rlm(scripted_server, environment=environment).completion("orig", "q").response
        == "orig!"
    )


def test_empty_answer_is_not_accepted(scripted_server: ScriptedServer, environment: str) -> None:
    scripted_server.script([repl("FINAL('')"), repl("FINAL('real')")])
    assert (
        make_rlm(scripted_server, environment=environment).completion("c", "q").response == "real"
    )


def test_contexts_of_many_types(scripted_server: ScriptedServer, environment: str) -> None:
    for ctx, expr, expected in [
        (b"bytes!", "context.decode()", "bytes!"),
        ([1, 2, 3], "sum(context)", "6"),
        ({"a": 1}, "context['a']", "1"),
    ]:
        scripted_server.script([repl(f"FINAL({expr})")])
        assert (
            make_rlm(scripted_server, environment=environment).completion(ctx, "q").response
            == expected
        )


def test_unserialisable_context_is_a_clear_error(
    scripted_server: ScriptedServer, environment: str
) -> None:
    import threading

    from lmrepl import ContextError

    scripted_server.script([repl("FINAL(1)")])
    # The wording differs ("serialised for the REPL" / "sent to the kernel"); both name
    # the context's type and the object that cannot be pickled.
    with pytest.raises(ContextError, match=r"context of type dict cannot be") as info:
        make_rlm(scripted_server, environment=environment).completion(
            {"lock": threading.Lock()}, "q"
        )
    assert "_thread.lock" in str(info.value)
    assert scripted_server.model_requests() == []  # refused before any model call


def test_lm_repl_call_shape_without_question(
    scripted_server: ScriptedServer, environment: str
) -> None:
    scripted_server.script([repl("FINAL(context.upper())")])
    result = make_rlm(scripted_server, environment=environment).completion("do it")
    assert result.response == "DO IT"
    assert "Question:" in scripted_server.model_requests()[0].messages[1]["content"]


def test_repeated_code_gets_a_note(scripted_server: ScriptedServer, environment: str) -> None:
    # The same code with a different output (state changed): a note, and the loop goes on.
    grow = "x = globals().get('x', 0) + 1\nprint(x)"
    scripted_server.script([repl(grow), repl(grow), repl("FINAL(x)")])
    result = make_rlm(scripted_server, environment=environment).completion("c", "q")
    requests = scripted_server.model_requests()
    assert "same code as your previous step" not in last_user(requests[1])
    assert "same code as your previous step" in last_user(requests[2])
    assert "last step" not in last_user(requests[2]) and result.response == "2"


def test_the_same_code_with_the_same_output_goes_to_the_final_request(
    scripted_server: ScriptedServer, environment: str
) -> None:
    # A small model stuck printing the right value: the repeat ends the loop, and the
    # last request names the value; a reply that still only prints it is taken as computed.
    scripted_server.script([repl("print(25)"), repl("print(25)"), repl("print(25)")])
    result = make_rlm(scripted_server, environment=environment, max_iterations=10).completion(
        "c", "q"
    )
    requests = scripted_server.model_requests()
    assert len(requests) == 3
    assert "same code as your previous step" in last_user(requests[2])
    assert "this is your last step" in last_user(requests[2])
    assert "Your last code printed: 25" in last_user(requests[2])
    assert result.response == "25" and result.metadata["grounded"] is True


def test_cell_overwriting_context_is_refused(
    scripted_server: ScriptedServer, environment: str
) -> None:
    scripted_server.script([repl("context = 'invented'"), repl("FINAL(context)")])
    assert (
        make_rlm(scripted_server, environment=environment).completion("real", "q").response
        == "real"
    )
    assert "was not run" in last_user(scripted_server.model_requests()[1])

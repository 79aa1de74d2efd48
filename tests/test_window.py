"""Every request fits the model's window (issue 11 §1), against a tiny fake window."""

from __future__ import annotations

from typing import Any

import pytest

from lmrepl.clients.base import window_estimate
from lmrepl.conversation import Conversation
from lmrepl.errors import ConfigurationError
from lmrepl.scripted_api import ReplyItem, ScriptedReply
from lmrepl.testing import ScriptedRequest, ScriptedServer
from lmrepl.window import cut_middle, fit_request, request_tokens
from tests.engine_helpers import is_root, make_rlm, repl, turns

WINDOW = 3000
REPLY_CAP = 200
#: What a request may take: the window less the reply's cap and the margin (calls.py).
BUDGET = WINDOW - REPLY_CAP - 32


def count(text: str) -> int:
    return len(text) // 4


def tokens_of(req: ScriptedRequest) -> int:
    msgs = [{"role": str(m["role"]), "content": str(m["content"])} for m in req.messages]
    return request_tokens(msgs, window_estimate)


def small_window(server: ScriptedServer, **kwargs: Any) -> Any:
    rlm = make_rlm(server, **kwargs)
    rlm.backend_kwargs.update({"context_window": WINDOW, "default_extra_body": {"max_tokens": 200}})
    return rlm


def refusing(reply_for: Any) -> Any:
    """A responder that answers like llama.cpp when a request outgrows the window."""

    def respond(req: ScriptedRequest) -> ReplyItem:
        used = tokens_of(req)
        if used > WINDOW - REPLY_CAP:
            return ScriptedReply(
                status=400,
                error_body={
                    "error": {
                        "message": f"request ({used} tokens) exceeds the available context "
                        f"size ({WINDOW} tokens)",
                        "code": 400,
                    }
                },
            )
        return reply_for(req)

    return respond


# -- the pieces --------------------------------------------------------------------------


def test_cut_middle_keeps_head_and_tail_and_says_how_much_was_cut() -> None:
    text = "".join(f"line {i}\n" for i in range(1000))
    cut = cut_middle(text, 300)
    assert cut.startswith("line 0\n") and cut.endswith("line 999\n")
    assert f"{len(text) - 300:,} of {len(text):,} characters cut" in cut
    assert cut_middle("short", 300) == "short"


def test_fit_request_cuts_the_largest_message_and_leaves_a_fitting_one_alone() -> None:
    msgs = [
        {"role": "system", "content": "s" * 400},
        {"role": "user", "content": "u" * 40_000},
        {"role": "assistant", "content": "a" * 400},
    ]
    assert fit_request(msgs, 100_000, count) is msgs
    fitted = fit_request(msgs, 1_000, count)
    assert request_tokens(fitted, count) <= 1_000
    assert fitted[0] == msgs[0] and fitted[2] == msgs[2]
    assert "characters cut here" in fitted[1]["content"]
    with pytest.raises(ConfigurationError, match="cannot fit the model's window"):
        fit_request(msgs, 50, count)


def test_older_outputs_are_cut_before_newer_ones_and_cuts_are_sticky() -> None:
    conv = Conversation("system", "question")
    conv.add_step("step one", ["A" * 8_000])
    conv.add_step("step two", ["B" * 8_000])
    full = request_tokens(conv.messages(), count)
    fitted = conv.fitted(full - 1_000, count)
    assert request_tokens(fitted, count) <= full - 1_000
    old, new = fitted[3]["content"], fitted[5]["content"]
    assert "characters cut here" in old and new == "B" * 8_000
    # A later, roomier request does not show the old output again (prefix stays stable).
    again = conv.fitted(full * 2, count)
    assert again[3]["content"] == old


def test_when_cutting_outputs_is_not_enough_old_steps_are_compacted() -> None:
    conv = Conversation("system", "question")
    for i in range(6):
        conv.add_step(f"```repl\nx{i} = compute({i})\n```", [f"out {i} " * 200])
    fitted = conv.fitted(400, count)
    assert request_tokens(fitted, count) <= 400
    text = "\n".join(m["content"] for m in fitted)
    assert "Summary of my earlier steps" in text and "x0 = compute(0)" in text
    assert fitted[-2]["content"].startswith("```repl\nx5")  # the newest step stays


def test_the_tail_counts_toward_the_budget() -> None:
    conv = Conversation("system", "question")
    conv.add_step("reply", ["O" * 4_000])
    tail = [{"role": "user", "content": "T" * 2_000}]
    fitted = conv.fitted(1_200, count, tail)
    assert request_tokens(fitted, count) <= 1_200 and fitted[-1] == tail[0]


# -- through the engine ----------------------------------------------------------------


def test_a_printed_context_never_makes_a_request_outgrow_the_window(
    scripted_server: ScriptedServer,
) -> None:
    context = "".join(
        f"2026-12-04 10:{i % 60:02d}:00 INFO request {i} served\n" for i in range(800)
    )

    def reply_for(req: ScriptedRequest) -> ReplyItem:
        if not is_root(req):
            return "sub-answer"
        n = turns(req)
        if n == 0:
            return repl("print(context)")
        if n == 1:
            return repl("print(llm_query(context))\nprint(rlm_query(context[:20000]))")
        return repl("FINAL(len(context.splitlines()))")

    scripted_server.script(responder=refusing(reply_for))
    result = small_window(scripted_server, max_depth=1, max_iterations=5).completion(
        context, "How many lines?"
    )
    assert result.response == "800"
    model_requests = scripted_server.model_requests()
    assert max(tokens_of(r) for r in model_requests) <= BUDGET
    second_root = next(r for r in model_requests if is_root(r) and turns(r) == 1)
    assert "characters cut here to fit the model's window" in second_root.messages[-1]["content"]
    # The sub-call carried the cut context; the child's first turn was cut too.
    subcall = next(r for r in model_requests if not is_root(r))
    assert "characters cut here" in subcall.messages[-1]["content"]


def test_a_server_that_counts_more_tokens_gets_the_request_once_more_cut(
    scripted_server: ScriptedServer,
) -> None:
    seen: list[int] = []

    def respond(req: ScriptedRequest) -> ReplyItem:
        # This server's tokenizer counts half again as many tokens as our estimate.
        used = tokens_of(req) * 3 // 2
        seen.append(used)
        if used > WINDOW - REPLY_CAP:
            msg = f"request ({used} tokens) exceeds the available context size ({WINDOW} tokens)"
            return ScriptedReply(status=400, error_body={"error": {"message": msg}})
        return repl("print(context)") if turns(req) == 0 else repl("FINAL('done')")

    scripted_server.script(responder=respond)
    rlm = small_window(scripted_server, max_iterations=3)
    rlm.backend_kwargs["max_retries"] = 0
    assert rlm.completion("z" * 30_000, "q").response == "done"
    assert any(n > WINDOW - REPLY_CAP for n in seen)  # refused once, then fitted

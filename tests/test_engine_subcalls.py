"""llm_query / rlm_query and their batched forms, through the real loop and server.

Every test runs on both REPLs (the ``environment`` fixture). Concurrency is shown with
barriers that the concurrent calls must all reach, never with a wall-clock threshold.
"""

from __future__ import annotations

import threading

import pytest
from engine_helpers import backend, is_root, last_user, make_rlm, repl, turns

from lmrepl import RLM
from lmrepl.testing import ScriptedReply, ScriptedRequest, ScriptedServer


def test_batched_calls_keep_order_and_bounded_concurrency(
    scripted_server: ScriptedServer, environment: str
) -> None:
    active = 0
    peak = 0
    lock = threading.Lock()
    # 12 prompts, 3 at a time: each wave of 3 must be in flight together to pass.
    wave = threading.Barrier(3, timeout=30)

    def responder(req: ScriptedRequest) -> str:
        nonlocal active, peak
        if is_root(req):
            return [
                repl("out = llm_query_batched([f'p{i}' for i in range(12)])\nprint(out)"),
                repl("FINAL(','.join(out))"),
            ][turns(req)]
        with lock:
            active += 1
            peak = max(peak, active)
        try:
            wave.wait()
        finally:
            with lock:
                active -= 1
        return "r" + last_user(req)[1:]

    scripted_server.script(responder=responder)
    rlm = make_rlm(scripted_server, environment=environment, max_concurrent_subcalls=3)
    result = rlm.completion("c", "q")
    assert result.response == ",".join(f"r{i}" for i in range(12))
    assert peak == 3
    assert len(result.metadata["subcalls"]) == 12


def test_one_failed_prompt_is_an_error_string_in_its_slot(
    scripted_server: ScriptedServer, environment: str
) -> None:
    def responder(req: ScriptedRequest) -> str | ScriptedReply:
        if is_root(req):
            return [
                repl("out = llm_query_batched(['ok1', 'bad', 'ok2'])"),
                repl("FINAL(repr([o[:6] for o in out]))"),
            ][turns(req)]
        if last_user(req) == "bad":
            return ScriptedReply(status=400, error_body={"error": {"message": "nope"}})
        return last_user(req)

    scripted_server.script(responder=responder)
    result = make_rlm(scripted_server, environment=environment).completion("c", "q")
    assert result.response == "['ok1', 'Error:', 'ok2']"
    errors = [s for s in result.metadata["subcalls"] if s["error"]]
    assert len(errors) == 1 and "400" in errors[0]["error"]


def test_rlm_query_runs_a_child_with_its_own_repl_and_prompt(
    scripted_server: ScriptedServer, environment: str
) -> None:
    seen_child_system: list[str] = []

    def responder(req: ScriptedRequest) -> str:
        system = req.messages[0]["content"]
        if "CHILD-PROMPT" in system:
            seen_child_system.append(system)
            # The child has its own REPL: the parent's variable is not there.
            return repl("FINAL(str('secret' in dir()) + ':' + context.upper())")
        return [
            repl("secret = 1\nr = rlm_query('sub task')"),
            repl("FINAL(r)"),
        ][turns(req)]

    scripted_server.script(responder=responder)
    rlm = make_rlm(
        scripted_server, environment=environment, child_system_prompt="CHILD-PROMPT", max_depth=2
    )
    result = rlm.completion("c", "q")
    assert result.response == "False:SUB TASK"
    assert seen_child_system
    sub = result.metadata["subcalls"]
    assert any(s["function"] == "rlm_query" and s["child_run_id"] for s in sub)
    # The child's own trajectory is recorded too.
    (child,) = result.metadata["children"]
    assert child["answer"] == "False:SUB TASK"
    assert "FINAL(" in child["steps"][0]["code"]


@pytest.mark.parametrize("max_depth", [None, 0, 1])
def test_rlm_query_at_max_depth_is_a_plain_call(
    scripted_server: ScriptedServer, environment: str, max_depth: int | None
) -> None:
    """lm-repl's and rlms' meaning: the default max_depth=1 starts no child RLM."""

    def responder(req: ScriptedRequest) -> str:
        if is_root(req):
            return [repl("r = rlm_query('plain please')"), repl("FINAL(r)")][turns(req)]
        return "plain:" + last_user(req)

    scripted_server.script(responder=responder)
    depth = {} if max_depth is None else {"max_depth": max_depth}
    result = make_rlm(scripted_server, environment=environment, **depth).completion("c", "q")
    assert result.response == "plain:plain please"
    (call,) = result.metadata["subcalls"]
    assert call["function"] == "rlm_query" and call["child_run_id"] is None
    assert len(scripted_server.model_requests()) == 3  # root 2 turns + one plain call


@pytest.mark.parametrize(("max_depth", "deepest"), [(2, 1), (3, 2)])
def test_a_child_starts_only_below_max_depth(
    scripted_server: ScriptedServer, max_depth: int, deepest: int
) -> None:
    """Every RLM calls rlm_query once; children exist down to depth max_depth - 1."""

    def responder(req: ScriptedRequest) -> str:
        if is_root(req):  # the root or a child RLM (a plain call has no system prompt)
            return [repl("r = rlm_query('go deeper')"), repl("FINAL(str(r))")][turns(req)]
        return "leaf"

    scripted_server.script(responder=responder)
    result = make_rlm(scripted_server, max_depth=max_depth).completion("c", "q")
    assert result.response == "leaf"
    levels, node = 0, result.metadata
    while node["children"]:
        (node,) = node["children"]
        levels += 1
        assert node["depth"] == levels
    assert levels == deepest


def test_child_max_iterations_bounds_children(
    scripted_server: ScriptedServer, environment: str
) -> None:
    child_calls = 0

    def responder(req: ScriptedRequest) -> str:
        nonlocal child_calls
        if "helper working on one sub-task" in req.messages[0]["content"]:
            child_calls += 1
            return repl("x = 1") if turns(req) < 2 else "done"
        return [repl("r = rlm_query('t')"), repl("FINAL(r)")][turns(req)]

    scripted_server.script(responder=responder)
    make_rlm(
        scripted_server, environment=environment, child_max_iterations=3, max_depth=2
    ).completion("c", "q")
    assert child_calls == 3  # two free turns and the final request: three in all


def test_rlm_query_batched_children_in_parallel(
    scripted_server: ScriptedServer, environment: str
) -> None:
    # Each child's cell calls meet(), which returns only once all four children are in
    # it at the same time: children run one after another would break the barrier.
    together = threading.Barrier(4, timeout=30)

    def meet() -> str:
        """Wait for the sibling children."""
        together.wait()
        return "!"

    def responder(req: ScriptedRequest) -> str:
        if "helper working" in req.messages[0]["content"]:
            return repl("FINAL(context * 2 + meet())")
        return [repl("out = rlm_query_batched(['a', 'b', 'c', 'd'])"), repl("FINAL(''.join(out))")][
            turns(req)
        ]

    scripted_server.script(responder=responder)
    rlm = make_rlm(
        scripted_server,
        environment=environment,
        max_concurrent_subcalls=4,
        custom_tools={"meet": meet},
        max_depth=2,
    )
    result = rlm.completion("c", "q")
    assert result.response == "aa!bb!cc!dd!"
    assert not together.broken
    assert len(result.metadata["children"]) == 4


def test_other_backends_serve_subcalls(scripted_server: ScriptedServer, environment: str) -> None:
    with ScriptedServer(responder=lambda r: "from-other") as other:
        scripted_server.script(
            responder=lambda req: (
                [
                    repl("a = llm_query('x')\nb = llm_query('y', model='m')"),
                    repl("FINAL(a + '|' + b)"),
                ][turns(req)]
                if is_root(req)
                else "from-root"
            )
        )
        kw = backend(other, model="small")
        rlm = make_rlm(
            scripted_server,
            environment=environment,
            other_backends=[kw["backend"]],
            other_backend_kwargs=[kw["backend_kwargs"]],
        )
        result = rlm.completion("c", "q")
    # Default sub-call model is the first other backend; model='m' names the root one.
    assert result.response == "from-other|from-root"
    assert set(result.usage_summary.model_usage_summaries) == {"m", "small"}


def test_unknown_submodel_is_an_error_when_there_is_a_choice(
    scripted_server: ScriptedServer, environment: str
) -> None:
    with ScriptedServer() as other:
        kw = backend(other, model="small")
        rlm = make_rlm(
            scripted_server,
            environment=environment,
            other_backends=[kw["backend"]],
            other_backend_kwargs=[kw["backend_kwargs"]],
        )
        scripted_server.script([repl("llm_query('x', model='nope')"), repl("FINAL(1)")])
        rlm.completion("c", "q")
    feedback = last_user(scripted_server.model_requests()[1])
    assert "unknown model 'nope'" in feedback and "small" in feedback
    assert "runtime.py" not in feedback  # lmrepl's own frames are not shown


def test_any_submodel_name_uses_the_only_model(
    scripted_server: ScriptedServer, environment: str
) -> None:
    scripted_server.script(
        responder=lambda req: (
            [repl("r = llm_query('x', model='gpt-4')"), repl("FINAL(r)")][turns(req)]
            if is_root(req)
            else "only-model"
        )
    )
    assert (
        make_rlm(scripted_server, environment=environment).completion("c", "q").response
        == "only-model"
    )


def test_custom_tools_and_sub_tools(scripted_server: ScriptedServer, environment: str) -> None:
    def lookup(key: str) -> str:
        """Look a key up in the host's table."""
        return {"k": "v"}[key]

    scripted_server.script([repl("FINAL(lookup('k') + str(LIMIT))")])
    rlm = make_rlm(
        scripted_server,
        environment=environment,
        custom_tools={"lookup": lookup, "LIMIT": {"tool": 3, "description": "a number"}},
    )
    assert rlm.completion("c", "q").response == "v3"
    system = scripted_server.model_requests()[0].messages[0]["content"]
    assert "lookup" in system and "Look a key up" in system and "a number" in system


def test_usage_counts_every_depth(scripted_server: ScriptedServer, environment: str) -> None:
    def responder(req: ScriptedRequest) -> str:
        if "helper working" in req.messages[0]["content"]:
            return repl("FINAL(llm_query('leaf'))")
        if not is_root(req):
            return "leaf-answer"
        return [repl("r = rlm_query('t')"), repl("FINAL(r)")][turns(req)]

    scripted_server.script(responder=responder)
    result = RLM(**backend(scripted_server), environment=environment, max_depth=2).completion(
        "c", "q"
    )
    assert result.response == "leaf-answer"
    # root 2 calls + child 1 call + the child's llm_query 1 call
    assert result.usage_summary.model_usage_summaries["m"].total_calls == 4


def test_model_choice_is_advertised_only_with_several_models(
    scripted_server: ScriptedServer, environment: str
) -> None:
    scripted_server.script([repl("FINAL(1)"), repl("FINAL(1)")])
    make_rlm(scripted_server, environment=environment).completion("c", "q")
    assert "model=NAME" not in scripted_server.model_requests()[0].messages[0]["content"]
    with ScriptedServer() as other:
        kw = backend(other, model="small")
        make_rlm(
            scripted_server,
            environment=environment,
            other_backends=[kw["backend"]],
            other_backend_kwargs=[kw["backend_kwargs"]],
        ).completion("c", "q")
    system = scripted_server.model_requests()[1].messages[0]["content"]
    assert "model=NAME" in system and "'small'" in system and "'m'" in system

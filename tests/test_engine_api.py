"""RLM construction, events, callbacks, logging, persistent sessions, compaction.

Every test that runs model code takes the ``environment`` fixture: the same behaviour
is expected on the local REPL and on the (default) kernel.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from engine_helpers import backend, is_root, last_user, make_rlm, repl, turns

from lmrepl import RLM, ConfigurationError
from lmrepl.events import (
    CellFinished,
    Event,
    IterationFinished,
    ModelCallFinished,
    RunFinished,
    RunStarted,
    SubcallFinished,
)
from lmrepl.logger import RLMLogger, read_log
from lmrepl.testing import ScriptedRequest, ScriptedServer


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"backend": "nope"}, ValueError, "backend must be one of 'openai'"),
        ({"environment": "docker"}, ValueError, "environment must be one of 'kernel'"),
        ({"max_iterations": 0}, ValueError, "max_iterations"),
        ({"max_budget": -1}, ValueError, "max_budget"),
        ({"max_timeout": 0}, ValueError, "max_timeout"),
        ({"max_tokens": -5}, ValueError, "max_tokens"),
        ({"max_errors": 0}, ValueError, "max_errors"),
        ({"max_depth": -1}, ValueError, "max_depth"),
        ({"depth": 3, "max_depth": 1}, ValueError, "depth"),
        ({"max_concurrent_subcalls": 0}, ValueError, "max_concurrent_subcalls"),
        ({"compaction_threshold_pct": 2}, ValueError, "compaction_threshold_pct"),
        ({"environment_kwargs": {"bogus": 1}}, TypeError, "bogus"),
        ({"environment_kwargs": {"cell_timeout": -1}}, ValueError, "cell_timeout"),
        ({"on_iteration_start": 5}, TypeError, "on_iteration_start"),
        ({"other_backends": ["openai"], "other_backend_kwargs": []}, ValueError, "one dict per"),
        ({"custom_tools": {"context": 1}}, ValueError, "reserved"),
        ({"verbose": "yes"}, TypeError, "verbose"),
    ],
)
def test_invalid_arguments_fail_at_construction(
    kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    # Construction only: no REPL starts, so there is no environment to vary.
    base = {"backend": "openai", "backend_kwargs": {"model_name": "m", "api_key": "k"}}
    base.update(kwargs)
    with pytest.raises(error, match=match) as info:
        RLM(**base)
    assert isinstance(info.value, ConfigurationError)  # one error type, one message style


def test_unknown_argument_is_a_type_error() -> None:
    # Construction only, like the test above.
    with pytest.raises(TypeError):
        RLM(backend="openai", backend_kwargs={"model_name": "m"}, max_iteration=3)  # type: ignore[call-arg]


def test_missing_api_key_is_clear_before_any_repl(
    monkeypatch: pytest.MonkeyPatch, environment: str
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    rlm = RLM(backend="openai", backend_kwargs={"model_name": "gpt-x"}, environment=environment)
    with pytest.raises(ConfigurationError, match="OPENAI_API_KEY"):
        rlm.completion("c", "q")


def test_unreachable_server_is_clear(environment: str) -> None:
    rlm = RLM(
        backend="openai",
        backend_kwargs={"model_name": "m", "base_url": "http://127.0.0.1:9/v1", "api_key": "k"},
        environment=environment,
    )
    with pytest.raises(ConfigurationError, match=r"127\.0\.0\.1:9"):
        rlm.completion("c", "q")


def test_events_callbacks_and_logger(
    scripted_server: ScriptedServer, tmp_path: Path, environment: str
) -> None:
    def responder(req: ScriptedRequest) -> str:
        if not is_root(req):
            return "sub"
        return [repl("print(llm_query('x'))", confidence=70), repl("FINAL(1)", confidence=90)][
            turns(req)
        ]

    scripted_server.script(responder=responder)
    events: list[Event] = []
    calls: list[tuple[str, tuple[Any, ...]]] = []
    logger = RLMLogger(tmp_path)
    rlm = make_rlm(
        scripted_server,
        environment=environment,
        logger=logger,
        on_iteration_start=lambda *a: calls.append(("it_start", a)),
        on_iteration_complete=lambda *a: calls.append(("it_done", a)),
        on_subcall_start=lambda *a: calls.append(("sub_start", a)),
        on_subcall_complete=lambda *a: calls.append(("sub_done", a)),
    )
    rlm.subscribe(events.append)
    big_context = "Z" * 200_000
    result = rlm.completion(big_context, "q")
    logger.close()
    kinds = [type(e) for e in events]
    assert kinds[0] is RunStarted and kinds[-1] is RunFinished
    for k in (ModelCallFinished, CellFinished, SubcallFinished, IterationFinished):
        assert k in kinds
    confidences = [e.step.confidence for e in events if isinstance(e, IterationFinished)]
    assert confidences == [70.0, 90.0]
    assert [c[0] for c in calls] == [
        "it_start",
        "sub_start",
        "sub_done",
        "it_done",
        "it_start",
        "it_done",
    ]
    assert calls[1][1][0] == 0 and calls[1][1][1] == "m"
    # The log holds the events, never the context.
    logged = [e for p in logger.paths for e in read_log(p)]
    assert len(logged) >= len(events)
    assert sum(p.stat().st_size for p in logger.paths) < 50_000
    assert result.metadata["steps"][0]["confidence"] == 70.0


def test_verbose_prints_progress(
    scripted_server: ScriptedServer, capsys: pytest.CaptureFixture[str], environment: str
) -> None:
    scripted_server.script([repl("print('hi')"), repl("FINAL('done!')")])
    make_rlm(scripted_server, environment=environment, verbose=True).completion("c", "q")
    out = capsys.readouterr()
    assert "done!" in out.out + out.err


def test_persistent_session_keeps_repl_contexts_and_history(
    scripted_server: ScriptedServer, environment: str
) -> None:
    scripted_server.script(
        [
            repl("saved = context * 2\nFINAL(saved)"),
            repl("FINAL(saved + '|' + context_1 + '|' + str(len(history)) + history[0]['answer'])"),
        ]
    )
    with make_rlm(scripted_server, environment=environment, persistent=True) as rlm:
        assert rlm.completion("ab", "first").response == "abab"
        assert rlm.completion("cd", "second").response == "abab|cd|1abab"


def test_compaction_summarises_long_conversations(
    scripted_server: ScriptedServer, environment: str
) -> None:
    def responder(req: ScriptedRequest) -> str:
        if "Summarise the work so far" in last_user(req):
            return "SUMMARY: x is set"
        if turns(req) >= 3 or any("SUMMARY" in str(m["content"]) for m in req.messages):
            return repl("FINAL(x)")
        return repl("x = 'ok'\nprint('y' * 3000)")

    scripted_server.script(responder=responder)
    rlm = RLM(
        backend="openai",
        backend_kwargs={**backend(scripted_server)["backend_kwargs"], "context_window": 2000},
        environment=environment,
        compaction=True,
        compaction_threshold_pct=0.5,
    )
    assert rlm.completion("c", "q").response == "ok"
    assert any(
        "Summarise the work so far" in last_user(r) for r in scripted_server.model_requests()
    )


def test_parallel_repls_do_not_mix_output(
    scripted_server: ScriptedServer, environment: str
) -> None:
    def responder(req: ScriptedRequest) -> str:
        if turns(req) == 0:
            return repl("for i in range(200):\n    print(context, end=';')")
        return repl("FINAL('x')")

    scripted_server.script(responder=responder)
    results: dict[str, str] = {}

    def run(tag: str) -> None:
        make_rlm(scripted_server, environment=environment).completion(tag, "q")

    threads = [threading.Thread(target=run, args=(f"T{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    outputs = [last_user(r) for r in scripted_server.model_requests() if turns(r) == 1]
    assert len(outputs) == 4
    for out in outputs:
        tags = {tok for tok in out.split("Output:\n")[1].split("\n")[0].split(";") if tok}
        assert len(tags) == 1, tags
        assert out.count(next(iter(tags)) + ";") == 200
        results[next(iter(tags))] = out
    assert set(results) == {"T0", "T1", "T2", "T3"}


def test_multi_megabyte_needle_by_chunked_fan_out(
    scripted_server: ScriptedServer, environment: str
) -> None:
    lines = [f"line {i}: nothing here" for i in range(120_000)]
    lines[87_654] = "line 87654: the secret code is 31337"
    context = "\n".join(lines)
    assert len(context) > 2_500_000

    def responder(req: ScriptedRequest) -> str:
        if is_root(req):
            return [
                repl(
                    "size = 250_000\n"
                    "chunks = [context[i:i+size] for i in range(0, len(context), size)]\n"
                    "found = llm_query_batched(['Find the secret code:\\n' + c for c in chunks])\n"
                    "hits = [f for f in found if f != 'none']\nprint(len(chunks), hits)"
                ),
                repl("FINAL(hits[0])"),
            ][turns(req)]
        text = last_user(req)
        return (
            text.split("the secret code is ")[1].split("\n")[0]
            if "secret code is" in text
            else "none"
        )

    scripted_server.script(responder=responder)
    rlm = make_rlm(scripted_server, environment=environment, max_concurrent_subcalls=4)
    result = rlm.completion(context, "secret?")
    assert result.response == "31337"
    assert len(result.metadata["subcalls"]) == -(-len(context) // 250_000)


def test_kernel_settings_are_checked_at_construction() -> None:
    # Kernel only: interrupt_grace is a setting of the kernel REPL alone.
    with pytest.raises(ValueError, match="interrupt_grace"):
        RLM(
            backend="openai",
            backend_kwargs={"model_name": "m", "api_key": "k"},
            environment="kernel",
            environment_kwargs={"interrupt_grace": -1},
        )

"""The magics in a real InteractiveShell: loading, options, config, errors, runs."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from magic_helpers import magics

import lmrepl_jupyter
from lmrepl.events import Event
from lmrepl.types import RLMChatCompletion, UsageSummary
from lmrepl_jupyter import SRLMMagics, SRLMResult


def run_magic(shell: InteractiveShell, name: str, line: str, cell: str) -> Any:
    """``shell.run_cell_magic`` (untyped in IPython), typed."""
    return shell.run_cell_magic(name, line, cell)  # type: ignore[no-untyped-call]


@pytest.fixture
def ip() -> Iterator[InteractiveShell]:
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "lmrepl_jupyter")
    shell.user_ns["doc"] = "some long document"
    yield shell
    shell.run_line_magic("unload_ext", "lmrepl_jupyter")
    shell.config.pop("SRLMMagics", None)


class RecordingEngine:
    """Stands in for SRLM: records its arguments, answers at once."""

    def __init__(self, kind: str, kwargs: dict[str, Any], fail: Exception | None = None) -> None:
        self.kind, self.kwargs, self.fail = kind, kwargs, fail
        self.calls: list[tuple[Any, str]] = []
        self.closed = False

    def subscribe(self, fn: Callable[[Event], None]) -> Callable[[], None]:
        return lambda: None

    def cancel(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def completion(self, context: Any, question: str) -> RLMChatCompletion:
        self.calls.append((context, question))
        if self.fail is not None:
            raise self.fail
        return RLMChatCompletion(
            root_model="m",
            response="fine",
            usage_summary=UsageSummary(),
            execution_time=0.01,
            metadata={"mode": "rlm", "winner": None, "clusters": [], "candidates": []},
        )


@pytest.fixture
def engines(ip: InteractiveShell) -> Iterator[list[RecordingEngine]]:
    made: list[RecordingEngine] = []

    def factory(kind: str, kwargs: dict[str, Any]) -> RecordingEngine:
        made.append(RecordingEngine(kind, kwargs))
        return made[-1]

    m = magics(ip)
    m.engine_factory = factory
    m.panel = "off"
    yield made


def test_load_unload_reload(ip: InteractiveShell) -> None:
    mm = ip.magics_manager
    assert {"srlm", "rlm"} <= set(mm.magics["cell"])
    assert "lmrepl" in mm.magics["line"]
    assert sum(isinstance(c, SRLMMagics) for c in ip.configurables) == 1
    ip.run_line_magic("config", "SRLMMagics.n_candidates = 5")
    ip.run_line_magic("reload_ext", "lmrepl_jupyter")
    assert sum(isinstance(c, SRLMMagics) for c in ip.configurables) == 1
    assert magics(ip).n_candidates == 5  # %config settings survive a reload
    lmrepl_jupyter.unload_ipython_extension(ip)
    assert not {"srlm", "rlm"} & set(mm.magics["cell"])
    assert "lmrepl" not in mm.magics["line"]
    assert "SRLMMagics" not in mm.registry
    assert not any(isinstance(c, SRLMMagics) for c in ip.configurables)
    lmrepl_jupyter.load_ipython_extension(ip)  # the fixture unloads it again


def test_config_traits_feed_the_engine(ip: InteractiveShell, engines: list[Any]) -> None:
    ip.run_line_magic("config", "SRLMMagics.n_candidates = 4")
    ip.run_line_magic("config", "SRLMMagics.candidate_temperature = None")
    ip.run_line_magic("config", "SRLMMagics.environment_kwargs = {'cell_timeout': 9}")
    res = run_magic(ip, "srlm", "doc", "What is it?\n")
    assert isinstance(res, SRLMResult) and res.answer == "fine"
    kw = engines[0].kwargs
    assert engines[0].kind == "srlm"
    assert kw["n_candidates"] == 4 and kw["candidate_parallel"] == 3
    assert kw["candidate_temperature"] is None
    assert kw["confidence_elicitation"] is True and kw["early_stop"] is False
    assert kw["environment"] == "kernel" and kw["environment_kwargs"] == {"cell_timeout": 9}
    assert kw["backend"] == "local" and kw["max_iterations"] == 8
    assert engines[0].calls == [("some long document", "What is it?")]
    assert engines[0].closed


def test_bad_config_value_is_refused(ip: InteractiveShell) -> None:
    ip.run_line_magic("config", "SRLMMagics.n_candidates = 0")
    assert magics(ip).n_candidates == 3


def test_options_override_config(ip: InteractiveShell, engines: list[Any]) -> None:
    line = (
        "-k 5 -p 2 -t 0.3 --no-confidence -b openai -m gpt-x --base-url http://127.0.0.1:9/v1 "
        "--direct-threshold 100 --cell-timeout 5 --max-iterations 3 --early-stop -o out doc"
    )
    res = run_magic(ip, "srlm", line, "q")
    kw = engines[0].kwargs
    assert kw["n_candidates"] == 5 and kw["candidate_parallel"] == 2
    assert kw["candidate_temperature"] == 0.3 and kw["confidence_elicitation"] is False
    assert kw["backend"] == "openai"
    assert kw["backend_kwargs"] == {"model_name": "gpt-x", "base_url": "http://127.0.0.1:9/v1"}
    assert kw["direct_threshold"] == 100 and kw["early_stop"] is True
    assert kw["environment_kwargs"]["cell_timeout"] == 5.0 and kw["max_iterations"] == 3
    assert ip.user_ns["out"] is res


def test_rlm_magic_runs_one_trajectory(ip: InteractiveShell, engines: list[Any]) -> None:
    res = run_magic(ip, "rlm", "--max-iterations 2 doc", "q")
    assert engines[0].kind == "rlm" and "n_candidates" not in engines[0].kwargs
    assert engines[0].kwargs["max_iterations"] == 2
    assert res.record.kind == "rlm"
    with pytest.raises(UsageError):
        run_magic(ip, "rlm", "-k 3 doc", "q")  # no candidates in %%rlm


@pytest.mark.parametrize(
    ("magic", "line", "cell", "needle"),
    [
        ("srlm", "", "q", "name the variable"),
        ("srlm", "nope", "q", "no variable named 'nope'"),
        ("srlm", "doc", "   \n", "question, and it is empty"),
        ("srlm", "-k 0 doc", "q", "-k/--candidates must be an integer >= 1, got 0"),
        ("srlm", "-p 0 doc", "q", "-p/--parallel must be an integer >= 1, got 0"),
        ("srlm", "-t -1 doc", "q", "-t/--temperature must be a number >= 0"),
        (
            "srlm",
            "--cell-timeout -2 doc",
            "q",
            "--cell-timeout must be a positive number",
        ),
        ("srlm", "--max-iterations 0 doc", "q", "--max-iterations must be an integer >= 1, got 0"),
        (
            "srlm",
            "--direct-threshold -1 doc",
            "q",
            "--direct-threshold must be an integer >= 0",
        ),
        ("srlm", "-k many doc", "q", "-k/--candidates must be an integer >= 1, got 'many'"),
        ("srlm", "-o 1x doc", "q", "-o NAME must be a Python name"),
        ("srlm", "--bogus doc", "q", "unknown option --bogus; accepted: -k/--candidates"),
        ("srlm", "doc extra", "q", "one VAR is accepted, got also 'extra'"),
        ("rlm", "-k 3 doc", "q", "-k/--candidates is an %%srlm option"),
        ("rlm", "2doc", "q", "VAR must be a Python name"),
    ],
)
def test_usage_errors(
    ip: InteractiveShell, engines: list[Any], magic: str, line: str, cell: str, needle: str
) -> None:
    with pytest.raises(UsageError) as info:
        run_magic(ip, magic, line, cell)
    msg = str(info.value)
    assert msg.startswith(f"%%{magic}: ") and needle in msg
    assert "\n" not in msg.strip()
    assert engines == []  # nothing was built


def test_engine_rejecting_its_arguments_is_a_usage_error(ip: InteractiveShell) -> None:
    def factory(kind: str, kwargs: dict[str, Any]) -> Any:
        raise ValueError("unknown backend 'nonsense'\n  (more detail)")

    magics(ip).engine_factory = factory
    with pytest.raises(UsageError, match=r"^%%srlm: unknown backend 'nonsense'$"):
        run_magic(ip, "srlm", "doc", "q")


def test_failure_during_the_run_stores_the_failed_result(
    ip: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    def factory(kind: str, kwargs: dict[str, Any]) -> RecordingEngine:
        return RecordingEngine(kind, kwargs, fail=ConnectionError("server unreachable"))

    m = magics(ip)
    m.engine_factory = factory
    m.panel = "off"
    assert run_magic(ip, "srlm", "-o r doc", "q") is None  # no Out[] value
    res = ip.user_ns["r"]
    assert res.status == "failed" and res.answer is None
    # Not lmrepl's own error: its class name is part of what it says.
    assert res.error == "ConnectionError: server unreachable"
    err = capsys.readouterr().err
    assert err.strip() == (
        "%%srlm: the run failed: ConnectionError: server unreachable (the result is in r)"
    )


def test_lmrepl_line_magic_masks_only_secrets(
    ip: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    ip.run_line_magic(
        "config",
        "SRLMMagics.backend_kwargs = {'model_name': 'gpt-x', 'api_key': 'sk-SECRET', "
        "'max_tokens': 77, 'default_headers': {'Authorization': 'Bearer zzz'}}",
    )
    ip.run_line_magic("config", "SRLMMagics.backend = 'openai'")
    ip.run_line_magic("lmrepl", "")
    out = capsys.readouterr().out
    assert out.startswith("model: gpt-x")
    assert "sk-SECRET" not in out and "zzz" not in out
    assert "'max_tokens': 77" in out and "'api_key': '***'" in out
    assert "SRLMMagics.n_candidates = 3" in out


def test_local_backend_names_the_embedded_model(
    ip: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    ip.run_line_magic("lmrepl", "")
    assert "Qwen2.5-Coder-0.5B" in capsys.readouterr().out


def test_help_lists_the_options() -> None:
    doc = SRLMMagics.srlm.__doc__ or ""
    for flag in (
        "-k",
        "--parallel",
        "--temperature",
        "--no-confidence",
        "--cell-timeout",
        "--direct-threshold",
        "--max-iterations",
        "--early-stop",
        "-o",
        "VAR",
    ):
        assert flag in doc

"""One error style at the public API (issue 14), through ``RLM``/``SRLM`` and friends.

Every configuration error is a ``ConfigurationError`` (still a ``ValueError`` and a
``TypeError``) naming the argument and what it accepts; a misspelled keyword names
the closest one; a bad context or a missing question is refused before any kernel or
model call; lm-repl's ``environment_kwargs={"kernel_mode": ...}`` works.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from attack_helpers import kernel_processes
from engine_helpers import backend, make_rlm, make_srlm, repl

import lmrepl
import lmrepl.kernels
from lmrepl import RLM, SRLM, ConfigurationError, ContextError
from lmrepl.testing import ScriptedServer

#: Construction only (no run): a backend whose settings pass every check.
OFFLINE = {"backend": "openai", "backend_kwargs": {"model_name": "m", "api_key": "k"}}


# -- bad contexts are refused before anything starts (kept first: no kernel runs yet) --
@pytest.mark.parametrize("context", [None, 5, 2.5, True, 1j])
def test_scalar_context_is_refused_before_any_kernel(
    scripted_server: ScriptedServer, context: object
) -> None:
    scripted_server.script([repl("FINAL(1)")])
    rlm = make_rlm(scripted_server, environment="kernel")
    before = kernel_processes()
    with pytest.raises(ContextError) as info:
        rlm.completion(context, "q")
    message = str(info.value)
    assert isinstance(info.value, TypeError)
    assert type(context).__name__ in message
    for accepted in ("str", "bytes", "list", "dict", "picklable object"):
        assert accepted in message
    assert kernel_processes() <= before  # no kernel was started for it
    assert scripted_server.model_requests() == []
    # SRLM refuses the same way (on the local REPL: an SRLM warms kernels when built).
    with pytest.raises(ContextError, match="holds nothing to search"):
        make_srlm(scripted_server).completion(context, "q")
    assert scripted_server.model_requests() == []


# -- misspelled and extra arguments --------------------------------------------------
def test_misspelled_rlm_keyword_names_the_closest() -> None:
    with pytest.raises(ConfigurationError) as info:
        RLM(max_iteration=3, **OFFLINE)  # type: ignore[call-arg]
    message = str(info.value)
    assert isinstance(info.value, TypeError)  # code that caught Python's TypeError still does
    assert "unknown RLM argument 'max_iteration'" in message
    assert "(did you mean 'max_iterations'?)" in message
    assert "accepted: backend, backend_kwargs," in message


def test_misspelled_srlm_keyword_names_the_closest_of_srlm_and_rlm() -> None:
    with pytest.raises(ConfigurationError) as info:
        SRLM(n_candidate=3, environment="local", **OFFLINE)
    message = str(info.value)
    assert "unknown SRLM argument 'n_candidate' (did you mean 'n_candidates'?)" in message
    assert "max_iterations" in message and "candidate_parallel" in message  # both lists
    with pytest.raises(ConfigurationError, match=r"did you mean 'max_iterations'\?"):
        SRLM(max_iteration=3, environment="local", **OFFLINE)


def test_positional_and_duplicate_arguments_are_configuration_errors() -> None:
    with pytest.raises(ConfigurationError, match=r"RLM\(\) takes at most 29 positional"):
        RLM(*([None] * 30))  # type: ignore[misc]
    with pytest.raises(ConfigurationError, match="multiple values for argument"):
        SRLM(3, direct_threshold=4, environment="local", **OFFLINE)  # type: ignore[misc]


def _bad_progress() -> object:
    from lmrepl.progress import TerminalProgress

    return TerminalProgress(refresh_per_second=0)


def _bad_server() -> object:
    from lmrepl.local.server import LocalServer

    return LocalServer(port=70000)


@pytest.mark.parametrize(
    ("make", "label"),
    [
        (lambda: RLM(environment_kwargs={"cell_timeout": -1}, **OFFLINE), "cell_timeout"),
        (lambda: RLM(backend="openai", backend_kwargs={"model_name": ""}), "model_name"),
        (lambda: lmrepl.kernels.configure(size=-1), "size"),
        (_bad_progress, "refresh_per_second"),
        (_bad_server, "port"),
        (lambda: ScriptedServer(["a"], responder=lambda r: "b"), "replies or responder"),
    ],
)
def test_converted_errors_are_configuration_errors(make: Callable[[], object], label: str) -> None:
    with pytest.raises(ConfigurationError, match=label) as info:
        make()
    assert isinstance(info.value, ValueError) and isinstance(info.value, TypeError)


# -- defaults chosen by environment variables say so ---------------------------------
def test_backend_chosen_by_openai_api_key_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    with pytest.raises(ConfigurationError) as info:
        RLM(backend_kwargs={"model_nam": "m"}, environment="local")
    assert "model_name" in str(info.value)
    assert "backend 'openai' was chosen because OPENAI_API_KEY is set" in str(info.value)

    # At completion(): an unreachable server whose URL came from OPENAI_BASE_URL.
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    rlm = RLM(backend_kwargs={"model_name": "m"}, environment="local")
    with pytest.raises(ConfigurationError) as info:
        rlm.completion("c", "q")
    message = str(info.value)
    assert "127.0.0.1:9" in message
    assert "base_url was set by OPENAI_BASE_URL" in message
    assert "chosen because OPENAI_API_KEY is set" in message


def test_local_backend_chosen_without_openai_api_key_says_so(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    missing = tmp_path / "no-model.gguf"
    rlm = RLM(backend_kwargs={"model_path": str(missing)}, environment="local")
    assert rlm.backend == "local"
    with pytest.raises(ConfigurationError) as info:
        rlm.completion("c", "q")  # the check fails before any model is loaded
    assert str(missing) in str(info.value)
    assert "chosen because OPENAI_API_KEY is not set" in str(info.value)


# -- empty contexts and missing questions --------------------------------------------
EMPTY_OR_NOT = "state = 'full' if context else 'empty'\nprint(state)"


def test_empty_context_warns_and_still_runs(scripted_server: ScriptedServer) -> None:
    scripted_server.script([repl(EMPTY_OR_NOT), repl("FINAL(state)")])
    with pytest.warns(UserWarning, match="the model will see an empty context") as caught:
        result = make_rlm(scripted_server).completion("", "Is the context empty?")
    assert result.response == "empty"
    assert caught[0].filename == __file__  # the warning points at the caller's line
    # A non-empty context does not warn.
    scripted_server.script([repl(EMPTY_OR_NOT), repl("FINAL(state)")])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert make_rlm(scripted_server).completion("abc", "Empty?").response == "full"


def test_missing_question_is_refused_unless_the_context_is_a_string(
    scripted_server: ScriptedServer,
) -> None:
    rlm = make_rlm(scripted_server)
    for context in (["a", "b"], {"k": "v"}, b"bytes", ""):
        with pytest.raises(ConfigurationError, match=r"root_prompt \(the question\) must be"):
            rlm.completion(context)
    with pytest.raises(ConfigurationError, match="root_prompt"):
        make_srlm(scripted_server).completion(["a"])
    for question in ("", "   ", 5):
        with pytest.raises(ConfigurationError, match="root_prompt") as info:
            rlm.completion("ctx", question)  # type: ignore[arg-type]
        assert "a non-empty string" in str(info.value)
    assert scripted_server.model_requests() == []
    # lm-repl's call shape: the request inside a str context, no question.
    scripted_server.script([repl("FINAL(context.upper())")])
    assert rlm.completion("do it").response == "DO IT"


# -- custom tools ----------------------------------------------------------------------
def test_non_callable_tool_is_refused_and_the_explicit_form_works(
    scripted_server: ScriptedServer,
) -> None:
    for name in ("custom_tools", "custom_sub_tools"):
        with pytest.raises(ConfigurationError) as info:
            RLM(**{name: {"LIMIT": 3}}, **OFFLINE)  # type: ignore[arg-type]
        message = str(info.value)
        assert f"{name}['LIMIT'] must be callable" in message
        assert "{'tool': value, 'description': '...'}" in message
    scripted_server.script([repl("print(LIMIT * 2)"), repl("FINAL(LIMIT * 2)")])
    rlm = make_rlm(scripted_server, custom_tools={"LIMIT": {"tool": 3, "description": "a cap"}})
    assert rlm.completion("c", "Twice the limit?").response == "6"


# -- public names ------------------------------------------------------------------------
def test_public_names_are_exported_lazily() -> None:
    for name in ("RLM", "SRLM", "RLMLogger", "read_log", "SearchRecord", "LimitExceeded"):
        assert name in lmrepl.__all__
        assert name in dir(lmrepl)
    script = (
        "import sys, lmrepl\n"
        "assert 'lmrepl.srlm' not in sys.modules, 'import lmrepl loaded lmrepl.srlm'\n"
        "ns = {}\n"
        "exec('from lmrepl import *', ns)\n"
        "missing = [n for n in lmrepl.__all__ if n not in ns]\n"
        "assert not missing, missing\n"
        "from lmrepl.srlm import SRLM\n"
        "from lmrepl.logger import read_log\n"
        "assert ns['SRLM'] is SRLM and ns['read_log'] is read_log\n"
        "print('ok')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "ok"


# -- lm-repl's kernel_mode -----------------------------------------------------------------
def test_kernel_mode_subprocess_runs_cells_in_a_kernel(scripted_server: ScriptedServer) -> None:
    scripted_server.script([repl("import os\npid = os.getpid()\nprint(pid)"), repl("FINAL(pid)")])
    rlm = RLM(
        **backend(scripted_server),
        environment="ipython",
        environment_kwargs={"kernel_mode": "subprocess", "cell_timeout": 60},
    )
    assert rlm.environment == "kernel"
    result = rlm.completion("c", "Which process runs your code?")
    assert int(result.response) != os.getpid()  # a separate ipykernel process
    assert result.record is not None and result.record.environment == "kernel"


def test_kernel_mode_in_process_is_the_local_repl(scripted_server: ScriptedServer) -> None:
    scripted_server.script([repl("import os\npid = os.getpid()\nprint(pid)"), repl("FINAL(pid)")])
    rlm = RLM(
        **backend(scripted_server),
        environment="ipython",
        environment_kwargs={"kernel_mode": "in_process"},
    )
    assert rlm.environment == "local"
    assert int(rlm.completion("c", "Which process?").response) == os.getpid()


@pytest.mark.parametrize(
    ("environment", "kwargs", "match"),
    [
        ("ipython", {"kernel_mode": "thread"}, "one of 'subprocess', 'in_process'"),
        ("local", {"kernel_mode": "subprocess"}, "use environment='kernel'"),
        ("ipython", {"kernel_mod": "subprocess"}, "did you mean 'kernel_mode'"),
        ("kernel", {"kernel_mode": "in_process", "memory_limit_mb": 512}, "in this process"),
    ],
)
def test_bad_kernel_mode_is_a_configuration_error(
    environment: str, kwargs: dict[str, Any], match: str
) -> None:
    with pytest.raises(ConfigurationError, match=match):
        RLM(environment=environment, environment_kwargs=kwargs, **OFFLINE)

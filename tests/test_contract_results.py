"""Issue 14 contracts: the results page, confidence and code-answer warnings, logs, serve."""

from __future__ import annotations

import ast
import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from engine_helpers import by_request_order, last_user, make_rlm, make_srlm, repl
from pydantic import BaseModel

from lmrepl import records
from lmrepl.confidence import CONFIDENCE_REMINDER
from lmrepl.local.__main__ import PASTE_PREFIX
from lmrepl.logger import RLMLogger, read_log, read_records
from lmrepl.results_doc import render
from lmrepl.selection import looks_like_code
from lmrepl.testing import ScriptedServer
from lmrepl.types import ModelUsageSummary, RLMChatCompletion
from lmrepl_jupyter.result import SRLMResult

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "results.md"
CODE_ANSWER = "llm_query('llm_query(\"disk full problem\") -> str')"


def _keys(data: Any, found: set[str]) -> set[str]:
    """Every key at every depth of JSON-like ``data``, except user-named ones (models)."""
    if isinstance(data, dict):
        for key, value in data.items():
            found.add(key)
            if key != "model_usage_summaries":
                _keys(value, found)
            else:
                for per_model in value.values():
                    _keys(per_model, found)
    elif isinstance(data, list):
        for item in data:
            _keys(item, found)
    return found


def test_results_page_is_generated_and_names_every_field_and_real_key(
    scripted_server: ScriptedServer,
) -> None:
    page = PAGE.read_text(encoding="utf-8")
    assert page == render(), "docs/results.md is stale: python -m lmrepl.results_doc > it"
    models: list[type[BaseModel]] = [RLMChatCompletion, ModelUsageSummary]
    models += [
        m
        for m in vars(records).values()
        if isinstance(m, type) and issubclass(m, BaseModel) and m.__module__ == records.__name__
    ]
    for model in models:
        for name in model.model_fields:
            assert f"| `{name}` |" in page, f"{model.__name__}.{name} is not on the page"
    for word in ("status", "stop_reason", "selection_reason", "survivors", "warnings"):
        assert f"`{word}`" in page
    # The keys real runs put in metadata, at every depth, are all documented.
    scripted_server.script(replies=[repl("n = 25\nFINAL(n)", confidence=70)] * 3)
    rlm_meta = make_rlm(scripted_server).completion("log text", "how many?").metadata
    srlm = make_srlm(scripted_server, n_candidates=2, confidence_elicitation=True)
    srlm_meta = srlm.completion("log text", "how many?").metadata
    for key in _keys(json.loads(json.dumps(rlm_meta | srlm_meta, default=str)), set()):
        assert f"| `{key}` |" in page, f"metadata key {key!r} is not on the page"


def test_confidence_elicitation_without_parsed_confidence_is_a_warning(
    scripted_server: ScriptedServer,
) -> None:
    # Candidate 0 reports its confidence without the braces; candidate 1 reports none.
    replies = ['```repl\nn = 7\nFINAL(n)\n```\n"confidence": 85', repl("n = 7\nFINAL(n)")]
    scripted_server.script(responder=by_request_order(lambda n: replies[(n - 1) % 2]))
    srlm = make_srlm(scripted_server, n_candidates=2, confidence_elicitation=True)
    meta = srlm.completion("ctx", "what is n?").metadata
    assert meta["candidates"][0]["steps"][0]["confidence"] == 85.0
    assert meta["candidates"][0]["vc"] is not None and meta["candidates"][1]["vc"] is None
    assert any("candidate 1 reported no parsable" in w for w in meta["warnings"])
    # Nothing parsed at all: the record says VC took no part.
    scripted_server.script(replies=[repl("n = 7\nFINAL(n)")] * 2)
    meta = srlm.completion("ctx", "what is n?").metadata
    assert meta["selection_reason"] != "vc_len"
    assert any("no step of any candidate" in w for w in meta["warnings"])
    # Elicitation off: no confidence is expected, so no warning.
    off = make_srlm(scripted_server, n_candidates=2)
    scripted_server.script(replies=[repl("n = 7\nFINAL(n)")] * 2)
    assert off.completion("ctx", "what is n?").metadata["warnings"] == []


def test_every_step_feedback_reminds_of_the_confidence_line(
    scripted_server: ScriptedServer,
) -> None:
    scripted_server.script(replies=[repl("x = 1"), repl("FINAL(x)")])
    make_srlm(scripted_server, confidence_elicitation=True).completion("ctx", "q")
    feedback = last_user(scripted_server.model_requests()[1])
    assert CONFIDENCE_REMINDER in feedback
    scripted_server.script(replies=[repl("x = 1"), repl("FINAL(x)")])
    make_srlm(scripted_server).completion("ctx", "q")
    assert CONFIDENCE_REMINDER not in last_user(scripted_server.model_requests()[-1])


def test_code_looking_answers_are_kept_but_not_votes(scripted_server: ScriptedServer) -> None:
    code_reply = repl(f"FINAL({CODE_ANSWER!r})")
    replies = [code_reply, repl("FINAL('disk full')"), code_reply]
    scripted_server.script(responder=by_request_order(lambda n: replies[(n - 1) % 3]))
    srlm = make_srlm(scripted_server, n_candidates=3)
    result = srlm.completion("ctx", "what went wrong?")
    meta = result.metadata
    # Two identical code answers would outvote the prose one; they are not votes.
    assert result.response == "disk full" and meta["winner"] == 1
    assert meta["survivors"] == [1]
    assert meta["candidates"][0]["answer"] == CODE_ANSWER  # kept on it
    assert meta["candidates"][0]["cluster"] is None
    for index in (0, 2):
        assert any(w.startswith(f"candidate {index}'s answer") for w in meta["warnings"])
    for code in [
        CODE_ANSWER,
        "FINAL(n)",
        "import re",
        "n = context.count('ERROR')",
        "count(text) -> int",
        "context[:500]",
        "def f(x):\n    return x",
    ]:
        assert looks_like_code(code), code
    for prose in [
        "25",
        "f(x) = 2x",
        "x = 5",
        "y = sin(x)",
        "a -> b -> c",
        "disk full",
        "Node.js (v20)",
        "3.14",
        "import duties rose",
        "E = mc^2",
    ]:
        assert not looks_like_code(prose), prose


def test_hostile_answers_and_confidence_lines_cannot_stall_the_vote(
    scripted_server: ScriptedServer,
) -> None:
    # Model code controls what it submits and the model what it replies: a 1 MB answer
    # shaped to make the code check backtrack, and a reply with 50,000 confidence-like
    # fragments, go through the real engine and the search; the vote still finishes
    # (a stall would hit the test timeout) and the hostile answer is not a vote.
    hostile = "x = " + "abcd(" * 200_000
    noise = '"confidence": 1x ' * 50_000 + '\n{"confidence": 80}'
    replies = [
        f"```repl\nFINAL({hostile!r})\n```\n{noise}",
        repl("FINAL(7)", confidence=90),
    ]
    scripted_server.script(responder=by_request_order(lambda n: replies[(n - 1) % 2]))
    srlm = make_srlm(
        scripted_server,
        n_candidates=2,
        confidence_elicitation=True,
        environment="kernel",
        environment_kwargs={"max_output_chars": 2000},
    )
    meta = srlm.completion("ctx", "what is n?").metadata
    assert meta["answer"] == "7"
    assert meta["candidates"][0]["answer"] == hostile
    assert meta["candidates"][0]["cluster"] is None
    assert meta["survivors"] == [1]
    assert meta["candidates"][0]["steps"][0]["confidence"] == 80.0
    assert any("candidate 0" in w for w in meta["warnings"])


def test_logs_read_back_and_load_says_what_a_log_is(
    scripted_server: ScriptedServer, tmp_path: Path
) -> None:
    logger = RLMLogger(tmp_path / "logs")
    scripted_server.script(
        responder=by_request_order(lambda n: repl(f"FINAL({['11', '22', '22'][(n - 1) % 3]!r})"))
    )
    make_rlm(scripted_server, logger=logger).completion("ctx", "first?")
    srlm = make_srlm(scripted_server, n_candidates=2, logger=logger)
    done = srlm.completion("ctx", "second?")
    logger.close()
    assert [r.kind for r in read_records(logger.path)] == ["rlm", "srlm"]
    last = SRLMResult.from_log(logger.path)
    assert last.record == done.record  # the finished search, exactly as returned
    first = SRLMResult.from_log(logger.path, index=0)
    assert (first.record.kind, first.answer, first.status) == ("rlm", "11", "done")
    with pytest.raises(IndexError, match="holds 2"):
        SRLMResult.from_log(logger.path, index=2)
    with pytest.raises(ValueError, match=r"event log.*SRLMResult\.from_log"):
        SRLMResult.load(logger.path)
    # A line from another lmrepl version is skipped with a warning, not a failure.
    lines = logger.path.read_text(encoding="utf-8").splitlines()
    odd = json.dumps({"kind": "future_event", "run_id": "x", "new": 1})
    logger.path.write_text("\n".join([lines[0], odd, *lines[1:]]) + "\n", encoding="utf-8")
    with pytest.warns(UserWarning, match="future_event"):
        assert len(read_log(logger.path)) == len(lines)
    # lmrepl view reads a log too.
    out = subprocess.run(
        [sys.executable, "-m", "lmrepl.cli", "view", str(logger.path), "-o", str(tmp_path / "v")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr


@pytest.mark.model
def test_serve_prints_arguments_that_a_real_client_can_use() -> None:
    openai = pytest.importorskip("openai")
    pytest.importorskip("xllamacpp")
    proc = subprocess.Popen(
        [sys.executable, "-m", "lmrepl.cli", "serve", "--parallel", "1", "--ctx", "1024"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        while not (lines and lines[-1].startswith(PASTE_PREFIX)):
            line = proc.stdout.readline()
            assert line, f"serve ended early: {lines}"
            lines.append(line.rstrip("\n"))
        kwargs = ast.literal_eval(lines[-1][len(PASTE_PREFIX) :])
        assert set(kwargs) == {"model_name", "base_url", "api_key"}
        assert f"model name: {kwargs['model_name']}" in lines
        client = openai.OpenAI(base_url=kwargs["base_url"], api_key=kwargs["api_key"])
        assert [m.id for m in client.models.list().data] == [kwargs["model_name"]]
        reply = client.chat.completions.create(
            model=kwargs["model_name"],
            messages=[{"role": "user", "content": "Say hi."}],
            max_tokens=4,
        )
        assert reply.choices[0].message.content
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0

"""SRLMResult: MIME bundle, the versioned JSON record, save/load, static HTML."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from test_jupyter_panel_state import search_events

from lmrepl.types import ModelUsageSummary, RLMChatCompletion, UsageSummary
from lmrepl_jupyter import MIME_TYPE, SRLMResult
from lmrepl_jupyter.panel_state import PanelState
from lmrepl_jupyter.record import trajectory_json_schema


def make_result(question: str = "q?") -> SRLMResult:
    state = PanelState(kind="srlm", question=question, n_candidates=3)
    state.apply_all(search_events(["42", "42", "<b>41</b>"], winner=1))
    usage = UsageSummary(
        model_usage_summaries={"m": ModelUsageSummary(total_calls=3, total_output_tokens=30)}
    )
    comp = RLMChatCompletion(
        root_model="m",
        response="42",
        usage_summary=usage,
        execution_time=2.5,
        metadata={"mode": "rlm", "winner": 1},
    )
    state.finish("done", answer="42", execution_time=2.5)
    return SRLMResult(state.record, comp)


def test_mimebundle_has_the_three_types() -> None:
    res = make_result()
    bundle = res._repr_mimebundle_()
    assert set(bundle) == {MIME_TYPE, "text/html", "text/plain"}
    assert MIME_TYPE == "application/vnd.lmrepl.trajectory+json"
    record = bundle[MIME_TYPE]
    assert record["schema_version"] == "1"
    json.dumps(record)  # plain JSON data
    plain = bundle["text/plain"]
    assert plain.splitlines()[0] == "42"
    assert "winner #1 (2/3 votes)" in plain and "srlm done" in plain
    assert set(res._repr_mimebundle_(include={"text/plain"})) == {"text/plain"}
    assert "text/html" not in res._repr_mimebundle_(exclude={"text/html"})


def test_record_validates_against_the_published_schema() -> None:
    record = make_result().to_dict()
    jsonschema.validate(record, trajectory_json_schema())
    assert record["kind"] == "srlm" and record["winner"] == 1
    assert [c["index"] for c in record["candidates"]] == [0, 1, 2]
    cand = record["candidates"][0]
    for key in ("status", "answer", "cluster", "vc", "length", "score", "steps", "error"):
        assert key in cand
    assert set(record["candidates"][0]["steps"][0]) >= {"code", "output", "confidence"}
    assert record["clusters"][0] == {"answer": "42", "members": [0, 1], "votes": 2}


def test_result_attributes() -> None:
    res = make_result()
    assert res.answer == "42" and res.winner == 1 and res.status == "done"
    assert len(res.candidates) == 3 and res.clusters[1]["votes"] == 1
    assert res.metadata["mode"] == "rlm"
    assert res.usage is not None and res.usage.total_output_tokens == 30
    assert res.execution_time == 2.5
    assert str(res) == "42"


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    res = make_result()
    path = res.save(tmp_path / "run.json")
    back = SRLMResult.load(path)
    assert back.to_dict() == res.to_dict()
    assert back.completion is None and back.usage is None
    assert back.execution_time == 2.5
    assert back._repr_mimebundle_()["text/html"] == res._repr_mimebundle_()["text/html"]


def test_load_refuses_a_foreign_schema_version(tmp_path: Path) -> None:
    data = make_result().to_dict()
    data["schema_version"] = "99"
    p = tmp_path / "x.json"
    p.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="schema_version"):
        SRLMResult.load(p)


def test_static_html_is_escaped_and_has_no_script() -> None:
    res = make_result(question="<script>alert(1)</script> what?")
    html = res._repr_mimebundle_()["text/html"]
    assert "<script" not in html.lower()
    assert "&lt;script&gt;" in html
    assert "&lt;b&gt;41&lt;/b&gt;" in html  # model output is text, not markup
    assert html.count('class="lmrepl-candidate') == 3
    assert html.count("lmrepl-winner") == 1
    assert "VC·Len" in html


def test_failed_result_summary() -> None:
    state = PanelState(kind="srlm", question="q", n_candidates=2)
    state.finish("failed", error="BackendError: connection refused")
    res = SRLMResult(state.record)
    assert res.answer is None and res.status == "failed"
    text = res._repr_mimebundle_()["text/plain"]
    assert text.startswith("(no answer)") and "connection refused" in text
    assert [c["status"] for c in res.candidates] == ["failed", "failed"]

"""SRLMResult: MIME bundle, the versioned JSON record, save/load, static HTML."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from recorded import FILES, record

from lmrepl.live import LiveState
from lmrepl.records import SCHEMA_VERSION, json_schema
from lmrepl.types import ModelUsageSummary, RLMChatCompletion, UsageSummary
from lmrepl_jupyter import MIME_TYPE, SRLMResult


def make_result(question: str | None = None) -> SRLMResult:
    rec = record("srlm_search")
    if question is not None:
        rec.question = question
    usage = UsageSummary(
        model_usage_summaries={"m": ModelUsageSummary(total_calls=7, total_output_tokens=112)}
    )
    comp = RLMChatCompletion(
        root_model="m",
        response=rec.answer or "",
        usage_summary=usage,
        execution_time=2.5,
        metadata=rec.model_dump(),
        record=rec,
    )
    return SRLMResult(rec, comp)


def test_mimebundle_has_the_three_types() -> None:
    res = make_result()
    bundle = res._repr_mimebundle_()
    assert set(bundle) == {MIME_TYPE, "text/html", "text/plain"}
    assert MIME_TYPE == "application/vnd.lmrepl.trajectory+json"
    data = bundle[MIME_TYPE]
    assert data["schema_version"] == SCHEMA_VERSION
    json.dumps(data)  # plain JSON data
    plain = bundle["text/plain"]
    assert plain.splitlines()[0] == "42.0"
    assert "winner #1 (2/2 votes)" in plain and "srlm done" in plain
    assert set(res._repr_mimebundle_(include={"text/plain"})) == {"text/plain"}
    assert "text/html" not in res._repr_mimebundle_(exclude={"text/html"})


def test_record_validates_against_the_published_schema() -> None:
    data = make_result().to_dict()
    jsonschema.validate(data, json_schema())
    assert data["kind"] == "srlm" and data["winner"] == 1
    assert [c["index"] for c in data["candidates"]] == [0, 1, 2]
    cand = data["candidates"][0]
    for key in ("status", "answer", "cluster", "vc", "length", "score", "steps", "error"):
        assert key in cand
    assert set(cand["steps"][0]) >= {"code", "output", "confidence"}
    assert cand["children"][0]["depth"] == 1 and cand["subcalls"][0]["function"] == "llm_query"
    assert data["clusters"][0] == {
        "answer": "42",
        "members": [0, 1],
        "votes": 2,
        "normalized": "42",
    }


def test_result_attributes() -> None:
    res = make_result()
    assert res.answer == "42.0" and res.winner == 1 and res.status == "done"
    assert len(res.candidates) == 3 and res.clusters[0]["votes"] == 2
    assert res.metadata["mode"] == "rlm"
    assert res.usage is not None and res.usage.total_output_tokens == 112
    assert res.execution_time == 2.5
    assert str(res) == "42.0"


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    res = make_result()
    path = res.save(tmp_path / "run.json")
    back = SRLMResult.load(path)
    assert back.to_dict() == res.to_dict()
    assert back.completion is None and back.usage is None
    assert back.execution_time == res.record.execution_time
    assert back._repr_mimebundle_()["text/html"] == res._repr_mimebundle_()["text/html"]


def test_load_refuses_a_foreign_schema_version(tmp_path: Path) -> None:
    data = make_result().to_dict()
    data["schema_version"] = "99"
    p = tmp_path / "x.json"
    p.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="schema_version"):
        SRLMResult.load(p)


def test_a_schema_1_record_still_loads() -> None:
    """Notebooks saved before schema 2 counted sub-calls and children per candidate."""
    old = json.loads((FILES / "schema1_record.json").read_text("utf-8"))
    assert old["schema_version"] == "1"
    res = SRLMResult.from_dict(old)
    assert res.record.schema_version == SCHEMA_VERSION
    assert res.winner == old["winner"] and len(res.candidates) == len(old["candidates"])


def test_static_html_is_escaped_and_has_no_script() -> None:
    res = make_result(question="<script>alert(1)</script> what?")
    res.record.candidates[0].answer = "<b>41</b>"
    html = res._repr_mimebundle_()["text/html"]
    assert "<script" not in html.lower()
    assert "&lt;script&gt;" in html
    assert "&lt;b&gt;41&lt;/b&gt;" in html  # model output is text, not markup
    assert html.count('class="lmrepl-candidate') == 3
    assert html.count("lmrepl-winner") == 1
    assert "VC·Len" in html


def test_failed_result_summary() -> None:
    state = LiveState(kind="srlm", question="q", n_candidates=2)
    state.finish("failed", error="BackendError: connection refused")
    res = SRLMResult(state.record)
    assert res.answer is None and res.status == "failed"
    text = res._repr_mimebundle_()["text/plain"]
    assert text.startswith("(no answer)") and "connection refused" in text
    assert [c["status"] for c in res.candidates] == ["failed", "failed"]


def test_a_single_trajectory_shows_no_vote() -> None:
    html = SRLMResult(record("rlm_run"))._repr_mimebundle_()["text/html"]
    assert "VC·Len" not in html and "votes" not in html
    assert html.count('class="lmrepl-candidate lmrepl-winner"') == 1

"""docs/results.md, rendered from the record models: ``python -m lmrepl.results_doc``.

The page lists every field of ``RLMChatCompletion`` and of the records behind
``metadata`` with its type and meaning, so it cannot drift from the models: a test
compares the committed page with :func:`render`. A field's meaning is its pydantic
``Field(description=...)``; the few fields without one take theirs from
``_MEANINGS`` here, and a field with neither stops the rendering. The example records
come from ``lmrepl.results_examples``.
"""

from __future__ import annotations

import json
import types
import typing
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel

from lmrepl import records as rec
from lmrepl.results_examples import example_rlm_metadata, example_search
from lmrepl.scoring import Reason
from lmrepl.types import ModelUsageSummary, RLMChatCompletion, UsageSummary

__all__ = ["MODELS", "render"]

#: Every model the page documents, in page order, with its section title.
MODELS: list[tuple[type[BaseModel], str]] = [
    (RLMChatCompletion, "The result: `RLMChatCompletion`"),
    (rec.SearchRecord, "SRLM metadata: `SearchRecord`"),
    (rec.RunRecord, "RLM metadata and every trajectory: `RunRecord`"),
    (rec.CandidateRecord, "`candidates[i]`: `CandidateRecord`"),
    (rec.StepRecord, "`steps[i]`: `StepRecord`"),
    (rec.CellRecord, "`cells[i]`: `CellRecord`"),
    (rec.SubcallRecord, "`subcalls[i]`: `SubcallRecord`"),
    (rec.Cluster, "`clusters[i]`: `Cluster`"),
    (ModelUsageSummary, "`usage`: per model (`ModelUsageSummary`)"),
]

# Meanings of fields whose model gives no description, by field name; (model, name)
# wins where one name means different things in different models.
_MEANINGS: dict[str, str] = {
    "model_calls": "Model calls, every depth included.",
    "input_tokens": "Input (prompt) tokens, every depth included.",
    "output_tokens": "Output (completion) tokens, every depth included.",
    "cost": "Cost in USD (0 where no price is known).",
    "schema_version": 'The schema version ("2"); readers refuse one they do not know.',
    "kind": "srlm: a search of K candidates; rlm: one RLM trajectory, stored as candidate 0.",
    "mode": "rlm: trajectories in a REPL; direct: one model call, no REPL (SPEC §6 routing).",
    "question": "The question (root_prompt).",
    "context_info": "The engine's short description of the context (type and size).",
    "error": "Why it failed, stopped or was cancelled; None otherwise.",
    "answer": "The submitted answer; None without one.",
    "winner": "Index of the winning candidate; None when no candidate answered.",
    "survivors": "Candidates of the largest cluster(s), ties pooled: the ones scores decide.",
    "backend": "The root model's backend (openai, anthropic, local, replay).",
    "model": "The root model's name.",
    "environment": "The REPL: kernel or local (in-process).",
    "n_candidates": "K, the number of candidate trajectories.",
    "candidate_parallel": "How many candidates ran at a time.",
    "started_at": "Unix time (seconds) it started.",
    "finished_at": "Unix time (seconds) it ended; None while it runs.",
    "execution_time": "Wall seconds.",
    "config": "%%srlm only: the engine arguments used; secrets such as api_key are '***'.",
    "clusters": "The self-consistency vote: groups of equivalent answers, largest first.",
    "candidates": "One per trajectory; index = position.",
    "run_id": "Id of this trajectory (a search's candidate N: the search's id + -cN).",
    "parent_run_id": "The trajectory whose rlm_query started this one; None for a root.",
    "depth": "0 for a root trajectory or candidate; a child RLM is one deeper.",
    "steps": "One per iteration (model turn), in order.",
    "subcalls": "The llm_query/rlm_query calls this trajectory made, in order.",
    "iterations": "Model turns taken.",
    "index": "The candidate's number, 0 to K-1.",
    "iteration": "The turn's number, from 1.",
    "reply": "The model's whole reply.",
    "cells": "The reply's code blocks, each as it ran.",
    "submitted": "Whether this step submitted the answer (FINAL, FINAL_VAR, answer['ready']).",
    "duration": "Seconds it took.",
    "code": "The block's code.",
    "function": "llm_query, rlm_query, or a batched form.",
    "batch_index": "The slot in a llm_query_batched/rlm_query_batched call; None otherwise.",
    "votes": "How many candidates' answers are in it (len(members)).",
    "normalized": "The comparison form all members share (lmrepl.selection.normalize_answer).",
    "root_model": "The root model's name.",
    "prompt": "The question the run answered.",
    "response": "The answer: the winner's (SRLM) or the submitted one (RLM); '' without one.",
    "usage_summary": "UsageSummary: calls, tokens and cost per model, every depth included.",
    "metadata": "The run as plain data: the tables below say which keys, for RLM and SRLM.",
    "record": "The whole run as one SearchRecord (not serialised with the result).",
    "total_calls": "Model calls.",
    "total_input_tokens": "Input tokens.",
    "total_output_tokens": "Output tokens.",
    "total_cost": "Cost in USD.",
}
_MEANINGS_IN: dict[tuple[str, str], str] = {
    ("SearchRecord", "status"): "How the search ended (see status and stop_reason below).",
    ("SearchRecord", "answer"): "The selected answer (the winner's); None without a winner.",
    ("SearchRecord", "execution_time"): "Wall seconds of the whole completion().",
    ("RunRecord", "status"): "How the trajectory ended (see status and stop_reason below).",
    ("StepRecord", "answer"): "The answer this step submitted; None if it submitted none.",
    ("SubcallRecord", "error"): "Why the call failed; None when it answered.",
    ("SubcallRecord", "model"): "The model it asked.",
    ("Cluster", "answer"): "The members' most frequent spelling of the answer.",
}

#: What each ``selection_reason`` means (docs/selection.md); checked against scoring.
_REASONS: dict[str, str] = {
    "grounded": "of the clusters tied on votes only one had a grounded member; it won",
    "vc_len": "the survivor with the best VC·Len won",
    "shortest": "no survivor had a VC (elicitation off or nothing parsed): the shortest "
    "trace in output tokens won",
    "only": "a single survivor (also every plain RLM run and direct mode)",
    "none": "no usable answer: no winner",
}

_RLM_EXTRA = {
    "mode": "Always rlm for an RLM.",
    "context_info": "The engine's short description of the context (type and size).",
    "sandbox": "Where model code ran (as SearchRecord.sandbox).",
}


def _meaning(model: type[BaseModel], name: str) -> str:
    field = model.model_fields[name]
    text = field.description or _MEANINGS_IN.get((model.__name__, name)) or _MEANINGS.get(name)
    if not text:
        raise LookupError(f"{model.__name__}.{name} has no description: add one in records.py")
    return " ".join(text.split())


def _type(ann: Any) -> str:
    """A field's type in the page's words (JSON types, ``|`` escaped for tables)."""
    origin, args = get_origin(ann), get_args(ann)
    if ann is type(None):
        return "null"
    if origin is Literal:
        return r" \| ".join(f'`"{a}"`' for a in args)
    if origin in (typing.Union, types.UnionType):
        return r" \| ".join(_type(a) for a in args)
    if origin is list:
        return f"list of {_type(args[0])}"
    if origin is dict or ann is dict:
        return "object"
    names = {str: "string", int: "int", float: "number", bool: "bool"}
    if ann in names:
        return names[ann]
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return f"`{ann.__name__}`"
    return "any"


def _own_fields(model: type[BaseModel]) -> list[str]:
    """Fields a section lists: a candidate's are only those a RunRecord lacks."""
    names = list(model.model_fields)
    if model is rec.CandidateRecord:
        return [n for n in names if n not in rec.RunRecord.model_fields]
    return names


def _table(model: type[BaseModel], names: list[str]) -> list[str]:
    rows = ["| key | type | meaning |", "|---|---|---|"]
    for name in names:
        ann = model.model_fields[name].annotation
        rows.append(f"| `{name}` | {_type(ann)} | {_meaning(model, name)} |")
    return rows


def _dump(data: Any, pad: str = "") -> str:
    """JSON with one key per line, but a short list of plain values on one line."""
    inner = pad + " "
    if isinstance(data, dict) and data:
        items = [f"{inner}{json.dumps(k)}: {_dump(v, inner)}" for k, v in data.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    nested = any(isinstance(v, dict | list) for v in data) if isinstance(data, list) else False
    if isinstance(data, list) and (nested or len(json.dumps(data, ensure_ascii=False)) > 72):
        return "[\n" + ",\n".join(inner + _dump(v, inner) for v in data) + "\n" + pad + "]"
    return json.dumps(data, ensure_ascii=False)


def _json(data: Any) -> list[str]:
    json.loads(_dump(data))  # what the page shows must be JSON
    return ["```json", _dump(data), "```"]


def _status_section() -> list[str]:
    run_statuses = ", ".join(f"`{s}`" for s in get_args(rec.RunStatus))
    search_statuses = ", ".join(f"`{s}`" for s in get_args(rec.SearchStatus))
    reasons = ", ".join(f"`{s}`" for s in get_args(rec.StopReason))
    return [
        "## `status` and `stop_reason`",
        "",
        f"`status` says **what came of it**: a trajectory is one of {run_statuses}; a search "
        f"(the top level of SRLM metadata) one of {search_statuses}. `done` means there is "
        "an answer; `stopped` means a hard limit ended it; `queued`/`running` appear only "
        "while it runs (in the live views and in logs cut short).",
        "",
        f"`stop_reason` says **why it ended**: one of {reasons}. For a trajectory: "
        f"{_clean(rec.RunRecord.model_fields['stop_reason'].description)} For a search: "
        f"{_clean(rec.SearchRecord.model_fields['stop_reason'].description)}",
        "",
        'So `status == "done"` with `stop_reason == "max_iterations"` is an answer the '
        "model gave only when it was told its turns were up: treat it with more doubt than "
        "`answered`.",
        "",
    ]


def _clean(text: str | None) -> str:
    return " ".join((text or "").split())


def _selection_section() -> list[str]:
    if set(_REASONS) != set(get_args(Reason)):
        raise LookupError("selection reasons changed: update _REASONS in results_doc.py")
    lines = [
        "## `selection_reason`, `survivors`, `warnings`",
        "",
        "How the SRLM winner was chosen ([selection.md](selection.md)): finished candidates' "
        "answers are clustered (the self-consistency vote); answers that look like code "
        "(`llm_query('…') -> str`, `FINAL(x)`, `n = context.count(…)`) are not votes. The "
        "candidates of the largest cluster(s), ties pooled, are the `survivors`; a scored "
        'survivor (VC·Len, from the `{"confidence": N}` the model reported at each step) '
        "beats an unscored one. `selection_reason` is one of:",
        "",
    ]
    lines += [f"- `{name}`: {text}." for name, text in _REASONS.items()]
    lines += [
        "",
        f"`warnings`: {_clean(rec.SearchRecord.model_fields['warnings'].description)} "
        "Today: an answer that looks like code and was left out of the vote (naming the "
        'candidate), and `confidence_elicitation=True` with no `{"confidence": N}` parsed '
        "for some or all candidates (then VC is unknown and VC·Len took no part). A plain "
        "RLM's metadata has no `warnings`.",
        "",
        "There is no `trajectories` key: each trajectory is `candidates[i]` (SRLM) or the "
        "metadata itself (RLM), and the child RLMs a trajectory started are in its "
        "`children`, with the same keys.",
        "",
    ]
    return lines


def _reading_section() -> list[str]:
    return [
        "## Reading results and logs",
        "",
        "```python",
        "result = srlm.completion(context, question)",
        "result.response                    # the answer ('' without one)",
        "meta = result.metadata             # the tables below",
        "meta['winner'], meta['selection_reason'], meta['warnings']",
        "result.record                      # the same as a SearchRecord (RLM too)",
        "result.record.save('run.json')     # a trajectory file",
        "",
        "from lmrepl_jupyter import SRLMResult",
        "SRLMResult.load('run.json')        # a trajectory file (save / notebook output)",
        "SRLMResult.from_log(logger.path)   # the last run of an RLMLogger JSONL log",
        "SRLMResult.from_log(path, index=0) # the first of several runs in one log",
        "",
        "from lmrepl.logger import read_log, read_records",
        "read_log(path)                     # the typed events, in order",
        "read_records(path)                 # one SearchRecord per run in the log",
        "```",
        "",
        "A log (`RLM(logger=RLMLogger(dir))`) is JSONL, one event per line; a trajectory "
        "file is one JSON record. `SRLMResult.load` on a log raises a `ValueError` that "
        "says so and names `from_log`. `read_log` skips a cut-off last line, and skips "
        "event lines this lmrepl cannot read (another version's kinds or fields) with one "
        "`UserWarning` that counts them; any other malformed line is a `ValueError` naming "
        "it. A finished search comes back from a log exactly as `completion()` recorded "
        "it (its `search_finished` event holds the record); an RLM run, or a search cut "
        "short, is rebuilt from its events. `lmrepl view FILE` renders either kind of "
        "file as a standalone HTML page.",
        "",
    ]


def _usage_table() -> list[str]:
    """The keys of ``UsageSummary.to_dict()``, the ``usage`` of every record."""
    rows = [
        "A record's `usage` is `UsageSummary.to_dict()` (`result.usage_summary` is the "
        "same as a `UsageSummary`):",
        "",
        "| key | type | meaning |",
        "|---|---|---|",
    ]
    for key in UsageSummary().to_dict():
        if key == "model_usage_summaries":
            rows.append(f"| `{key}` | object | The model's name → the keys above. |")
        else:
            kind = _type(ModelUsageSummary.model_fields[key].annotation)
            rows.append(f"| `{key}` | {kind} | `{key}` summed over every model. |")
    return rows


def render() -> str:
    """The whole docs/results.md page."""
    out = [
        "# Results: what `completion()` returns",
        "",
        "<!-- Generated by `python -m lmrepl.results_doc > docs/results.md` from the models "
        "in lmrepl/records.py and lmrepl/types.py; tests/test_contract_results.py checks "
        "that this page is current. Do not edit by hand. -->",
        "",
        "`RLM.completion()` and `SRLM.completion()` return an `RLMChatCompletion`. Its "
        "`metadata` is plain data (a dict): for an **SRLM**, the whole search record "
        "(`SearchRecord`, the same document `result.record` holds and "
        "[trajectory-schema.md](trajectory-schema.md) versions); for an **RLM**, the one "
        "trajectory (`RunRecord`) with `mode`, `context_info` and `sandbox` added, so "
        "`metadata['steps']` works as in lm-repl.",
        "",
        *_reading_section(),
        *_status_section(),
        *_selection_section(),
    ]
    for model, title in MODELS:
        out += [f"## {title}", ""]
        if model is rec.RunRecord:
            out += [
                "An RLM's `metadata` has these keys plus:",
                "",
                "| key | type | meaning |",
                "|---|---|---|",
                *(f"| `{k}` | string \\| null | {v} |" for k, v in _RLM_EXTRA.items()),
                "",
                "Every trajectory (an SRLM candidate, a child in `children`) has these keys:",
                "",
            ]
        if model is rec.CandidateRecord:
            out += ["Every `RunRecord` key, plus:", ""]
        out += _table(model, _own_fields(model))
        if model is ModelUsageSummary:
            out += ["", *_usage_table()]
        out.append("")
    out += [
        "## Example: SRLM metadata",
        "",
        "K=3: candidates 0 and 1 answer `25` (one cluster, two votes), candidate 2 "
        "submitted code, which stays on it but is not a vote; of the two survivors only "
        "candidate 0 reported confidences, so it wins on VC·Len, and `warnings` say both.",
        "",
        *_json(example_search().model_dump(mode="json")),
        "",
        "## Example: RLM metadata",
        "",
        *_json(example_rlm_metadata()),
        "",
    ]
    return "\n".join(out)


if __name__ == "__main__":
    print(render(), end="")

"""Example records for docs/results.md, built from the models with realistic values.

They go through the real ``select_winner`` and ``search_warnings`` and are validated
by the record reader before the page shows them, so an example cannot show a key or
a value the models would refuse.
"""

from __future__ import annotations

import json
from typing import Any

from lmrepl import records as rec
from lmrepl.scoring import search_warnings, select_winner, vc_score
from lmrepl.types import ModelUsageSummary, UsageSummary

__all__ = ["example_rlm_metadata", "example_search"]

_T0 = 1764844800.0
_MODEL = "qwen2.5-coder-0.5b-instruct"
_QUESTION = "How many ERROR lines are in the log?"
_CONTEXT = "str with 81,330 characters in 1,500 lines"


def _usage(calls: int, tokens_in: int, tokens_out: int) -> dict[str, Any]:
    summary = UsageSummary(
        model_usage_summaries={
            _MODEL: ModelUsageSummary(
                total_calls=calls, total_input_tokens=tokens_in, total_output_tokens=tokens_out
            )
        }
    )
    return summary.to_dict()


def _step(i: int, code: str, output: str, conf: int | None, answer: str | None) -> rec.StepRecord:
    tail = f'\n{{"confidence": {conf}}}' if conf is not None else ""
    return rec.StepRecord(
        iteration=i,
        reply=f"```repl\n{code}\n```{tail}",
        code=code,
        output=output,
        confidence=conf,
        cells=[rec.CellRecord(code=code, output=output, duration=0.04)],
        submitted=answer is not None,
        answer=answer,
        duration=2.1,
    )


def _candidate(index: int, steps: list[rec.StepRecord], tokens_out: int) -> rec.CandidateRecord:
    answer = steps[-1].answer
    cand = rec.CandidateRecord(
        index=index,
        run_id=f"search-123456789-c{index}",
        question=_QUESTION,
        status="done",
        stop_reason="answered",
        answer=answer,
        steps=steps,
        iterations=len(steps),
        execution_time=2.2 * len(steps),
        length=tokens_out,
        started_at=_T0 + 0.1,
        finished_at=_T0 + 0.1 + 2.2 * len(steps),
    )
    cand.set_usage(_usage(len(steps), 900 * len(steps), tokens_out))
    cand.vc = vc_score([s.confidence for s in steps])
    return cand


def example_search() -> rec.SearchRecord:
    """A finished K=3 search: two votes for 25, one code-looking answer left out."""
    count = 'print(context.count("ERROR"))'
    first = _candidate(
        0,
        [
            _step(1, count, "25", 80, None),
            _step(2, 'FINAL(context.count("ERROR"))', "", 90, "25"),
        ],
        96,
    )
    first.grounded = True
    first.subcalls = [
        rec.SubcallRecord(
            function="llm_query",
            model=_MODEL,
            prompt="Is 'ERROR' the level field of these lines? ...",
            response="Yes.",
            duration=0.8,
        )
    ]
    second = _candidate(1, [_step(1, 'n = context.count("ERROR")\nFINAL(n)', "", None, "25")], 41)
    second.grounded = True
    code = "llm_query('count errors') -> str"
    third = _candidate(2, [_step(1, f"FINAL({code!r})", "", None, code)], 37)
    third.grounded = False
    record = rec.SearchRecord(
        kind="srlm",
        mode="rlm",
        question=_QUESTION,
        context_info=_CONTEXT,
        status="done",
        stop_reason="answered",
        backend="openai",
        model=_MODEL,
        environment="kernel",
        sandbox="bwrap",
        n_candidates=3,
        candidate_parallel=3,
        started_at=_T0,
        finished_at=_T0 + 4.6,
        execution_time=4.6,
        candidates=[first, second, third],
    )
    selection = select_winner(record.candidates)
    for cand in record.candidates:
        cand.cluster = selection.cluster_of(cand.index)
        cand.score = selection.scores.get(cand.index)
    record.clusters = list(selection.clusters)
    record.winner, record.survivors = selection.winner, list(selection.survivors)
    record.selection_reason = selection.reason
    record.answer = record.candidates[selection.winner or 0].answer
    record.warnings += search_warnings(record, True)
    record.set_usage(_usage(4, 3600, 174))
    # What a reader gets back must be this record: validate through the reader.
    return rec.parse_record(json.loads(record.to_json()))


def example_rlm_metadata() -> dict[str, Any]:
    """An RLM's ``metadata``: candidate 0's trajectory plus mode, context_info, sandbox."""
    run = example_search().candidates[0]
    fields = set(rec.RunRecord.model_fields)
    data = {"mode": "rlm", "context_info": _CONTEXT, "sandbox": "bwrap"}
    data.update(run.model_dump(mode="json", include=fields))
    rec.RunRecord.model_validate({k: v for k, v in data.items() if k in fields})
    return data

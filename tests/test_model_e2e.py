"""End to end through the embedded model (SPEC §10): the protocol, not the answers.

The model is small and its answers are not asserted. What is checked: its ```repl
blocks run in a real kernel, ``llm_query`` round-trips to it, the run ends with a
submitted answer or at the turn limit, and its confidence lines parse.
"""

from __future__ import annotations

import pytest

from lmrepl import RLM, SRLM, AllCandidatesFailed
from lmrepl.confidence import parse_confidence
from lmrepl.events import CellFinished, Event, IterationFinished, ModelCallFinished

pytestmark = pytest.mark.model

LOCAL = {"backend": "local", "backend_kwargs": {"max_tokens_default": 160}}


def test_llm_query_from_the_kernel_reaches_the_model() -> None:
    """A scripted root drives the kernel; its sub-calls go to the real model."""
    root = [
        "```repl\nreply = llm_query('Reply with one short greeting.')\nprint(repr(reply))\n```",
        "```repl\nFINAL(reply)\n```",
    ]
    rlm = RLM(
        backend="replay",
        backend_kwargs={"replies": root},
        other_backends=["local"],
        other_backend_kwargs=[{"max_tokens_default": 24, "temperature": 0.0}],
        environment="kernel",
    )
    events: list[Event] = []
    rlm.subscribe(events.append)
    result = rlm.completion("unused context", "greet")
    rlm.close()
    assert result.response.strip()
    sub = result.metadata["subcalls"]
    assert len(sub) == 1 and sub[0]["error"] is None and sub[0]["response"].strip()
    models = result.usage_summary.model_usage_summaries
    assert "qwen2.5-coder-0.5b-instruct" in models
    assert models["qwen2.5-coder-0.5b-instruct"].total_output_tokens > 0
    cells = [e for e in events if isinstance(e, CellFinished)]
    assert cells and cells[0].cell.status == "ok"


def test_the_model_drives_a_kernel_trajectory_with_confidence() -> None:
    """The real model as root, at temperature 0, a few turns, with confidence elicited."""
    lines = [f"record {i}: value {i * 7 % 13}" for i in range(400)]
    lines[211] = "record 211: the password is tulip"
    srlm = SRLM(
        **LOCAL,
        environment="kernel",
        environment_kwargs={"cell_timeout": 20},
        n_candidates=1,
        candidate_temperature=0.0,
        confidence_elicitation=True,
        max_iterations=2,
        max_timeout=600,
    )
    events: list[Event] = []
    srlm.subscribe(events.append)
    try:
        meta = srlm.completion("\n".join(lines), "What is the password?").metadata
    except AllCandidatesFailed as exc:  # the small model may end with no answer
        meta = exc.metadata
    srlm.close()
    steps = [e.step for e in events if isinstance(e, IterationFinished)]
    assert 1 <= len(steps) <= 3  # two iterations and at most one final request
    calls = [e for e in events if isinstance(e, ModelCallFinished)]
    assert calls and all(c.error is None for c in calls)
    assert all(c.output_tokens > 0 for c in calls)
    # Every code block the model wrote ran in the kernel (or was refused, and said so).
    ran = [e.cell for e in events if isinstance(e, CellFinished)]
    written = [c for s in steps for c in s.cells]
    assert len(ran) == sum(c.status != "refused" for c in written)
    assert [c.code for c in ran] == [c.code for c in written if c.status != "refused"]
    # Confidence lines, where the model wrote them, parsed to numbers in range.
    for step in steps:
        if parse_confidence(step.reply) is not None:
            assert step.confidence == parse_confidence(step.reply)
        if step.confidence is not None:
            assert 0 <= step.confidence <= 100
    cand = meta["candidates"][0]
    assert cand["status"] in ("done", "failed")
    assert cand["status"] == "failed" or cand["answer"]
    # A finished candidate says whether its answer is grounded; one with none says None.
    assert (cand["grounded"] is None) == (cand["status"] != "done")


def test_every_request_fits_the_embedded_models_window() -> None:
    """A 60,000-character context printed whole and sent whole to ``llm_query`` under a
    1,024-token window: the request is cut to fit, by the model's own token count (the
    server's reported prompt tokens stay inside), and the run goes on."""
    context = "\n".join(
        f"2026-12-04 10:{i % 60:02d}:{i % 7:02d} INFO job {i} done" for i in range(2000)
    )
    root = [
        "```repl\nprint(context)\n```",
        "```repl\nr = llm_query('Which job ran last? ' + context)\nprint(r[:80])\n```",
        "```repl\nFINAL(len(context.splitlines()))\n```",
    ]
    rlm = RLM(
        backend="replay",
        backend_kwargs={"replies": root},
        other_backends=["local"],
        other_backend_kwargs=[
            {"max_tokens_default": 16, "temperature": 0.0, "context_window": 1024}
        ],
        environment="kernel",
        environment_kwargs={"cell_timeout": 300},
    )
    events: list[Event] = []
    rlm.subscribe(events.append)
    result = rlm.completion(context, "How many lines?")
    rlm.close()
    assert len(context) > 60_000
    calls = [e for e in events if isinstance(e, ModelCallFinished) and e.purpose == "subcall"]
    assert calls and all(c.error is None for c in calls)
    assert 700 < calls[0].input_tokens <= 1024 - 16
    assert result.metadata["subcalls"][0]["error"] is None
    assert result.response == "2000" and result.metadata["grounded"] is True

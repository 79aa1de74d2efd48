"""The records of a run: cells, steps, sub-calls, trajectories, candidates, the search.

One set of models. The loop and the search build them while they run; everything
downstream uses them as they are: the result's ``metadata`` (their JSON form), the
event payloads, the live reducer (``lmrepl.live``) behind the terminal view and the
notebook panel, the static HTML, the saved trajectory file and ``SRLMResult``.

A ``SearchRecord`` is the whole document of one ``completion()`` — an SRLM search, or
one RLM trajectory stored as candidate 0 — under the media type ``MIME_TYPE``, in the
versioned schema described in docs/trajectory-schema.md.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "FORCED_STOPS",
    "MIME_TYPE",
    "SCHEMA_VERSION",
    "STOP_REASONS",
    "STOP_WORDS",
    "CandidateRecord",
    "CellRecord",
    "Cluster",
    "RunRecord",
    "RunStatus",
    "SearchRecord",
    "StepRecord",
    "StopReason",
    "SubcallRecord",
    "json_schema",
    "parse_record",
    "stop_tag",
]

SCHEMA_VERSION = "2"
MIME_TYPE = "application/vnd.lmrepl.trajectory+json"
#: Older schema versions this lmrepl still reads (upgraded on load).
READABLE_VERSIONS = ("1", SCHEMA_VERSION)

#: ``queued``/``running`` only while a run is under way; ``no_answer``: a trajectory
#: that ended without submitting (an SRLM candidate then counts as ``failed``).
RunStatus = Literal["queued", "running", "done", "no_answer", "failed", "cancelled", "stopped"]
SearchStatus = Literal["running", "done", "failed", "cancelled", "stopped"]
#: Why a run ended: ``answered`` (the model submitted on its own), ``max_iterations``
#: (its last turn, the ``max_iterations``-th, was the forced final-answer request),
#: ``stuck`` (the same code gave the same output twice, so the forced request came
#: early), ``limit`` (a hard limit: budget, tokens, time, errors), ``cancelled``
#: (``cancel()``, Ctrl-C, an SRLM early stop) or ``failed`` (an error). None while it
#: runs. ``max_iterations`` and ``stuck`` mark a forced answer (or none, if the forced
#: turn gave nothing).
StopReason = Literal["answered", "max_iterations", "stuck", "limit", "cancelled", "failed"]
#: The stop reasons of a forced final answer.
FORCED_STOPS = ("max_iterations", "stuck")
#: Each stop reason in words, as the panel, the views and the terminal show it.
STOP_WORDS = {
    "max_iterations": "forced answer: the last of max_iterations turns asked for it",
    "stuck": "forced answer: the same code gave the same output twice",
    "limit": "stopped by a hard limit (budget, tokens, time or errors)",
    "cancelled": "cancelled (cancel(), Ctrl-C or an early stop)",
    "failed": "failed",
    "answered": "the model submitted its answer",
}


def stop_tag(stop_reason: str | None, has_answer: bool) -> str:
    """A short tag for a stop worth pointing out; "" for the others.

    ``forced`` marks an answer the last turn asked for; without an answer, the tag names
    the stop itself (``max iterations``, ``stuck``), as it does for ``limit``.
    """
    if stop_reason in FORCED_STOPS:
        return "forced" if has_answer else stop_reason.replace("_", " ")
    return "limit" if stop_reason == "limit" else ""


STOP_REASONS: tuple[str, ...] = (
    "answered",
    "max_iterations",
    "stuck",
    "limit",
    "cancelled",
    "failed",
)


class Record(BaseModel):
    """Base of every record: unknown keys are kept, so a newer writer stays readable."""

    model_config = ConfigDict(extra="allow")


class CellRecord(Record):
    """One code block of a step and what running it gave."""

    code: str
    output: str = Field(default="", description="What the model was shown (truncated).")
    status: str = Field(
        default="ok",
        description="ok, error, timeout, restarted, died, cancelled, or refused (not run).",
    )
    duration: float = 0.0
    notice: str | None = Field(default=None, description="The REPL's own message, if any.")


class StepRecord(Record):
    """One turn of a trajectory: the model's reply, the code it ran and what it saw."""

    iteration: int
    reply: str = ""
    code: str = Field(default="", description="The reply's code blocks, joined by a blank line.")
    output: str = Field(default="", description="The blocks' outputs as the model saw them.")
    confidence: float | None = Field(
        default=None, description='The last {"confidence": N} (0-100) of the step.'
    )
    cells: list[CellRecord] = Field(default_factory=list)
    submitted: bool = False
    answer: str | None = None
    notices: list[str] = Field(
        default_factory=list,
        description="Cell timeouts, restarts and other REPL notices; refused and held answers.",
    )
    duration: float = 0.0


class SubcallRecord(Record):
    """One ``llm_query``/``rlm_query`` call (or one slot of a batch)."""

    function: str
    model: str
    prompt: str = Field(default="", description="The prompt, cut to 2,000 characters.")
    response: str = Field(default="", description="The reply, cut to 2,000 characters.")
    duration: float = 0.0
    error: str | None = None
    child_run_id: str | None = Field(default=None, description="The child RLM it started.")
    batch_index: int | None = None
    depth: int = Field(default=0, description="Depth of the trajectory that made the call.")


class UsageTotals(Record):
    """Calls, tokens and cost of a run or a search, every depth included."""

    model_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float = 0.0
    usage: dict[str, Any] | None = Field(
        default=None, description="UsageSummary.to_dict(): per model, plus totals."
    )

    def set_usage(self, usage: dict[str, Any]) -> None:
        """Take the totals from a ``UsageSummary.to_dict()``."""
        self.usage = usage
        self.model_calls = int(usage.get("total_calls", 0))
        self.input_tokens = int(usage.get("total_input_tokens", 0))
        self.output_tokens = int(usage.get("total_output_tokens", 0))
        self.cost = float(usage.get("total_cost", 0.0))


class RunRecord(UsageTotals):
    """One trajectory: the root run, a child RLM (``rlm_query``) or an SRLM candidate."""

    run_id: str = ""
    parent_run_id: str | None = None
    depth: int = 0
    question: str = ""
    status: RunStatus = "queued"
    stop_reason: StopReason | None = Field(
        default=None,
        description=(
            "Why the run ended: answered, max_iterations or stuck (a forced final answer), "
            "limit, cancelled or failed; None while it runs."
        ),
    )
    answer: str | None = None
    error: str | None = None
    grounded: bool | None = Field(
        default=None,
        description=(
            "True when the answer was computed by the code that submitted it or appeared in "
            "output the model had been shown; False for a constant or plain-text answer "
            "never seen in output (a guess); None without an answer (docs/selection.md)."
        ),
    )
    steps: list[StepRecord] = Field(default_factory=list)
    subcalls: list[SubcallRecord] = Field(default_factory=list)
    children: list[RunRecord] = Field(
        default_factory=list, description="The child RLMs this trajectory started."
    )
    iterations: int = 0
    execution_time: float = 0.0
    length: int = Field(default=0, ge=0, description="Len: output tokens of the trace, all depths.")
    model_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    usage: dict[str, Any] | None = Field(
        default=None, description="UsageSummary.to_dict() of this trajectory, all depths."
    )
    started_at: float | None = None
    finished_at: float | None = None

    def child_count(self) -> int:
        """Child RLM trajectories below this one, at every depth."""
        return sum(1 + c.child_count() for c in self.children)

    def subcall_count(self) -> int:
        """Sub-calls made by this trajectory and its children."""
        return len(self.subcalls) + sum(c.subcall_count() for c in self.children)


class CandidateRecord(RunRecord):
    """An SRLM candidate: its trajectory plus how the selection saw it."""

    index: int
    cluster: int | None = Field(default=None, description="Index into the search's clusters.")
    vc: float | None = Field(default=None, description="Σ log(confidence/100); None = unknown.")
    score: float | None = Field(default=None, description="VC·Len; None = unknown.")


class Cluster(Record):
    """One group of equivalent answers in the self-consistency vote."""

    answer: str
    members: list[int] = Field(default_factory=list, description="Candidate indices.")
    votes: int = 0
    normalized: str = ""


class SearchRecord(UsageTotals):
    """The whole document of one ``completion()`` (an RLM run is candidate 0)."""

    schema_version: str = SCHEMA_VERSION
    kind: Literal["srlm", "rlm"] = "srlm"
    mode: Literal["direct", "rlm"] | None = None
    question: str = ""
    context_info: str | None = None
    status: SearchStatus = "running"
    stop_reason: StopReason | None = Field(
        default=None,
        description=(
            "The winner's stop_reason (max_iterations: its answer was forced); without a "
            "winner, why the search ended (limit, cancelled, failed). None while it runs."
        ),
    )
    error: str | None = None
    answer: str | None = None
    winner: int | None = None
    survivors: list[int] = Field(default_factory=list)
    selection_reason: str | None = Field(
        default=None,
        description="grounded, vc_len, shortest, only or none (docs/selection.md).",
    )
    backend: str | None = None
    model: str | None = None
    environment: str | None = None
    sandbox: str | None = Field(
        default=None,
        description=(
            "Where model code ran: bwrap, bwrap+network, none, gateway (a Jupyter gateway's "
            "kernels) or in-process."
        ),
    )
    n_candidates: int = 1
    candidate_parallel: int = 1
    started_at: float | None = None
    finished_at: float | None = None
    execution_time: float | None = None
    config: dict[str, Any] = Field(default_factory=dict)
    clusters: list[Cluster] = Field(default_factory=list)
    warnings: list[str] = Field(
        default_factory=list,
        description=(
            "What weakened the result without failing it, in words (for example: "
            "confidence elicitation was on but no confidence was parsed)."
        ),
    )
    candidates: list[CandidateRecord] = Field(default_factory=list)

    def candidate(self, index: int) -> CandidateRecord:
        """Candidate ``index``, created (with any below it) when missing."""
        while len(self.candidates) <= index:
            self.candidates.append(CandidateRecord(index=len(self.candidates)))
        return self.candidates[index]

    def to_json(self, indent: int | None = 1) -> str:
        """The record as JSON text."""
        return json.dumps(self.model_dump(mode="json"), indent=indent, ensure_ascii=False)

    def save(self, path: str | Path) -> Path:
        """Write the record as JSON (parent folders created); returns the path."""
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(self.to_json(), encoding="utf-8")
        return out


def _upgrade_v1(data: dict[str, Any]) -> dict[str, Any]:
    """Schema 1 counted a candidate's sub-calls and children; schema 2 lists them."""
    out = {**data, "schema_version": SCHEMA_VERSION}
    cands = []
    for cand in data.get("candidates") or []:
        cand = dict(cand)
        if not isinstance(cand.get("subcalls"), list):
            cand.pop("subcalls", None)
        cand.pop("child_runs", None)
        cands.append(cand)
    out["candidates"] = cands
    return out


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a search record (what docs/trajectory-schema.md describes)."""
    return SearchRecord.model_json_schema()


def parse_record(data: Any) -> SearchRecord:
    """Validate ``data`` as a search record; an unknown schema version is a ValueError."""
    if not isinstance(data, dict):
        raise ValueError(f"a trajectory record is a JSON object, got {type(data).__name__}")
    version = data.get("schema_version")
    if version not in READABLE_VERSIONS:
        raise ValueError(
            f"trajectory schema_version {version!r} is not one this lmrepl reads "
            f"({', '.join(READABLE_VERSIONS)}); a newer lmrepl may read it"
        )
    if version == "1":
        data = _upgrade_v1(data)
    return SearchRecord.model_validate(data)

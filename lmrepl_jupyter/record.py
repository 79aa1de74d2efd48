"""The trajectory record: the whole search, as saved in notebooks and JSON files.

These models are the versioned schema of ``application/vnd.lmrepl.trajectory+json``
(documented in docs/trajectory-schema.md). The live panel state mutates them while
events arrive, so what is shown, what is saved and what is reloaded are one structure.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = "1"
MIME_TYPE = "application/vnd.lmrepl.trajectory+json"

CandidateStatus = Literal["queued", "running", "done", "failed", "cancelled", "stopped"]
RunStatus = Literal["running", "done", "failed", "cancelled", "stopped"]


class _Record(BaseModel):
    # Unknown keys are kept (not rejected) so that a newer minor writer stays readable.
    model_config = ConfigDict(extra="allow")


class StepRecord(_Record):
    """One iteration of a trajectory: the code the model ran and what it saw."""

    iteration: int = 0
    code: str = ""
    output: str = ""
    confidence: float | None = None
    submitted: bool = False
    answer: str | None = None
    reply: str | None = None
    notices: list[str] = Field(default_factory=list)


class ClusterRecord(_Record):
    """An answer cluster of the self-consistency vote."""

    answer: str | None = None
    members: list[int] = Field(default_factory=list)
    votes: int = 0


class CandidateRecord(_Record):
    """One candidate trajectory (an ``%%rlm`` run is a single candidate 0)."""

    index: int
    status: CandidateStatus = "queued"
    answer: str | None = None
    error: str | None = None
    cluster: int | None = None
    vc: float | None = None
    length: int = 0
    score: float | None = None
    usage: dict[str, Any] | None = None
    steps: list[StepRecord] = Field(default_factory=list)
    model_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    subcalls: int = 0
    child_runs: int = 0
    started_at: float | None = None
    finished_at: float | None = None


class TrajectoryRecord(_Record):
    """The whole search record (schema version 1)."""

    schema_version: Literal["1"] = "1"
    kind: Literal["srlm", "rlm"] = "srlm"
    question: str = ""
    context_info: str | None = None
    mode: Literal["direct", "rlm"] | None = None
    status: RunStatus = "running"
    error: str | None = None
    answer: str | None = None
    winner: int | None = None
    backend: str | None = None
    model: str | None = None
    environment: str | None = None
    n_candidates: int = 1
    candidate_parallel: int = 1
    started_at: float | None = None
    finished_at: float | None = None
    execution_time: float | None = None
    model_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost: float = 0.0
    usage: dict[str, Any] | None = None
    config: dict[str, Any] = Field(default_factory=dict)
    clusters: list[ClusterRecord] = Field(default_factory=list)
    candidates: list[CandidateRecord] = Field(default_factory=list)

    def candidate(self, index: int) -> CandidateRecord:
        """Return candidate ``index``, creating it (and any below it) when missing."""
        while len(self.candidates) <= index:
            self.candidates.append(CandidateRecord(index=len(self.candidates)))
        return self.candidates[index]


def parse_record(data: dict[str, Any]) -> TrajectoryRecord:
    """Validate ``data`` as a trajectory record; a foreign schema version is a ValueError."""
    version = data.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ValueError(
            f"unsupported trajectory schema_version {version!r} (this lmrepl reads "
            f"{SCHEMA_VERSION!r})"
        )
    return TrajectoryRecord.model_validate(data)


def trajectory_json_schema() -> dict[str, Any]:
    """The JSON Schema of the record (what docs/trajectory-schema.md describes)."""
    return TrajectoryRecord.model_json_schema()


def to_plain(value: Any) -> Any:
    """``value`` as JSON data: pydantic models dumped, mappings and sequences walked."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, BaseModel):
        to_dict = getattr(value, "to_dict", None)
        return to_plain(to_dict() if callable(to_dict) else value.model_dump(mode="json"))
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_plain(v) for v in value]
    return repr(value)

"""Data that crosses a boundary: usage summaries and the completion result."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from lmrepl.records import SearchRecord


class ModelUsageSummary(BaseModel):
    """Usage of one model over a whole run, every depth included."""

    model_config = ConfigDict(extra="forbid")

    total_calls: int = 0
    total_input_tokens: int = 0
    total_output_tokens: int = 0
    total_cost: float = 0.0
    estimated_calls: int = Field(
        default=0,
        description="Calls whose token counts were estimated because the server sent none.",
    )


class UsageSummary(BaseModel):
    """Usage per model plus totals over all models."""

    model_config = ConfigDict(extra="forbid")

    model_usage_summaries: dict[str, ModelUsageSummary] = Field(default_factory=dict)

    @property
    def total_calls(self) -> int:
        """Number of model calls over all models."""
        return sum(m.total_calls for m in self.model_usage_summaries.values())

    @property
    def total_input_tokens(self) -> int:
        """Input tokens over all models."""
        return sum(m.total_input_tokens for m in self.model_usage_summaries.values())

    @property
    def total_output_tokens(self) -> int:
        """Output tokens over all models."""
        return sum(m.total_output_tokens for m in self.model_usage_summaries.values())

    @property
    def total_cost(self) -> float:
        """Cost in USD over all models (0 where no price is known)."""
        return sum(m.total_cost for m in self.model_usage_summaries.values())

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form with the totals included."""
        return {
            "model_usage_summaries": {
                k: v.model_dump() for k, v in self.model_usage_summaries.items()
            },
            "total_calls": self.total_calls,
            "total_input_tokens": self.total_input_tokens,
            "total_output_tokens": self.total_output_tokens,
            "total_cost": self.total_cost,
        }


class RLMChatCompletion(BaseModel):
    """The result of ``RLM.completion`` / ``SRLM.completion``."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    root_model: str
    prompt: Any = None
    response: str
    usage_summary: UsageSummary
    execution_time: float
    metadata: dict[str, Any] = Field(default_factory=dict)
    #: The whole run as one ``SearchRecord`` (what the notebook shows and saves).
    record: SearchRecord | None = Field(default=None, exclude=True, repr=False)

    def __str__(self) -> str:
        return self.response

"""Compaction: when the conversation nears the model's window, summarise older turns."""

from __future__ import annotations

from lmrepl.calls import CallModel
from lmrepl.clients.base import Message, estimate_tokens

SUMMARY_REQUEST = (
    "Summarise the work so far for yourself: what you learned about the context, the "
    "variables you created and what they hold, and what is left to do. Be brief and exact."
)


def needs_compaction(messages: list[Message], window_tokens: int, threshold_pct: float) -> bool:
    """True when the messages use more than ``threshold_pct`` of the window."""
    used = sum(estimate_tokens(m["content"]) for m in messages)
    return used > window_tokens * threshold_pct


def compact_messages(call_model: CallModel, messages: list[Message]) -> list[Message]:
    """Replace every turn after the first user message with a model-written summary."""
    if len(messages) <= 4:
        return messages
    request = [*messages, {"role": "user", "content": SUMMARY_REQUEST}]
    summary = call_model(request, purpose="compaction").text
    return [
        messages[0],
        messages[1],
        {"role": "assistant", "content": f"Summary of my earlier steps:\n{summary}"},
        {"role": "user", "content": "Continue from the summary. The REPL state is unchanged."},
    ]

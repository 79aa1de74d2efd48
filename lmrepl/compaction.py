"""Compaction by the model: when the conversation nears the window, summarise it.

Off by default (``compaction=True`` turns it on): the conversation is kept within the
window anyway (``lmrepl.conversation``); this trades older detail for the model's own
summary earlier, at ``compaction_threshold_pct`` of the window.
"""

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


def summarize(call_model: CallModel, messages: list[Message]) -> str:
    """The model's summary of the conversation ``messages`` (for ``Conversation.compact``)."""
    request = [*messages, {"role": "user", "content": SUMMARY_REQUEST}]
    return call_model(request, purpose="compaction").text

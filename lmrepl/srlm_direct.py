"""SRLM routing: short contexts get one direct model call with the question."""

from __future__ import annotations

import json
from typing import Any

from lmrepl.calls import CallModel

DIRECT_SYSTEM = "Answer the question using only the context. Reply with the answer alone."


def context_as_text(context: Any) -> str:
    """The context as prompt text (strings as they are, data as JSON where possible)."""
    if isinstance(context, str):
        return context
    if isinstance(context, bytes):
        return context.decode("utf-8", "replace")
    try:
        return json.dumps(context, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return repr(context)


def context_length(context: Any) -> int:
    """Characters of the context as the model would read it."""
    if isinstance(context, (str, bytes)):
        return len(context)
    return len(context_as_text(context))


def direct_answer(call_model: CallModel, context: Any, question: str) -> str:
    """One model call with context and question (the question always reaches the model)."""
    messages = [
        {"role": "system", "content": DIRECT_SYSTEM},
        {
            "role": "user",
            "content": f"Context:\n{context_as_text(context)}\n\nQuestion: {question}",
        },
    ]
    return call_model(messages, purpose="direct").text.strip()

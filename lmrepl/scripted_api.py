"""The wire shapes the ``ScriptedServer`` speaks: scripted items, recorded requests,
and OpenAI chat-completion / Anthropic message payloads."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

OPENAI_PATHS = frozenset({"/v1/chat/completions", "/chat/completions"})
ANTHROPIC_PATHS = frozenset({"/v1/messages", "/messages"})
MODELS_PATHS = frozenset({"/v1/models", "/models"})

__all__ = ["ScriptedReply", "ScriptedRequest", "count_tokens", "error_payload", "success_payload"]


@dataclass(frozen=True)
class ScriptedReply:
    """One scripted answer: reply text, or an HTTP error, after an optional delay.

    ``usage``: True adds token counts computed from text lengths, False omits usage, and a
    dict is merged over the computed counts (e.g. ``{"cost": 0.25}``). ``error_body`` is
    sent as the JSON body of an error status (a default error body otherwise). ``body``,
    when given, is sent verbatim instead of the generated payload, whatever the status
    (for malformed or unusual server replies).
    """

    text: str = ""
    status: int = 200
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    usage: bool | dict[str, Any] = True
    error_body: dict[str, Any] | str | None = None
    body: dict[str, Any] | str | None = None


@dataclass(frozen=True)
class ScriptedRequest:
    """A request the server received (model requests and ``GET /v1/models``)."""

    path: str
    body: Any
    #: Header names lower-cased.
    headers: dict[str, str]
    messages: list[dict[str, Any]]
    model: str | None
    temperature: float | None
    #: ``time.monotonic()`` when the request arrived.
    time: float
    #: Anthropic's ``system`` field (None for OpenAI requests).
    system: Any = None

    @property
    def api(self) -> str:
        """``"openai"``, ``"anthropic"`` or ``"models"``."""
        if self.path in ANTHROPIC_PATHS:
            return "anthropic"
        return "openai" if self.path in OPENAI_PATHS else "models"


ReplyItem = str | ScriptedReply
Responder = Callable[[ScriptedRequest], ReplyItem]


def _text_of(content: Any) -> str:
    """Plain text of a message content: a string or a list of content blocks."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(b.get("text", "")) for b in content if isinstance(b, dict))
    return "" if content is None else str(content)


def count_tokens(text: str) -> int:
    """The server's token count for a text: ceil(chars / 4), at least 1."""
    return max(1, math.ceil(len(text) / 4))


def error_payload(request: ScriptedRequest, status: int, text: str) -> dict[str, Any]:
    """An error body in the shape of the request's API."""
    message = text or f"scripted error {status}"
    if request.api == "anthropic":
        return {"type": "error", "error": {"type": "api_error", "message": message}}
    return {"error": {"message": message, "type": "scripted_error", "code": status}}


def _prompt_text(request: ScriptedRequest) -> str:
    parts = [_text_of(request.system)] if request.system else []
    parts += [_text_of(m.get("content")) for m in request.messages if isinstance(m, dict)]
    return "\n".join(parts)


def success_payload(request: ScriptedRequest, reply: ScriptedReply) -> dict[str, Any]:
    """A chat.completion or message object carrying ``reply.text``."""
    model = request.model or "scripted"
    prompt_tokens = count_tokens(_prompt_text(request))
    completion_tokens = count_tokens(reply.text) if reply.text else 0
    extra = reply.usage if isinstance(reply.usage, dict) else {}
    created = int(time.time())
    if request.api == "anthropic":
        payload: dict[str, Any] = {
            "id": f"msg_{created}",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": reply.text}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
        }
        if reply.usage is not False:
            usage = {"input_tokens": prompt_tokens, "output_tokens": completion_tokens}
            payload["usage"] = {**usage, **extra}
        return payload
    payload = {
        "id": f"chatcmpl-{created}",
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": reply.text},
                "finish_reason": "stop",
            }
        ],
    }
    if reply.usage is not False:
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        payload["usage"] = {**usage, **extra}
    return payload

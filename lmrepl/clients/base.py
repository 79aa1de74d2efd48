"""The model-client interface: one chat call in, text and usage out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

Message = dict[str, str]


@dataclass(frozen=True)
class Completion:
    """One model reply with its usage."""

    text: str
    model: str
    input_tokens: int = 0
    output_tokens: int = 0
    #: USD when the server reports it or a price is configured, else None.
    cost: float | None = None
    #: False when the server sent no usage and the counts are estimates.
    usage_reported: bool = True


@dataclass(frozen=True)
class CallOptions:
    """Per-call settings; None means the client's default."""

    temperature: float | None = None
    max_tokens: int | None = None
    #: Seconds for this request (the run's remaining ``max_timeout`` clamps it).
    timeout: float | None = None
    extra_body: dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None


class ModelClient(ABC):
    """A chat model behind one backend. Safe to call from many threads at once."""

    #: Backend name as users write it (``"openai"``, ``"anthropic"``, ``"local"``).
    backend: str = "base"
    #: The window (prompt plus reply, in tokens) assumed when none is configured.
    default_context_window: int | None = None

    def __init__(self, model_name: str) -> None:
        self.model_name = model_name
        self._context_window: int | None = None

    @property
    def context_window(self) -> int | None:
        """Tokens the model takes per request, prompt and reply together (None: unknown).

        ``backend_kwargs["context_window"]`` sets it; otherwise the backend's default.
        """
        return self._context_window or self.default_context_window

    @context_window.setter
    def context_window(self, tokens: int | None) -> None:
        self._context_window = tokens

    def count_tokens(self, text: str) -> int:
        """Tokens ``text`` takes for this model (a conservative estimate by default)."""
        return window_estimate(text)

    @abstractmethod
    def complete(self, messages: list[Message], options: CallOptions | None = None) -> Completion:
        """Send ``messages`` and return the reply; raises ``BackendError`` for good failures."""

    def check(self) -> None:
        """Fail fast with ``ConfigurationError`` on missing keys (no network call here)."""

    def close(self) -> None:
        """Release connections."""


def merge_same_role(messages: list[Message]) -> list[Message]:
    """Join consecutive messages of one role (llama-server rejects them otherwise)."""
    out: list[Message] = []
    for msg in messages:
        if out and out[-1]["role"] == msg["role"]:
            out[-1] = {"role": msg["role"], "content": out[-1]["content"] + "\n\n" + msg["content"]}
        else:
            out.append(dict(msg))
    return out


def window_estimate(text: str) -> int:
    """A token count meant to err high, for fitting requests into a window.

    Tokenisers give digits a token each (or nearly), punctuation often one too, and
    ordinary words ~4 characters a token; measured on the embedded model's tokenizer
    this never fell below the real count on logs, JSON, code or prose.
    """
    if not text:
        return 0
    digits = sum(c.isdigit() for c in text)
    spaces = sum(c.isspace() for c in text)
    letters = sum(c.isalpha() for c in text)
    other = len(text) - digits - spaces - letters
    return digits + other + (letters + spaces + 2) // 3


def estimate_tokens(text: str) -> int:
    """A rough token count for servers that report no usage (~4 characters a token)."""
    return max(1, (len(text) + 3) // 4) if text else 0

"""Model clients by backend name: ``make_client`` builds one, ``validate_backend`` checks args.

Validation lives here, apart from the clients, so that checking an ``RLM``'s arguments
neither imports the SDKs nor touches the network.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from lmrepl import checks
from lmrepl.checks import Rule
from lmrepl.clients.base import CallOptions, Completion, Message, ModelClient
from lmrepl.errors import ConfigurationError

__all__ = [
    "CallOptions",
    "Completion",
    "Message",
    "ModelClient",
    "known_backends",
    "make_client",
    "validate_backend",
]


def _recording(v: object) -> bool:
    return v is None or (isinstance(v, str | os.PathLike) and os.path.isfile(v))


def _prices(v: object) -> bool:
    if v is None:
        return True
    if not isinstance(v, Mapping) or not v or not set(v) <= {"input", "output"}:
        return False
    return all(
        isinstance(x, int | float) and not isinstance(x, bool) and x >= 0 for x in v.values()
    )


def _usage(v: object) -> bool:
    if v is None or v == "estimate":
        return True
    if isinstance(v, int) and not isinstance(v, bool):
        return v >= 0
    return (
        isinstance(v, Mapping)
        and set(v) <= {"input_tokens", "output_tokens"}
        and all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in v.values())
    )


_HTTP: dict[str, Rule] = {
    "model_name": checks.text(empty=False),
    "base_url": checks.text(empty=False, optional=True),
    "api_key": checks.text(empty=False, optional=True),
    "default_extra_body": checks.mapping(),
    "default_headers": checks.mapping(str_to_str=True),
    "timeout": checks.seconds(),
    "max_retries": checks.integer(0),
    "retry_base_delay": checks.number(0),
    "prices": Rule('a dict like {"input": usd_per_Mtok, "output": usd_per_Mtok}', _prices),
    "response_format": checks.mapping(),
    "temperature": checks.number(0, optional=True),
    "context_window": checks.integer(256, optional=True),
}

_LOCAL_ONLY: dict[str, Rule] = {
    "model_path": Rule(
        "a path to a GGUF file or None", lambda v: v is None or isinstance(v, str | os.PathLike)
    ),
    "n_parallel": checks.integer(1),
    "n_ctx": checks.integer(256, optional=True),
    "max_tokens_default": checks.integer(1, optional=True),
}

#: backend -> (rule per accepted kwarg, required kwargs)
_BACKENDS: dict[str, tuple[dict[str, Rule], frozenset[str]]] = {
    "openai": (dict(_HTTP), frozenset({"model_name"})),
    "anthropic": ({**_HTTP, "max_tokens": checks.integer(1)}, frozenset({"model_name"})),
    "local": (
        {
            **{k: v for k, v in _HTTP.items() if k not in ("base_url", "api_key", "prices")},
            **_LOCAL_ONLY,
        },
        frozenset(),
    ),
    "replay": (
        {
            "replies": Rule(
                "a list of strings",
                lambda v: (
                    v is None
                    or (
                        isinstance(v, list | tuple)
                        and all(isinstance(x, str | BaseException) for x in v)
                    )
                ),
            ),
            "responder": Rule("a callable(messages) -> str", lambda v: v is None or callable(v)),
            "path": Rule("an existing JSONL recording", _recording),
            "model_name": checks.text(empty=False),
            "delay": checks.number(0),
            "context_window": checks.integer(256, optional=True),
            "usage": Rule(
                '"estimate", tokens per call (int) or {"input_tokens": n, "output_tokens": m}',
                _usage,
            ),
        },
        frozenset(),
    ),
}


def known_backends() -> tuple[str, ...]:
    """Backend names ``make_client`` accepts."""
    return ("openai", "anthropic", "local", "replay")


def validate_backend(backend: str, backend_kwargs: Mapping[str, Any] | None) -> None:
    """Check a backend name and its kwargs without importing SDKs or touching the network."""
    checks.check("backend", backend, checks.choice(*known_backends()))
    checks.check("backend_kwargs", backend_kwargs, checks.mapping())
    kwargs = dict(backend_kwargs or {})
    rules, required = _BACKENDS[backend]
    label = f"backend {backend!r}: backend_kwargs"
    checks.check_settings(label, kwargs, rules)
    missing = sorted(required - set(kwargs))
    if missing:
        raise ConfigurationError(
            f"{label} must name {', '.join(map(repr, missing))} (the model to use), "
            f"got {sorted(kwargs) or 'none'}"
        )
    if backend == "replay":
        given = [k for k in ("replies", "responder", "path") if kwargs.get(k) is not None]
        if len(given) != 1:
            raise ConfigurationError(
                f"{label} must have exactly one of 'replies', 'responder' or 'path', "
                f"got {', '.join(given) or 'none'}"
            )


def make_client(backend: str, backend_kwargs: Mapping[str, Any] | None = None) -> ModelClient:
    """Validate and build the client for ``backend``; no network is touched here.

    The clients' constructors trust their arguments: this is where they are checked.
    """
    validate_backend(backend, backend_kwargs)
    kwargs = dict(backend_kwargs or {})
    # The window is the engine's to respect, not an SDK argument.
    window = kwargs.pop("context_window", None)
    client: ModelClient
    if backend == "openai":
        from lmrepl.clients.openai import OpenAIClient

        client = OpenAIClient(**kwargs)
    elif backend == "anthropic":
        from lmrepl.clients.anthropic import AnthropicClient

        client = AnthropicClient(**kwargs)
    elif backend == "replay":
        from lmrepl.clients.replay import ReplayClient

        client = ReplayClient(**kwargs)
    else:
        from lmrepl.clients.local import LocalClient

        client = LocalClient(**kwargs)
    client.context_window = window
    return client

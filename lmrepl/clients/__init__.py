"""Model clients by backend name: ``make_client`` builds one, ``validate_backend`` checks args.

Validation lives here, apart from the clients, so that checking an ``RLM``'s arguments
neither imports the SDKs nor touches the network.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

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

Check = Callable[[str, str, object], None]


def _fail(backend: str, name: str, expected: str, value: object) -> ValueError:
    return ValueError(
        f"backend {backend!r}: backend_kwargs[{name!r}] must be {expected}, got {value!r}"
    )


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _text(backend: str, name: str, value: object) -> None:
    if not isinstance(value, str) or not value:
        raise _fail(backend, name, "a non-empty string", value)


def _opt_text(backend: str, name: str, value: object) -> None:
    if value is not None:
        _text(backend, name, value)


def _positive(backend: str, name: str, value: object) -> None:
    if not _is_number(value) or float(value) <= 0:  # type: ignore[arg-type]
        raise _fail(backend, name, "a positive number of seconds", value)


def _non_negative(backend: str, name: str, value: object) -> None:
    if not _is_number(value) or float(value) < 0:  # type: ignore[arg-type]
        raise _fail(backend, name, "a number >= 0", value)


def _count(backend: str, name: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise _fail(backend, name, "an integer >= 0", value)


def _positive_int(backend: str, name: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise _fail(backend, name, "a positive integer", value)


def _opt_temperature(backend: str, name: str, value: object) -> None:
    if value is not None:
        _non_negative(backend, name, value)


def _opt_dict(backend: str, name: str, value: object) -> None:
    if value is not None and not isinstance(value, Mapping):
        raise _fail(backend, name, "a dict or None", value)


def _headers(backend: str, name: str, value: object) -> None:
    if value is None:
        return
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise _fail(backend, name, "a dict of str to str", value)


def _prices(backend: str, name: str, value: object) -> None:
    if value is None:
        return
    expected = 'a dict like {"input": usd_per_Mtok, "output": usd_per_Mtok}'
    if not isinstance(value, Mapping) or not value or not set(value) <= {"input", "output"}:
        raise _fail(backend, name, expected, value)
    if not all(_is_number(v) and float(v) >= 0 for v in value.values()):
        raise _fail(backend, name, expected + " with prices >= 0", value)


def _replies(backend: str, name: str, value: object) -> None:
    if value is None:
        return
    if not isinstance(value, list | tuple) or not all(
        isinstance(v, str | BaseException) for v in value
    ):
        raise _fail(backend, name, "a list of strings", value)


def _responder(backend: str, name: str, value: object) -> None:
    if value is not None and not callable(value):
        raise _fail(backend, name, "a callable(messages) -> str", value)


def _path(backend: str, name: str, value: object) -> None:
    if value is None:
        return
    if not isinstance(value, str | os.PathLike):
        raise _fail(backend, name, "a path to a JSONL recording", value)
    if not os.path.isfile(value):
        raise _fail(backend, name, "an existing JSONL recording", value)


def _usage(backend: str, name: str, value: object) -> None:
    if value is None or value == "estimate":
        return
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return
    if (
        isinstance(value, Mapping)
        and set(value) <= {"input_tokens", "output_tokens"}
        and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value.values())
    ):
        return
    raise _fail(
        backend,
        name,
        '"estimate", tokens per call (int) or {"input_tokens": n, "output_tokens": m}',
        value,
    )


_HTTP_CHECKS: dict[str, Check] = {
    "model_name": _text,
    "base_url": _opt_text,
    "api_key": _opt_text,
    "default_extra_body": _opt_dict,
    "default_headers": _headers,
    "timeout": _positive,
    "max_retries": _count,
    "retry_base_delay": _non_negative,
    "prices": _prices,
    "response_format": _opt_dict,
    "temperature": _opt_temperature,
}

_SPECS: dict[str, tuple[dict[str, Check], frozenset[str]]] = {
    # backend -> (checks per accepted kwarg, required kwargs)
    "openai": (dict(_HTTP_CHECKS), frozenset({"model_name"})),
    "anthropic": (
        {**_HTTP_CHECKS, "max_tokens": _positive_int},
        frozenset({"model_name"}),
    ),
    "replay": (
        {
            "replies": _replies,
            "responder": _responder,
            "path": _path,
            "model_name": _text,
            "delay": _non_negative,
            "usage": _usage,
        },
        frozenset(),
    ),
}


def known_backends() -> tuple[str, ...]:
    """Backend names ``make_client`` accepts."""
    return ("openai", "anthropic", "local", "replay")


def _local_kwargs() -> frozenset[str]:
    """Accepted kwargs of the ``local`` backend (imported lazily: it is optional)."""
    try:
        from lmrepl.clients.local import LOCAL_BACKEND_KWARGS
    except ImportError as exc:
        raise ConfigurationError(f"the 'local' backend is not available: {exc}") from exc
    return frozenset(LOCAL_BACKEND_KWARGS)


def validate_backend(backend: str, backend_kwargs: Mapping[str, Any] | None) -> None:
    """Check a backend name and its kwargs without importing SDKs or touching the network.

    Unknown backend: ``ValueError``; unknown kwarg: ``TypeError``; bad value: ``ValueError``.
    """
    if not isinstance(backend, str) or backend not in known_backends():
        raise ValueError(
            f"unknown backend {backend!r}; known backends: {', '.join(known_backends())}"
        )
    if backend_kwargs is not None and not isinstance(backend_kwargs, Mapping):
        raise TypeError(
            f"backend_kwargs must be a dict or None, got {type(backend_kwargs).__name__}"
        )
    kwargs = dict(backend_kwargs or {})
    if backend == "local":
        accepted = _local_kwargs()
        # Shared names get the same checks as the HTTP backends; the rest are local.py's.
        checks = {k: v for k, v in _HTTP_CHECKS.items() if k in accepted}
        required: frozenset[str] = frozenset()
    else:
        checks, required = _SPECS[backend]
        accepted = frozenset(checks)
    unknown = sorted(set(kwargs) - accepted)
    if unknown:
        raise TypeError(
            f"backend {backend!r}: unknown backend_kwargs {', '.join(map(repr, unknown))}; "
            f"accepted: {', '.join(sorted(accepted))}"
        )
    missing = sorted(required - set(kwargs))
    if missing:
        raise ValueError(f"backend {backend!r}: backend_kwargs needs {', '.join(missing)}")
    for name, value in kwargs.items():
        check = checks.get(name)
        if check is not None:
            check(backend, name, value)
    if backend == "replay":
        given = [k for k in ("replies", "responder", "path") if kwargs.get(k) is not None]
        if len(given) != 1:
            raise ValueError(
                "backend 'replay': backend_kwargs needs exactly one of replies, responder "
                f"or path (got {', '.join(given) or 'none'})"
            )


def make_client(backend: str, backend_kwargs: Mapping[str, Any] | None = None) -> ModelClient:
    """Validate and build the client for ``backend``; no network is touched here."""
    validate_backend(backend, backend_kwargs)
    kwargs = dict(backend_kwargs or {})
    if backend == "openai":
        from lmrepl.clients.openai import OpenAIClient

        return OpenAIClient(**kwargs)
    if backend == "anthropic":
        from lmrepl.clients.anthropic import AnthropicClient

        return AnthropicClient(**kwargs)
    if backend == "replay":
        from lmrepl.clients.replay import ReplayClient

        return ReplayClient(**kwargs)
    from lmrepl.clients.local import LocalClient

    client: ModelClient = LocalClient(**kwargs)
    return client

"""The ``RLM``/``SRLM`` arguments: one rule each, checked at construction.

Backend and environment settings have their rules next to their code
(``lmrepl.clients``, ``lmrepl.repl``); this module applies them to the arguments too.
The call itself (unknown or extra arguments) and each ``completion()`` call are checked
by ``lmrepl.arguments``, re-exported here: ``checked``, ``before_completion``,
``QUESTION``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from lmrepl import checks
from lmrepl.arguments import QUESTION, before_completion, checked
from lmrepl.checks import Rule
from lmrepl.clients import known_backends, validate_backend
from lmrepl.errors import ConfigurationError
from lmrepl.repl import resolve_environment, validate_environment
from lmrepl.repl.runtime import BASE_NAMES

__all__ = [
    "ARGUMENTS",
    "QUESTION",
    "before_completion",
    "check_arguments",
    "check_backend",
    "check_environment",
    "check_other_backends",
    "checked",
    "default_backend",
    "default_reason",
    "split_tools",
]

#: The rule of every plain ``RLM`` and ``SRLM`` argument (the structured ones — backend,
#: environment, tools, other backends — have functions below).
ARGUMENTS: dict[str, Rule] = {
    "depth": checks.integer(0),
    "max_depth": checks.integer(0),
    "max_iterations": checks.integer(1),
    "max_budget": checks.number(0, exclusive=True, optional=True),
    "max_timeout": checks.seconds(optional=True),
    "max_tokens": checks.integer(1, optional=True),
    "max_errors": checks.integer(1, optional=True),
    "custom_system_prompt": checks.text(optional=True),
    "child_system_prompt": checks.text(optional=True),
    "child_max_iterations": checks.integer(1, optional=True),
    "max_concurrent_subcalls": checks.integer(1),
    "compaction_threshold_pct": checks.number(0, exclusive=True, maximum=1),
    "verbose": checks.boolean(),
    "persistent": checks.boolean(),
    "compaction": checks.boolean(),
    "hold_unseen_final": checks.boolean(),
    "logger": checks.function(),
    "on_subcall_start": checks.function(),
    "on_subcall_complete": checks.function(),
    "on_iteration_start": checks.function(),
    "on_iteration_complete": checks.function(),
    # SRLM
    "direct_threshold": checks.integer(0),
    "n_candidates": checks.integer(1),
    "candidate_parallel": checks.integer(1),
    "candidate_temperature": checks.number(0, optional=True),
    "confidence_elicitation": checks.boolean(),
    "early_stop": checks.boolean(),
}


def check_arguments(values: Mapping[str, Any], label: str | None = None) -> None:
    """Check each named argument against its rule (``label`` prefixes the message)."""
    for name, value in values.items():
        checks.check(f"{label}{name}" if label else name, value, ARGUMENTS[name])


def default_backend() -> tuple[str, str]:
    """The backend used when none is named, and why: OpenAI when a key exists, else local."""
    backend = "openai" if os.environ.get("OPENAI_API_KEY") else "local"
    return backend, default_reason(backend)


def default_reason(backend: str) -> str:
    """Why ``backend`` was chosen when none was named: the variable that chose it."""
    if backend == "openai":
        return "chosen because OPENAI_API_KEY is set; pass backend=... to use another"
    return (
        "chosen because OPENAI_API_KEY is not set (the embedded model); set it, or pass "
        "backend=..., to use another"
    )


def check_backend(backend: object, backend_kwargs: object) -> None:
    """Backend name and kwargs (no network)."""
    if not isinstance(backend, str) or backend not in known_backends():
        hint = checks.closest(backend, known_backends()) if isinstance(backend, str) else None
        suggestion = f" (did you mean {hint!r}?)" if hint else ""
        raise ConfigurationError(
            f"backend must be one of {', '.join(map(repr, known_backends()))}, "
            f"got {backend!r}{suggestion}"
        )
    checks.check("backend_kwargs", backend_kwargs, checks.mapping())
    validate_backend(backend, dict(backend_kwargs or {}))  # type: ignore[call-overload]


def check_environment(environment: object, environment_kwargs: object) -> str:
    """Environment name and kwargs; returns the canonical name (the one lm-repl's
    ``environment_kwargs["kernel_mode"]`` chooses, when given)."""
    checks.check("environment_kwargs", environment_kwargs, checks.mapping())
    kwargs = dict(environment_kwargs or {})  # type: ignore[call-overload]
    validate_environment(environment, kwargs)
    return resolve_environment(environment, kwargs)[0]


def split_tools(name: str, tools: object) -> tuple[dict[str, Any], dict[str, str]]:
    """``custom_tools`` → (name → value or callable, name → description).

    Each entry is a callable, or ``{"tool": obj, "description": "..."}`` for any value
    (a callable or data the model reads as a REPL variable). A bare non-callable is a
    ``ConfigurationError``.
    """
    if tools is None:
        return {}, {}
    checks.check(name, tools, checks.mapping())
    assert isinstance(tools, Mapping)
    values: dict[str, Any] = {}
    descriptions: dict[str, str] = {}
    reserved = set(BASE_NAMES)
    for key, entry in tools.items():
        if not isinstance(key, str) or not key.isidentifier():
            raise ConfigurationError(f"{name}: tool names must be Python identifiers, got {key!r}")
        if key in reserved or key.startswith("context_"):
            raise ConfigurationError(
                f"{name}: tool names must not be reserved REPL names, got {key!r}"
            )
        desc: Any = None
        if isinstance(entry, Mapping) and "tool" in entry:
            values[key] = entry["tool"]
            desc = entry.get("description")
            checks.check(f"{name}[{key!r}]['description']", desc, checks.text(optional=True))
        elif callable(entry):
            values[key] = entry
        else:
            # A bare value used to become a REPL variable silently; most often it is a
            # slip (a function called instead of passed), so data must say it is data.
            raise ConfigurationError(
                f"{name}[{key!r}] must be callable (a function the model may call), got "
                f"{_short(entry)}; to give the model a value instead, pass it explicitly: "
                f"{name}={{{key!r}: {{'tool': value, 'description': '...'}}}}"
            )
        if desc is None:
            obj = values[key]
            doc = (
                (getattr(obj, "__doc__", None) or "").strip().splitlines() if callable(obj) else []
            )
            desc = doc[0] if doc else ("function" if callable(obj) else type(obj).__name__)
        descriptions[key] = desc
    return values, descriptions


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_other_backends(backends: object, kwargs: object) -> list[tuple[str, dict[str, Any]]]:
    """``other_backends`` with ``other_backend_kwargs`` (same length)."""
    if backends is None:
        if kwargs:
            raise ConfigurationError(
                f"other_backend_kwargs must be None when other_backends is None, got {kwargs!r}"
            )
        return []
    if isinstance(backends, str) or not isinstance(backends, list | tuple):
        raise ConfigurationError(
            f"other_backends must be a list of backend names, got {backends!r}"
        )
    kw_list = list(kwargs) if kwargs is not None else [{} for _ in backends]  # type: ignore[call-overload]
    if len(kw_list) != len(backends):
        raise ConfigurationError(
            f"other_backend_kwargs must have one dict per other backend ({len(backends)}), "
            f"got {len(kw_list)}"
        )
    out = []
    for b, kw in zip(backends, kw_list, strict=True):
        check_backend(b, kw)
        out.append((b, dict(kw or {})))
    return out

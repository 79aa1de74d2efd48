"""Validation of ``RLM``/``SRLM`` arguments, so bad values fail at construction."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from lmrepl.clients import known_backends, validate_backend
from lmrepl.repl import canonical_environment, validate_environment
from lmrepl.repl.runtime import BASE_NAMES


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def require_int(name: str, value: object, minimum: int, *, optional: bool = False) -> None:
    """``value`` must be an int ≥ ``minimum`` (or None when optional)."""
    if value is None and optional:
        return
    if not _is_int(value) or value < minimum:  # type: ignore[operator]
        extra = " or None" if optional else ""
        raise ValueError(f"{name} must be an integer >= {minimum}{extra}, got {value!r}")


def require_positive(name: str, value: object, *, optional: bool = True) -> None:
    """``value`` must be a number > 0 (or None when optional)."""
    if value is None and optional:
        return
    if not _is_num(value) or value <= 0:  # type: ignore[operator]
        raise ValueError(f"{name} must be a positive number or None, got {value!r}")


def require_callable(name: str, value: object) -> None:
    """``value`` must be callable or None."""
    if value is not None and not callable(value):
        raise TypeError(f"{name} must be callable or None, got {type(value).__name__}")


def require_text(name: str, value: object) -> None:
    """``value`` must be a string or None."""
    if value is not None and not isinstance(value, str):
        raise TypeError(f"{name} must be a string or None, got {type(value).__name__}")


def default_backend() -> str:
    """The backend used when none is named: OpenAI when a key exists, else the embedded model."""
    return "openai" if os.environ.get("OPENAI_API_KEY") else "local"


def check_backend(backend: object, backend_kwargs: object) -> None:
    """Backend name and kwargs (no network)."""
    if not isinstance(backend, str) or backend not in known_backends():
        raise ValueError(
            f"unknown backend {backend!r}; choose one of {', '.join(known_backends())}"
        )
    if backend_kwargs is not None and not isinstance(backend_kwargs, Mapping):
        raise TypeError(f"backend_kwargs must be a dict, got {type(backend_kwargs).__name__}")
    validate_backend(backend, dict(backend_kwargs or {}))


def check_environment(environment: object, environment_kwargs: object) -> str:
    """Environment name and kwargs; returns the canonical name."""
    if environment_kwargs is not None and not isinstance(environment_kwargs, Mapping):
        raise TypeError(
            f"environment_kwargs must be a dict, got {type(environment_kwargs).__name__}"
        )
    env = canonical_environment(environment)  # type: ignore[arg-type]
    validate_environment(env, dict(environment_kwargs or {}))
    return env


def split_tools(name: str, tools: object) -> tuple[dict[str, Any], dict[str, str]]:
    """``custom_tools`` → (name → value or callable, name → description).

    Each entry is a value/callable, or ``{"tool": obj, "description": "..."}``.
    """
    if tools is None:
        return {}, {}
    if not isinstance(tools, Mapping):
        raise TypeError(f"{name} must be a dict of name -> tool, got {type(tools).__name__}")
    values: dict[str, Any] = {}
    descriptions: dict[str, str] = {}
    reserved = set(BASE_NAMES)
    for key, entry in tools.items():
        if not isinstance(key, str) or not key.isidentifier():
            raise ValueError(f"{name}: tool name {key!r} is not a Python identifier")
        if key in reserved or key.startswith("context_"):
            raise ValueError(f"{name}: {key!r} is a reserved REPL name")
        if isinstance(entry, Mapping) and "tool" in entry:
            values[key] = entry["tool"]
            desc = entry.get("description")
            if desc is not None and not isinstance(desc, str):
                raise TypeError(f"{name}[{key!r}]['description'] must be a string")
        else:
            values[key] = entry
            desc = None
        if desc is None:
            obj = values[key]
            doc = (
                (getattr(obj, "__doc__", None) or "").strip().splitlines() if callable(obj) else []
            )
            desc = doc[0] if doc else ("function" if callable(obj) else type(obj).__name__)
        descriptions[key] = desc
    return values, descriptions


def check_other_backends(backends: object, kwargs: object) -> list[tuple[str, dict[str, Any]]]:
    """``other_backends`` with ``other_backend_kwargs`` (same length)."""
    if backends is None:
        if kwargs:
            raise ValueError("other_backend_kwargs given without other_backends")
        return []
    if isinstance(backends, str) or not isinstance(backends, (list, tuple)):
        raise TypeError("other_backends must be a list of backend names")
    kw_list = list(kwargs) if kwargs is not None else [{} for _ in backends]  # type: ignore[call-overload]
    if len(kw_list) != len(backends):
        raise ValueError(
            f"other_backend_kwargs has {len(kw_list)} entries for {len(backends)} other_backends"
        )
    out = []
    for b, kw in zip(backends, kw_list, strict=True):
        check_backend(b, kw)
        out.append((b, dict(kw or {})))
    return out


Callback = Callable[..., None]

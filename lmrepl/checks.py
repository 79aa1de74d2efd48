"""Rules for settings, and the one way a bad setting is reported.

Each setting has one ``Rule`` (what it must be, in words, and the test), declared once
next to the code that owns the setting: the ``RLM``/``SRLM`` arguments in
``lmrepl.config``, each backend's ``backend_kwargs`` in ``lmrepl.clients``, each
environment's ``environment_kwargs`` in ``lmrepl.repl``. The notebook magics check
their options and traits against the same rules. Every failure is a
``ConfigurationError`` worded ``<label> must be <expected>, got <value>``, and an
unknown name suggests the closest known one.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from lmrepl.errors import ConfigurationError

__all__ = [
    "Rule",
    "boolean",
    "check",
    "check_names",
    "check_settings",
    "choice",
    "closest",
    "function",
    "integer",
    "number",
    "seconds",
    "text",
]


@dataclass(frozen=True)
class Rule:
    """What a setting must be: ``expected`` in words, ``test`` returns True when it is."""

    expected: str
    test: Callable[[Any], bool]


def check(label: str, value: Any, rule: Rule) -> None:
    """Raise ``ConfigurationError`` unless ``value`` passes ``rule``; ``label`` names it."""
    if not rule.test(value):
        raise ConfigurationError(f"{label} must be {rule.expected}, got {value!r}")


def closest(name: str, known: Iterable[str]) -> str | None:
    """The known name ``name`` was probably meant to be, if one is close enough."""
    found = difflib.get_close_matches(name, list(known), n=1, cutoff=0.75)
    return found[0] if found else None


def check_names(what: str, given: Iterable[Any], accepted: Iterable[str]) -> None:
    """Every name in ``given`` must be in ``accepted``; else say which and the closest."""
    accepted = sorted(accepted)
    unknown = sorted((str(n) for n in given if n not in accepted), key=str)
    if not unknown:
        return
    hints = [
        f" (did you mean {hint!r}?)" if (hint := closest(n, accepted)) else "" for n in unknown
    ]
    named = ", ".join(f"{n!r}{h}" for n, h in zip(unknown, hints, strict=True))
    raise ConfigurationError(f"unknown {what} {named}; accepted: {', '.join(accepted)}")


def check_settings(what: str, values: Mapping[str, Any], rules: Mapping[str, Rule]) -> None:
    """Names of ``values`` known to ``rules``, and each value passing its rule."""
    check_names(what, values, rules)
    for name, value in values.items():
        check(f"{what}[{name!r}]", value, rules[name])


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _optional(rule: Rule, optional: bool) -> Rule:
    if not optional:
        return rule
    return Rule(f"{rule.expected} or None", lambda v: v is None or rule.test(v))


def integer(minimum: int, *, optional: bool = False) -> Rule:
    """An int (not a bool) ≥ ``minimum``."""
    return _optional(
        Rule(f"an integer >= {minimum}", lambda v: _is_int(v) and v >= minimum), optional
    )


def number(
    minimum: float = 0.0,
    *,
    exclusive: bool = False,
    maximum: float | None = None,
    optional: bool = False,
) -> Rule:
    """A finite number ≥ ``minimum`` (> when ``exclusive``), ≤ ``maximum`` if given."""
    low = f"> {minimum:g}" if exclusive else f">= {minimum:g}"
    words = f"a number {low}" + (f" and <= {maximum:g}" if maximum is not None else "")

    def test(v: Any) -> bool:
        if not _is_number(v):
            return False
        above = v > minimum if exclusive else v >= minimum
        return above and (maximum is None or v <= maximum)

    return _optional(Rule(words, test), optional)


def seconds(*, optional: bool = False) -> Rule:
    """A positive, finite number of seconds."""
    return _optional(
        Rule("a positive number of seconds", lambda v: _is_number(v) and v > 0), optional
    )


def boolean() -> Rule:
    """True or False (not 0/1)."""
    return Rule("True or False", lambda v: isinstance(v, bool))


def text(*, optional: bool = False, empty: bool = True) -> Rule:
    """A string (non-empty unless ``empty``)."""
    words = "a string" if empty else "a non-empty string"
    return _optional(Rule(words, lambda v: isinstance(v, str) and (empty or bool(v))), optional)


def function() -> Rule:
    """A callable or None."""
    return Rule("callable or None", lambda v: v is None or callable(v))


def choice(*options: Any) -> Rule:
    """One of ``options``."""
    return Rule(f"one of {', '.join(map(repr, options))}", lambda v: v in options)


def paths() -> Rule:
    """A list or tuple of absolute path strings."""

    def test(v: Any) -> bool:
        return isinstance(v, (list, tuple)) and all(
            isinstance(p, str) and p.startswith("/") for p in v
        )

    return Rule("a list of absolute paths", test)


def mapping(*, str_to_str: bool = False, optional: bool = True) -> Rule:
    """A dict (of str to str when ``str_to_str``)."""

    def test(v: Any) -> bool:
        if not isinstance(v, Mapping):
            return False
        return not str_to_str or all(
            isinstance(k, str) and isinstance(x, str) for k, x in v.items()
        )

    words = "a dict of str to str" if str_to_str else "a dict"
    return _optional(Rule(words, test), optional)

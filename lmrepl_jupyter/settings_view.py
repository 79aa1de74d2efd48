"""What ``%lmrepl`` prints: every setting a run uses, its value, and where it comes from.

The magics' defaults are not the API's (``%%srlm`` runs K=3 candidates for 8 iterations;
``SRLM()`` runs one for 30), so each line says which it is:

- ``set by %config`` — changed from the magic's default (``%config``, a config file);
- ``magic default`` — the magic's own default, with the API's when they differ;
- ``API default`` — the magic passes nothing (or the same value) and the engine's own
  default applies.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from lmrepl.credentials import mask_secrets

#: Traits that only shape the display; the engine never sees them.
DISPLAY_TRAITS = ("panel", "panel_output_lines", "panel_output_chars", "refresh_interval")

#: Traits that only ``%%srlm`` passes on (``%%rlm`` runs one trajectory).
SEARCH_TRAITS = (
    "n_candidates",
    "candidate_parallel",
    "candidate_temperature",
    "confidence_elicitation",
    "direct_threshold",
    "early_stop",
)

#: Engine arguments the magics always set themselves (not from a trait of that name).
_FIXED = {"verbose": False}

#: Constructor parameters that are not settings (internal or filled by the magic).
_NOT_SETTINGS = {"self", "rlm_kwargs", "depth"}


def api_defaults() -> dict[str, Any]:
    """``RLM``/``SRLM`` keyword defaults, read from their signatures."""
    from lmrepl.rlm import RLM
    from lmrepl.srlm import SRLM

    out: dict[str, Any] = {}
    for cls in (RLM, SRLM):
        for name, param in inspect.signature(cls.__init__).parameters.items():
            if name not in _NOT_SETTINGS and param.default is not inspect.Parameter.empty:
                out[name] = param.default
    return out


def _api_text(name: str, api: Mapping[str, Any]) -> str:
    if name == "backend":
        return "'openai' when OPENAI_API_KEY is set, else 'local'"
    return repr(api[name])


def _source(name: str, value: Any, default: Any, api: Mapping[str, Any]) -> str:
    if value != default:
        return "set by %config"
    if name in DISPLAY_TRAITS:
        return "magic default (display only)"
    if name == "max_output_chars" and value is None:
        return "API default (the REPL's own limit)"
    if name in api and name != "backend":
        # An empty dict and None both mean "no settings".
        same = api[name] == value or (not api[name] and value in ({}, None))
        if same:
            return "API default"
    if name in api:
        return f"magic default (API default: {_api_text(name, api)})"
    return "magic default"


def settings_lines(
    values: Mapping[str, Any], trait_defaults: Mapping[str, Any], engine_kwargs: Mapping[str, Any]
) -> list[str]:
    """One line per setting: ``SRLMMagics.<trait> = value  # source``, then the engine
    arguments the magics leave to the API (or to ``SRLMMagics.engine_kwargs``)."""
    api = api_defaults()
    rows: list[tuple[str, str]] = []
    for name in sorted(values):
        scope = "%%srlm only; " if name in SEARCH_TRAITS else ""
        rows.append(
            (
                f"SRLMMagics.{name} = {mask_secrets(values[name])!r}",
                scope + _source(name, values[name], trait_defaults[name], api),
            )
        )
    covered = set(values) | set(_FIXED)
    rows.append(("", ""))
    rows.append(("engine arguments (change with SRLMMagics.engine_kwargs):", ""))
    for name in sorted(set(api) - covered):
        if name in engine_kwargs:
            shown, source = mask_secrets(engine_kwargs[name]), "set by %config (engine_kwargs)"
        else:
            shown, source = api[name], "API default"
        rows.append((f"{name} = {shown!r}", source))
    for name, value in _FIXED.items():
        rows.append((f"{name} = {value!r}", "magic default (the panel shows progress)"))
    width = min(max(len(left) for left, right in rows if right), 60)
    return [f"  {left:<{width}}  # {right}" if right else left for left, right in rows]

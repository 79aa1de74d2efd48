"""Validation of ``%%srlm`` / ``%%rlm`` invocations (the options are in ``arguments``).

Turns a magic's parsed line plus the configured defaults into the keyword arguments
of the engine. Every problem with what the user typed — a bad value, two options that
contradict each other — becomes a one-line ``UsageError`` that starts with the magic's
name, here, before any engine object exists.
"""

from __future__ import annotations

import copy
import keyword
from dataclasses import dataclass, field
from typing import Any

from IPython.core.error import UsageError
from pydantic import BaseModel

from lmrepl import checks
from lmrepl.checks import Rule
from lmrepl.clients import validate_backend
from lmrepl.config import ARGUMENTS
from lmrepl.errors import ConfigurationError
from lmrepl.repl import settings
from lmrepl_jupyter.arguments import contradictions

EMBEDDED_MODEL = "Qwen2.5-Coder-0.5B-Instruct Q4_K_M (embedded, llama.cpp)"


def model_label(backend: str, backend_kwargs: dict[str, Any]) -> str:
    """Human name of the model a configuration uses."""
    name = backend_kwargs.get("model_name") or backend_kwargs.get("model")
    if backend == "local":
        return str(name) if name else EMBEDDED_MODEL
    return f"{name or '(backend default)'}" + (
        f" at {backend_kwargs['base_url']}" if backend_kwargs.get("base_url") else ""
    )


@dataclass
class RunSpec:
    """A validated magic invocation: what to run, on what, and how to show it."""

    kind: str
    var: str
    question: str
    output: str | None
    no_panel: bool
    engine_kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def model(self) -> str:
        """The model this run uses, for display."""
        return model_label(
            str(self.engine_kwargs.get("backend", "")),
            dict(self.engine_kwargs.get("backend_kwargs") or {}),
        )


def _check_name(kind: str, name: str, what: str) -> None:
    if not name.isidentifier() or keyword.iskeyword(name):
        raise UsageError(f"%%{kind}: {what} must be a Python name, got {name!r}")


#: Options that feed one engine argument: checked by that argument's rule.
_OPTION_RULES: dict[str, tuple[str, Rule]] = {
    "candidates": ("-k/--candidates", ARGUMENTS["n_candidates"]),
    "parallel": ("-p/--parallel", ARGUMENTS["candidate_parallel"]),
    "temperature": ("-t/--temperature", ARGUMENTS["candidate_temperature"]),
    "direct_threshold": ("--direct-threshold", ARGUMENTS["direct_threshold"]),
    "max_iterations": ("--max-iterations", ARGUMENTS["max_iterations"]),
    "cell_timeout": ("--cell-timeout", settings.COMMON["cell_timeout"]),
}


def _check_options(kind: str, args: Any) -> None:
    for dest, (flag, rule) in _OPTION_RULES.items():
        value = getattr(args, dest, None)
        if value is None:
            continue
        try:
            checks.check(flag, value, rule)
        except ConfigurationError as exc:
            raise UsageError(f"%%{kind}: {exc}") from None


def _takes_url(backend: str) -> bool:
    # Asked of the backend's own kwargs rules, so a new server backend needs no edit here.
    try:
        validate_backend(backend, {"base_url": "http://127.0.0.1", "model_name": "m"})
    except ConfigurationError as exc:
        return "base_url" not in str(exc)
    return True


def _refuse_contradictions(
    kind: str, args: Any, backend: str, backend_from: str, k: int | None, k_from: str
) -> None:
    """Options that cannot all hold: refused with both named, never silently resolved."""
    for first, second in contradictions(args):
        raise UsageError(f"%%{kind}: {first} and {second} contradict each other; give one")
    if args.output is not None and args.output == args.var:
        raise UsageError(
            f"%%{kind}: -o {args.output} would replace VAR {args.var} (the context) with "
            "the result; give -o another name"
        )
    if args.base_url and not _takes_url(backend):
        raise UsageError(
            f"%%{kind}: --base-url does not apply to backend {backend!r} ({backend_from}); "
            "only a server backend (openai, anthropic) takes a URL"
        )
    if k is None:
        return
    parallel = getattr(args, "parallel", None)
    if parallel is not None and parallel > k:
        raise UsageError(
            f"%%{kind}: -p/--parallel {parallel} is more than the {k} candidates of "
            f"{k_from}; at most K candidates run at once"
        )
    if getattr(args, "early_stop", None) is True and k < 2:
        raise UsageError(
            f"%%{kind}: --early-stop needs 2 or more candidates, and {k_from} is {k}; "
            "with one candidate there is nothing to stop"
        )


def build_spec(kind: str, args: Any, cell: str | None, defaults: dict[str, Any]) -> RunSpec:
    """Validate parsed ``args`` and the cell against ``defaults`` (the config traits)."""
    # Values first: in "-k doc" the VAR was taken as K, and that is what to say.
    _check_options(kind, args)
    if args.var is None:
        raise UsageError(f"%%{kind}: name the variable holding the context, e.g. %%{kind} doc")
    _check_name(kind, args.var, "VAR")
    if args.output is not None:
        _check_name(kind, args.output, "-o NAME")
    question = (cell or "").strip()
    if not question:
        raise UsageError(f"%%{kind}: the cell body is the question, and it is empty")
    backend = args.backend or defaults["backend"]
    backend_from = "-b/--backend" if args.backend else "SRLMMagics.backend"
    k: int | None = None
    k_from = ""
    if kind == "srlm":
        k = _given(args.candidates, defaults["n_candidates"])
        k_from = "-k/--candidates" if args.candidates is not None else "SRLMMagics.n_candidates"
    _refuse_contradictions(kind, args, backend, backend_from, k, k_from)

    backend_kwargs = copy.deepcopy(dict(defaults["backend_kwargs"]))
    if args.backend and args.backend != defaults["backend"]:
        # Settings of the configured backend (its model, URL, key) do not carry over.
        backend_kwargs = {}
    if args.model:
        backend_kwargs["model_name"] = args.model
    if args.base_url:
        backend_kwargs["base_url"] = args.base_url
    env_kwargs = copy.deepcopy(dict(defaults["environment_kwargs"]))
    if args.cell_timeout is not None:
        env_kwargs["cell_timeout"] = args.cell_timeout
    if defaults.get("max_output_chars") is not None:
        env_kwargs.setdefault("max_output_chars", defaults["max_output_chars"])
    kwargs: dict[str, Any] = copy.deepcopy(dict(defaults.get("engine_kwargs") or {}))
    kwargs.update(
        backend=backend,
        backend_kwargs=backend_kwargs,
        environment=defaults["environment"],
        environment_kwargs=env_kwargs,
        max_iterations=_given(args.max_iterations, defaults["max_iterations"]),
        verbose=False,
    )
    if kind == "srlm":
        _search_kwargs(args, defaults, kwargs)
    return RunSpec(kind, args.var, question, args.output, bool(args.no_panel), kwargs)


def _given(value: Any, default: Any) -> Any:
    return default if value is None else value


def _search_kwargs(args: Any, defaults: dict[str, Any], kwargs: dict[str, Any]) -> None:
    k = _given(args.candidates, defaults["n_candidates"])
    kwargs.update(
        n_candidates=k,
        # A configured P above a K typed on the line just means "all at once"; a P typed
        # above K was refused in _refuse_contradictions.
        candidate_parallel=min(_given(args.parallel, defaults["candidate_parallel"]), k),
        candidate_temperature=_given(args.temperature, defaults["candidate_temperature"]),
        confidence_elicitation=_given(args.confidence, defaults["confidence_elicitation"]),
        direct_threshold=_given(args.direct_threshold, defaults["direct_threshold"]),
        early_stop=_given(args.early_stop, defaults["early_stop"]),
    )


def to_plain(value: Any) -> Any:
    """``value`` as JSON data: pydantic models dumped, containers walked, the rest repr'd.

    The record's ``config`` keeps the engine arguments; functions (responders, custom
    tools) are kept as their repr.
    """
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_plain(v) for v in value]
    return repr(value)

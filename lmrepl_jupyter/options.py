"""Option parsing and validation for ``%%srlm`` / ``%%rlm``.

Turns a magic's line plus the configured defaults into the keyword arguments of the
engine. Every problem with what the user typed becomes a one-line ``UsageError``
here, before any engine object exists.
"""

from __future__ import annotations

import argparse
import copy
import keyword
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from IPython.core import magic_arguments as _ma
from IPython.core.error import UsageError
from IPython.core.magic import cell_magic as _cell_magic
from pydantic import BaseModel

from lmrepl import checks
from lmrepl.checks import Rule
from lmrepl.config import ARGUMENTS
from lmrepl.errors import ConfigurationError
from lmrepl.repl import settings

F = TypeVar("F", bound=Callable[..., Any])

EMBEDDED_MODEL = "Qwen2.5-Coder-0.5B-Instruct Q4_K_M (embedded, llama.cpp)"


def _arg(*names: str, **kwargs: Any) -> Callable[[F], F]:
    # IPython's magic_arguments is untyped; these wrappers give it types.
    return cast(Callable[[F], F], _ma.argument(*names, **kwargs))  # type: ignore[no-untyped-call]


def magic_arguments(func: F) -> F:
    """IPython's ``magic_arguments()`` decorator, typed (builds the parser for ``func``)."""
    return cast(F, _ma.magic_arguments()(func))  # type: ignore[no-untyped-call]


def parse_argstring(magic: Callable[..., Any], line: str) -> argparse.Namespace:
    """Parse ``line`` with ``magic``'s parser (argparse errors become UsageError)."""
    return cast(argparse.Namespace, _ma.parse_argstring(magic, line))  # type: ignore[no-untyped-call]


def cell_magic(func: F) -> F:
    """IPython's ``cell_magic`` method marker, typed."""
    return cast(F, _cell_magic(func))


def _apply(func: F, decorators: list[Callable[[F], F]]) -> F:
    # Decorators listed top-down, as they would be written above the function.
    for deco in reversed(decorators):
        func = deco(func)
    return func


def common_arguments(func: F) -> F:
    """Options shared by ``%%srlm`` and ``%%rlm`` (listed in ``%%srlm?``)."""
    return _apply(
        func,
        [
            _arg(
                "-b",
                "--backend",
                metavar="NAME",
                help="local, openai, anthropic or replay",
            ),
            _arg("-m", "--model", help="model name (backend_kwargs['model_name'])"),
            _arg("--base-url", metavar="URL", help="OpenAI-compatible server URL"),
            _arg(
                "--cell-timeout",
                type=float,
                metavar="S",
                help="hard time limit per REPL cell",
            ),
            _arg("--max-iterations", type=int, metavar="N", help="iterations per trajectory"),
            _arg(
                "--no-panel",
                action="store_true",
                help="no widget panel: a text (rich) view instead",
            ),
            _arg("-o", "--output", metavar="NAME", help="store the result object in NAME"),
            _arg("var", nargs="?", metavar="VAR", help="variable holding the context"),
        ],
    )


def search_arguments(func: F) -> F:
    """Options only ``%%srlm`` has."""
    return _apply(
        func,
        [
            _arg(
                "-k",
                "--candidates",
                type=int,
                metavar="K",
                help="candidate trajectories",
            ),
            _arg("-p", "--parallel", type=int, metavar="P", help="candidates run at once"),
            _arg(
                "-t",
                "--temperature",
                type=float,
                metavar="T",
                help="candidate temperature",
            ),
            _arg(
                "--confidence",
                dest="confidence",
                action="store_const",
                const=True,
                default=None,
                help="ask for per-step confidence (VC scoring)",
            ),
            _arg(
                "--no-confidence",
                dest="confidence",
                action="store_const",
                const=False,
                help="no confidence elicitation (shortest trace wins)",
            ),
            _arg(
                "--direct-threshold",
                type=int,
                metavar="N",
                help="direct call below N chars",
            ),
            _arg(
                "--early-stop",
                dest="early_stop",
                action="store_const",
                const=True,
                default=None,
                help="stop remaining candidates once a majority agrees",
            ),
            _arg(
                "--no-early-stop",
                dest="early_stop",
                action="store_const",
                const=False,
                help="run every candidate to its end",
            ),
        ],
    )


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


def build_spec(kind: str, args: Any, cell: str | None, defaults: dict[str, Any]) -> RunSpec:
    """Validate parsed ``args`` and the cell against ``defaults`` (the config traits)."""
    if args.var is None:
        raise UsageError(f"%%{kind}: name the variable holding the context, e.g. %%{kind} doc")
    _check_name(kind, args.var, "VAR")
    if args.output is not None:
        _check_name(kind, args.output, "-o NAME")
    question = (cell or "").strip()
    if not question:
        raise UsageError(f"%%{kind}: the cell body is the question, and it is empty")
    _check_options(kind, args)

    backend = args.backend or defaults["backend"]
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

"""Checks at the edge of the public API: the ``RLM``/``SRLM`` call and ``completion()``.

``checked`` binds a constructor call to its signature before the constructor runs, so
an unknown keyword, a positional too many or a value given twice is a
``ConfigurationError`` that names the accepted arguments (and the closest one to a
misspelled name) instead of Python's bare ``TypeError``. ``before_completion`` checks a
``completion()`` call before any model call or kernel: the context's type, the
question, and a backend that was chosen from the environment.
"""

from __future__ import annotations

import functools
import inspect
import warnings
from collections.abc import Callable, Sequence
from typing import Any, ParamSpec, Protocol, TypeVar

from lmrepl import checks
from lmrepl.errors import ConfigurationError, ContextError

__all__ = [
    "QUESTION",
    "before_completion",
    "check_context",
    "check_question",
    "checked",
    "warn_if_empty",
]

P = ParamSpec("P")
R = TypeVar("R")

#: Where ``checked`` keeps the names an instance was constructed with (non-None values).
_GIVEN = "_lmrepl_given_arguments"

#: What a question (``root_prompt``) must be.
QUESTION = checks.Rule("a non-empty string", lambda q: isinstance(q, str) and bool(q.strip()))

#: Contexts refused outright: they hold nothing to read (see ``check_context``).
_SCALARS = (type(None), bool, int, float, complex)


class _Client(Protocol):
    def check(self) -> None: ...


class _Model(Protocol):
    """What ``before_completion`` needs of an ``RLM`` (named so: lmrepl.rlm imports us)."""

    backend: str

    def _clients(self) -> tuple[_Client, Sequence[_Client]]: ...


_NAMED = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


def _parameters(fn: Callable[..., Any]) -> list[inspect.Parameter]:
    """A method's parameters without ``self`` (``inspect`` follows ``functools.wraps``)."""
    return list(inspect.signature(fn).parameters.values())[1:]


def checked(
    *, extends: Callable[..., Any] | None = None
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate an ``__init__`` so a call that does not fit its signature is a
    ``ConfigurationError`` raised before the body runs.

    ``extends``: the parent ``__init__`` that receives this one's ``**kwargs``; its
    names are accepted too (``SRLM`` accepts its own arguments and ``RLM``'s). The
    signature is kept (``ParamSpec``), so type checkers still check every call.
    """

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        signature = inspect.signature(fn)
        params = _parameters(fn)
        accepted = [p.name for p in params if p.kind in _NAMED]
        if extends is not None:
            accepted += [p.name for p in _parameters(extends) if p.kind in _NAMED]
        positional = [p.name for p in params if p.kind in _POSITIONAL]
        open_ended = extends is None and any(p.kind is p.VAR_KEYWORD for p in params)
        takes_args = any(p.kind is p.VAR_POSITIONAL for p in params)

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            owner = type(args[0]).__name__ if args else fn.__qualname__.split(".")[0]
            if not open_ended:
                checks.check_names(f"{owner} argument", kwargs, accepted)
            if not takes_args and len(args) - 1 > len(positional):
                raise ConfigurationError(
                    f"{owner}() takes at most {len(positional)} positional arguments "
                    f"({', '.join(positional)}), got {len(args) - 1}; pass the others by name"
                )
            try:
                bound = signature.bind(*args, **kwargs)
            except TypeError as exc:
                raise ConfigurationError(f"{owner}(): {exc}") from None
            result = fn(*args, **kwargs)
            if args:
                given = frozenset(k for k, v in list(bound.arguments.items())[1:] if v is not None)
                # The innermost call records first: an SRLM's RLM arguments arrive as
                # ``**rlm_kwargs`` at its own level, and by name at RLM's.
                vars(args[0]).setdefault(_GIVEN, given)
            return result

        return wrapper

    return decorate


def check_context(context: object) -> None:
    """Refuse a context with nothing to read in it (``ContextError``).

    A ``ContextError`` (a ``TypeError``) is the class that already reports a context
    that cannot be shipped to the REPL, so every "this context cannot be used" failure
    is one class, apart from the settings (``ConfigurationError``). ``None``, a bool or
    a number is refused: it is almost always a slip (a missing variable, the arguments
    swapped), and the model would search a REPL variable holding one scalar.
    """
    if isinstance(context, _SCALARS):
        shown = repr(context)
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        raise ContextError(
            "the context (completion's first argument) must be a str, bytes, list, dict or "
            "another picklable object holding the data to read, got "
            f"{type(context).__name__} {shown}: it holds nothing to search. Call "
            "completion(context, root_prompt) with the data first and the question second"
        )


def warn_if_empty(context: object, stacklevel: int = 2) -> None:
    """A ``UserWarning`` for an empty (or blank) string, bytes, list, dict, tuple or set.

    An empty context may be deliberate (a question the model answers by computing), so
    the run goes on; the warning catches the accidental case (a file that read as "").
    """
    sized = isinstance(context, str | bytes | list | tuple | dict | set | frozenset)
    if sized and (not context.strip() if isinstance(context, str) else not context):
        warnings.warn(
            f"the context is empty ({context!r}): the model will see an empty context and "
            "can only answer from the question",
            UserWarning,
            stacklevel=stacklevel + 1,
        )


def check_question(root_prompt: object, context: object) -> None:
    """``root_prompt`` must be a question; None is allowed only for a str context.

    lm-repl's call shape ``completion(prompt)`` puts the request inside a string
    context, so the default question asks the model to answer the request it finds
    there. A list, dict, bytes or object context holds no such request (nor does an
    empty string), so it needs ``root_prompt``.
    """
    if root_prompt is None:
        if isinstance(context, str) and context.strip():
            return
        kind = (
            "an empty string" if isinstance(context, str) else f"of type {type(context).__name__}"
        )
        raise ConfigurationError(
            f"root_prompt (the question) must be given when the context is {kind}, got "
            "None: only a non-empty str context can carry the request itself (lm-repl's "
            "completion(prompt) call shape). Call completion(context, 'your question')"
        )
    checks.check("root_prompt (the question)", root_prompt, QUESTION)


def _check_default_backend(rlm: _Model) -> None:
    """A backend chosen from the environment is checked now, naming what chose it."""
    given = vars(rlm).get(_GIVEN)
    if given is None or "backend" in given:
        return
    # lmrepl.config re-exports this module, so it is imported only when needed.
    from lmrepl.config import default_reason

    try:
        root, _ = rlm._clients()
        root.check()
    except ConfigurationError as exc:
        why = default_reason(rlm.backend)
        raise ConfigurationError(f"{exc} (backend {rlm.backend!r} was {why})") from None


def before_completion(rlm: _Model, context: object, root_prompt: object) -> None:
    """Everything a ``completion()`` call can get wrong, checked before it starts
    anything: the context, the question, and a backend chosen by default."""
    check_context(context)
    check_question(root_prompt, context)
    _check_default_backend(rlm)
    # Counted from here: this function (1), completion (2), the user's call (3).
    warn_if_empty(context, stacklevel=3)

"""The options of ``%%srlm`` / ``%%rlm``: their parsers, help, and one-line parse errors.

IPython's ``magic_arguments`` builds an argparse parser per magic; its errors read like
argparse's own ("argument -k/--candidates: invalid int value") and its usage line
starts with one ``%``. Here every parse problem becomes a ``UsageError`` that starts
with the magic's name and says what is accepted, and the usage line names the cell
magic as it is typed (``%%srlm``).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, cast

from IPython.core import magic_arguments as _ma
from IPython.core.error import UsageError
from IPython.core.magic import cell_magic as _cell_magic
from IPython.utils.process import arg_split  # type: ignore[attr-defined]

from lmrepl import checks

F = TypeVar("F", bound=Callable[..., Any])


def _arg(*names: str, **kwargs: Any) -> Callable[[F], F]:
    # IPython's magic_arguments is untyped; these wrappers give it types.
    return cast(Callable[[F], F], _ma.argument(*names, **kwargs))  # type: ignore[no-untyped-call]


def cell_magic(func: F) -> F:
    """IPython's ``cell_magic`` method marker, typed."""
    return cast(F, _cell_magic(func))


def cell_magic_arguments(func: F) -> F:
    """Build ``func``'s parser (IPython's ``magic_arguments()``) for a cell magic.

    IPython writes the usage line as ``%name``; a cell magic is typed ``%%name``, so the
    parser's name and the help text (``%%srlm?``) are rewritten to say so.
    """
    func = cast(F, _ma.magic_arguments()(func))  # type: ignore[no-untyped-call]
    parser: argparse.ArgumentParser = func.parser  # type: ignore[attr-defined]
    # MagicHelpFormatter prefixes the usage with "%"; the name adds the second one.
    parser.prog = f"%{func.__name__}"
    func.__doc__ = parser.format_help()
    return func


def _apply(func: F, decorators: list[Callable[[F], F]]) -> F:
    # Decorators listed top-down, as they would be written above the function.
    for deco in reversed(decorators):
        func = deco(func)
    return func


def _lenient(convert: Callable[[str], Any]) -> Callable[[str], Any]:
    """``convert``, but text it cannot convert is kept as text.

    The option's rule (``lmrepl.config.ARGUMENTS``) then refuses it with the same
    words as a bad value of the right type: "-k/--candidates must be an integer >= 1,
    got 'abc'", not argparse's "invalid int value".
    """

    def parse(text: str) -> Any:
        try:
            return convert(text)
        except ValueError:
            return text

    parse.__name__ = convert.__name__
    return parse


class Switch(argparse.Action):
    """An on/off flag (``--confidence`` / ``--no-confidence``) that notices both given.

    argparse lets the last of two opposite flags win silently; here the first flag used
    is remembered, and ``contradictions(args)`` lists each pair given together.
    """

    def __init__(
        self,
        option_strings: Sequence[str],
        dest: str,
        const: Any = None,
        default: Any = None,
        help: str | None = None,
    ) -> None:
        super().__init__(option_strings, dest, nargs=0, const=const, default=default, help=help)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        """Set the flag's value; record a clash with an opposite flag given earlier."""
        used: dict[str, str] = namespace.__dict__.setdefault("switch_flags", {})
        flag = self.option_strings[0]
        previous = used.get(self.dest)
        if previous is not None and getattr(namespace, self.dest) != self.const:
            namespace.__dict__.setdefault("contradictions", []).append((previous, flag))
        used.setdefault(self.dest, flag)
        setattr(namespace, self.dest, self.const)


def contradictions(args: argparse.Namespace) -> list[tuple[str, str]]:
    """Pairs of opposite flags given in one line, e.g. ``("--confidence", "--no-confidence")``."""
    return list(getattr(args, "contradictions", []))


def common_arguments(func: F) -> F:
    """Options shared by ``%%srlm`` and ``%%rlm`` (listed in ``%%srlm?``)."""
    return _apply(
        func,
        [
            _arg("-b", "--backend", metavar="NAME", help="local, openai, anthropic or replay"),
            _arg("-m", "--model", help="model name (backend_kwargs['model_name'])"),
            _arg(
                "--base-url",
                metavar="URL",
                help="server URL (openai and anthropic backends only)",
            ),
            _arg(
                "--cell-timeout",
                type=_lenient(float),
                metavar="S",
                help="hard time limit per REPL cell, seconds > 0",
            ),
            _arg(
                "--max-iterations",
                type=_lenient(int),
                metavar="N",
                help="iterations per trajectory, >= 1",
            ),
            _arg(
                "--no-panel",
                action="store_true",
                help="no widget panel: a text (rich) view instead",
            ),
            _arg(
                "-o",
                "--output",
                metavar="NAME",
                help="store the result object in NAME (also when the run fails)",
            ),
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
                type=_lenient(int),
                metavar="K",
                help="candidate trajectories, >= 1",
            ),
            _arg(
                "-p",
                "--parallel",
                type=_lenient(int),
                metavar="P",
                help="candidates run at once, 1 to K",
            ),
            _arg(
                "-t",
                "--temperature",
                type=_lenient(float),
                metavar="T",
                help="candidate temperature, >= 0",
            ),
            _arg(
                "--confidence",
                dest="confidence",
                action=Switch,
                const=True,
                help="ask for per-step confidence (VC scoring)",
            ),
            _arg(
                "--no-confidence",
                dest="confidence",
                action=Switch,
                const=False,
                help="no confidence elicitation (shortest trace wins)",
            ),
            _arg(
                "--direct-threshold",
                type=_lenient(int),
                metavar="N",
                help="direct call below N chars, >= 0",
            ),
            _arg(
                "--early-stop",
                dest="early_stop",
                action=Switch,
                const=True,
                help="stop remaining candidates once a majority agrees (K >= 2)",
            ),
            _arg(
                "--no-early-stop",
                dest="early_stop",
                action=Switch,
                const=False,
                help="run every candidate to its end",
            ),
        ],
    )


def _options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if a.option_strings]


def _flags(action: argparse.Action) -> str:
    return "/".join(action.option_strings)


def parse_line(
    kind: str,
    magic: Callable[..., Any],
    line: str,
    search_only: Callable[..., Any] | None = None,
) -> argparse.Namespace:
    """Parse ``line`` with ``magic``'s parser; every problem is a one-line ``UsageError``.

    ``search_only`` is the ``%%srlm`` magic when parsing ``%%rlm``: an option only it
    has is named as such ("-k is an %%srlm option: %%rlm runs one trajectory").
    """
    parser: argparse.ArgumentParser = magic.parser  # type: ignore[attr-defined]
    prefix = f"%%{kind}: "
    try:
        argv = arg_split(line, strict=True)
    except ValueError as exc:
        raise UsageError(f"{prefix}cannot split the options ({exc}): {line!r}") from None
    if search_only is not None:
        _refuse_search_options(kind, parser, search_only.parser, argv)  # type: ignore[attr-defined]
    try:
        args, rest = parser.parse_known_args(argv)
    except UsageError as exc:
        raise UsageError(prefix + _reword(str(exc))) from None
    if rest:
        raise UsageError(prefix + _leftover(kind, parser, rest))
    return args


def _reword(message: str) -> str:
    # argparse's own words, where they are still unclear without its usage block.
    head, _sep, tail = message.partition(": ")
    if head.startswith("argument ") and tail == "expected one argument":
        return f"{head.removeprefix('argument ')} needs a value"
    return message


def _leftover(kind: str, parser: argparse.ArgumentParser, rest: list[str]) -> str:
    options = _options(parser)
    unknown = [w for w in rest if w.startswith("-") and len(w) > 1]
    if unknown:
        word = unknown[0].split("=", 1)[0]
        known = [s for a in options for s in a.option_strings]
        hint = checks.closest(word, known)
        accepted = ", ".join(_flags(a) for a in options)
        maybe = f" (did you mean {hint}?)" if hint else ""
        return f"unknown option {word}{maybe}; accepted: {accepted}"
    return (
        f"one VAR is accepted, got also {' '.join(map(repr, rest))}; "
        f"usage: %%{kind} [options] VAR (see %%{kind}?)"
    )


def _refuse_search_options(
    kind: str, own: argparse.ArgumentParser, search: argparse.ArgumentParser, argv: list[str]
) -> None:
    own_flags = {s for a in _options(own) for s in a.option_strings}
    extra = [a for a in _options(search) if not set(a.option_strings) & own_flags]
    for word in argv:
        if not word.startswith("-") or word == "-":
            continue
        name = word.split("=", 1)[0]
        for action in extra:
            longs = [s for s in action.option_strings if s.startswith("--")]
            shorts = [s for s in action.option_strings if not s.startswith("--")]
            # argparse accepts "-k2" and unambiguous prefixes of long options ("--cand").
            hit = any(word.startswith(s) for s in shorts if not word.startswith("--")) or any(
                s.startswith(name) and len(name) > 2 for s in longs
            )
            if hit and not any(s.startswith(name) for s in own_flags if s.startswith("--")):
                accepted = ", ".join(_flags(a) for a in _options(own))
                raise UsageError(
                    f"%%{kind}: {_flags(action)} is an %%srlm option; %%{kind} runs one "
                    f"trajectory (use %%srlm for candidates). %%{kind} accepts: {accepted}"
                )

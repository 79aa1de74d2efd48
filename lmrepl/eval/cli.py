"""``lmrepl eval``: run the accuracy harness from the command line.

Exit status 0 when the eval ran (whatever the answers), 2 for a bad option value, 1
for a configuration problem (missing model, key or matplotlib, unreachable server).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from collections.abc import Callable
from typing import Any, TypeVar

from lmrepl.errors import ConfigurationError
from lmrepl.eval.tasks import DEFAULT_SUITE

__all__ = ["add_eval_arguments", "run_eval_command"]

PROG = "lmrepl eval"
T = TypeVar("T")


class UsageError(ValueError):
    """A bad option value (exit status 2)."""


def add_eval_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``lmrepl eval``; sets ``func`` to :func:`run_eval_command`."""
    suite = DEFAULT_SUITE
    add = parser.add_argument
    lengths, seeds = ",".join(map(str, suite.lengths)), ",".join(map(str, suite.seeds))
    add(
        "--methods",
        default="direct,rlm,srlm",
        metavar="LIST",
        help="any of direct,rlm,srlm (default: all)",
    )
    add("--k", default="3", metavar="N", help="SRLM candidates (default 3)")
    add(
        "--families",
        default=",".join(suite.families),
        metavar="LIST",
        help="task families (default: all)",
    )
    add("--lengths", default=lengths, metavar="LIST", help=f"characters (default {lengths})")
    add("--seeds", default=seeds, metavar="LIST", help=f"default {seeds}")
    add("--backend", default="local", help="model backend (default: the embedded model)")
    add("--model", default=None, help="model name (a .gguf path for --backend local)")
    add("--base-url", default=None, help="an OpenAI-compatible server's URL (--backend openai)")
    add("--environment", default="kernel", help="where model code runs (default kernel)")
    add("--max-iterations", default="6", help="iterations per trajectory (default 6)")
    add("--max-timeout", default="300", help="seconds per run (default 300)")
    add("--out", default=None, help="report folder (default runs/eval-<time>)")
    add("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run_eval_command)


def _items(option: str, text: str, parse: Callable[[str], T]) -> list[T]:
    values: list[T] = []
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            continue
        try:
            values.append(parse(item))
        except ValueError:
            raise UsageError(f"{option}: not a valid value: {item!r}") from None
    if not values:
        raise UsageError(f"{option} must list at least one value, got {text!r}")
    return values


def _length(text: str) -> int:
    """``6000``, ``6_000`` or ``6k``."""
    lowered = text.lower().replace("_", "")
    return int(lowered[:-1]) * 1000 if lowered.endswith("k") else int(lowered)


def _number(option: str, text: str, parse: Callable[[str], T]) -> T:
    try:
        return parse(text.strip())
    except ValueError:
        raise UsageError(f"{option}: not a valid value: {text!r}") from None


def _backend_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"base_url": args.base_url} if args.base_url else {}
    model: str | None = args.model
    if model and args.backend == "local" and (model.endswith(".gguf") or os.path.isfile(model)):
        kwargs["model_path"] = model
    elif model:
        kwargs["model_name"] = model
    return kwargs


def _options(args: argparse.Namespace) -> dict[str, Any]:
    """Every option, parsed and checked; ``UsageError`` names the bad one."""
    from lmrepl.eval.runner import parse_methods
    from lmrepl.eval.tasks import make_suite

    k = _number("--k", args.k, int)
    if k < 1:
        raise UsageError(f"--k must be an integer >= 1, got {k}")
    try:
        specs = parse_methods(args.methods, k)
    except ConfigurationError as exc:
        raise UsageError(f"--methods: {exc}") from None
    families = _items("--families", args.families, str)
    lengths = _items("--lengths", args.lengths, _length)
    seeds = _items("--seeds", args.seeds, int)
    try:
        tasks = make_suite(families, lengths, seeds)
    except ConfigurationError as exc:
        raise UsageError(str(exc)) from None
    max_iterations = _number("--max-iterations", args.max_iterations, int)
    max_timeout = _number("--max-timeout", args.max_timeout, float)
    if max_iterations < 1 or not 0 < max_timeout < float("inf"):
        raise UsageError("--max-iterations must be >= 1 and --max-timeout a number > 0")
    out = args.out or os.path.join("runs", f"eval-{time.strftime('%Y%m%d-%H%M%S')}")
    command = [
        *("lmrepl", "eval", "--methods", ",".join(s.label for s in specs), "--k", str(k)),
        *("--families", ",".join(families), "--lengths", ",".join(map(str, lengths))),
        *("--seeds", ",".join(map(str, seeds)), "--backend", args.backend),
        *(("--model", args.model) if args.model else ()),
        *(("--base-url", args.base_url) if args.base_url else ()),
        *("--environment", args.environment, "--max-iterations", str(max_iterations)),
        *("--max-timeout", f"{max_timeout:g}", "--out", out),
    ]
    return {
        "methods": [s.label for s in specs],
        "tasks": tasks,
        "k": k,
        "backend": args.backend,
        "backend_kwargs": _backend_kwargs(args),
        "environment": args.environment,
        "max_iterations": max_iterations,
        "max_timeout": max_timeout,
        "out_dir": out,
        "quiet": bool(args.quiet),
        "command": shlex.join(command),
    }


def _error(message: object) -> None:
    line = " ".join(str(message).split())
    print(f"{PROG}: error: {line}", file=sys.stderr)


def run_eval_command(args: argparse.Namespace) -> int:
    """Run the eval the options describe; print where the report went and its tables."""
    from lmrepl.eval.report import render_tables
    from lmrepl.eval.runner import run_eval

    try:
        options = _options(args)
    except UsageError as exc:
        _error(exc)
        return 2
    try:
        report = run_eval(**options)
    except ConfigurationError as exc:
        _error(exc)
        return 1
    except KeyboardInterrupt:
        _error(f"interrupted; the rows so far are in {options['out_dir']}")
        return 130
    out = options["out_dir"]
    print(render_tables(report))
    print(f"\nreport: {os.path.join(out, 'report.md')} (and report.json, accuracy.png)")
    return 0

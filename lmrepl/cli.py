"""The ``lmrepl`` console script: ``serve``, ``model {path,check}``, ``eval``, ``view``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The ``lmrepl`` parser; each subcommand sets ``func`` (one place to add more)."""
    from lmrepl.eval.cli import add_eval_arguments
    from lmrepl.local.__main__ import add_model_commands, add_serve_arguments
    from lmrepl.view import add_view_arguments

    parser = argparse.ArgumentParser(prog="lmrepl", description="Recursive Language Models.")
    sub = parser.add_subparsers(dest="command", required=True)
    add_serve_arguments(
        sub.add_parser("serve", help="serve the embedded model on 127.0.0.1 (OpenAI API)")
    )
    model = sub.add_parser("model", help="the embedded model's file")
    add_model_commands(model.add_subparsers(dest="model_command", required=True))
    add_eval_arguments(
        sub.add_parser(
            "eval",
            help="accuracy of direct, RLM and SRLM on seeded long-context tasks",
            description="Run the accuracy harness (docs/eval.md) and write its report.",
        )
    )
    add_view_arguments(
        sub.add_parser(
            "view",
            help="a standalone HTML page of a trajectory record or a JSONL log",
            description="Write one self-contained HTML page (no network, no JavaScript) "
            "for a trajectory record or an RLMLogger log, and print its path (docs/viewer.md).",
        )
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``lmrepl`` console script."""
    from lmrepl.local.__main__ import dispatch

    return dispatch(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())

"""An accuracy harness: seeded long-context tasks, run by direct, RLM and SRLM.

Four task families with exact answers (:mod:`lmrepl.eval.tasks`): ``niah`` (one
vault's code among filler), ``niah-multi`` (one of several vaults' codes), ``count``
(a count or a total over generated records) and ``pairs`` (the two users who share a
badge number). The default small suite is 4 families × 2 lengths (6,000 and 60,000
characters) × 2 seeds = 16 tasks::

    from lmrepl.eval import make_suite, run_eval

    report = run_eval(
        methods=["direct", "rlm", "srlm"],
        k=3,
        tasks=make_suite(families=["niah", "count"], lengths=[6_000], seeds=[0, 1]),
        backend="openai",
        backend_kwargs={"model_name": "gpt-5-nano"},
        out_dir="runs/eval",          # report.json, report.md, accuracy.png
    )
    report.summary.accuracy["srlm(k=3)"].accuracy

From the command line: ``lmrepl eval --methods direct,rlm,srlm --k 3`` (docs/eval.md).
"""

from __future__ import annotations

from lmrepl.eval.report import load_report, render_markdown, write_report
from lmrepl.eval.results import Accuracy, EvalReport, EvalRow, EvalSettings, EvalSummary
from lmrepl.eval.runner import METHODS, MethodSpec, parse_methods, run_eval
from lmrepl.eval.scoring import score
from lmrepl.eval.tasks import DEFAULT_SUITE, FAMILIES, Suite, Task, make_suite

__all__ = [
    "DEFAULT_SUITE",
    "FAMILIES",
    "METHODS",
    "Accuracy",
    "EvalReport",
    "EvalRow",
    "EvalSettings",
    "EvalSummary",
    "MethodSpec",
    "Suite",
    "Task",
    "load_report",
    "make_suite",
    "parse_methods",
    "render_markdown",
    "run_eval",
    "score",
    "write_report",
]

"""Run methods (direct, RLM, SRLM) over tasks on any backend and score every answer."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from lmrepl import config
from lmrepl.clients import make_client
from lmrepl.credentials import mask_secrets
from lmrepl.errors import ConfigurationError, RunStopped
from lmrepl.eval.results import EvalReport, EvalRow, EvalSettings, summarize
from lmrepl.eval.scoring import score
from lmrepl.eval.tasks import Task, make_suite
from lmrepl.rlm import RLM
from lmrepl.srlm import SRLM
from lmrepl.types import RLMChatCompletion, UsageSummary

__all__ = ["METHODS", "MethodSpec", "parse_methods", "run_eval"]

#: The method names ``run_eval`` knows.
METHODS = ("direct", "rlm", "srlm")
#: A context shorter than this goes to the direct route: every context does.
DIRECT_THRESHOLD = 10**12
_SRLM_LABEL = re.compile(r"srlm\(k=(\d+)\)")


@dataclass(frozen=True)
class MethodSpec:
    """A method and, for ``srlm``, its number of candidates ``k``."""

    name: str
    k: int = 1

    @property
    def label(self) -> str:
        """The method's name in reports: ``direct``, ``rlm``, ``srlm(k=3)``."""
        return f"srlm(k={self.k})" if self.name == "srlm" else self.name


def parse_methods(methods: str | Sequence[str], k: int = 3) -> list[MethodSpec]:
    """``"direct,rlm,srlm"`` or a list of names (``srlm(k=N)`` sets its own K) → specs."""
    names = methods.split(",") if isinstance(methods, str) else list(methods)
    specs: list[MethodSpec] = []
    for raw in names:
        name = str(raw).strip()
        if match := _SRLM_LABEL.fullmatch(name):
            spec = MethodSpec("srlm", int(match.group(1)))
        elif name in METHODS:
            spec = MethodSpec(name, k if name == "srlm" else 1)
        else:
            raise ConfigurationError(
                f"unknown method {name!r}; accepted: {', '.join(METHODS)} (or srlm(k=N))"
            )
        if spec.k < 1:
            raise ConfigurationError(f"k must be an integer >= 1, got {spec.k}")
        if spec not in specs:
            specs.append(spec)
    if not specs:
        raise ConfigurationError("methods must name at least one of " + ", ".join(METHODS))
    return specs


class _Model(Protocol):
    def completion(self, prompt: Any, root_prompt: str | None = None) -> RLMChatCompletion: ...

    def close(self) -> None: ...


def _build(spec: MethodSpec, common: dict[str, Any]) -> RLM:
    """One reusable RLM/SRLM per method. The direct route runs no code, so no REPL."""
    if spec.name == "direct":
        kwargs = {**common, "environment": "local", "environment_kwargs": {}}
        return SRLM(direct_threshold=DIRECT_THRESHOLD, **kwargs)
    if spec.name == "rlm":
        return RLM(**common)
    return SRLM(
        n_candidates=spec.k,
        candidate_parallel=spec.k,
        candidate_temperature=0.7,
        confidence_elicitation=True,
        **common,
    )


def _preflight(backend: str, backend_kwargs: dict[str, Any]) -> None:
    """Missing keys, packages or model files, and unreachable servers fail now, once."""
    kwargs = {k: v for k, v in backend_kwargs.items() if k != "context_window"}
    client = make_client(backend, kwargs)
    try:
        client.check()
    finally:
        client.close()


def _grounded(metadata: dict[str, Any]) -> bool | None:
    """The winner's ``grounded`` flag (an RLM's own), where the run recorded one."""
    value = metadata.get("grounded")
    winner, candidates = metadata.get("winner"), metadata.get("candidates")
    if isinstance(winner, int) and isinstance(candidates, list) and 0 <= winner < len(candidates):
        chosen = candidates[winner]
        if isinstance(chosen, dict):
            value = chosen.get("grounded", value)
    return value if isinstance(value, bool) else None


def run_one(model: _Model, label: str, task: Task) -> EvalRow:
    """One method on one task; a failure is recorded in the row, never raised."""
    started = time.perf_counter()
    answer: str | None = None
    error: str | None = None
    usage: UsageSummary | None = None
    metadata: dict[str, Any] = {}
    try:
        result = model.completion(task.context, task.question)
        answer = result.response.strip() or None
        usage, metadata = result.usage_summary, result.metadata
        if answer is None:
            record_error = result.record.error if result.record is not None else None
            error = record_error or "the run ended without an answer"
    except RunStopped as exc:
        error, usage, metadata = f"{type(exc).__name__}: {exc}", exc.usage, exc.metadata
    except Exception as exc:  # an engine fault on one task must not end the eval
        error = f"{type(exc).__name__}: {exc}"
    return EvalRow(
        task_id=task.id,
        family=task.family,
        length=task.length,
        chars=len(task.context),
        seed=task.seed,
        method=label,
        question=task.question,
        truth=task.truth,
        answer=answer,
        correct=score(task, answer),
        seconds=round(time.perf_counter() - started, 3),
        status="done" if answer is not None else "failed",
        error=error,
        input_tokens=usage.total_input_tokens if usage is not None else None,
        output_tokens=usage.total_output_tokens if usage is not None else None,
        grounded=_grounded(metadata),
    )


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def run_eval(
    methods: str | Sequence[str] = METHODS,
    tasks: Sequence[Task] | None = None,
    *,
    k: int = 3,
    backend: str | None = None,
    backend_kwargs: dict[str, Any] | None = None,
    environment: str = "kernel",
    environment_kwargs: dict[str, Any] | None = None,
    max_iterations: int = 6,
    max_timeout: float | None = 300.0,
    out_dir: str | Path | None = None,
    quiet: bool = False,
    command: str | None = None,
) -> EvalReport:
    """Run every method on every task (default: the default small suite) and score them.

    One RLM/SRLM per method is reused across tasks. ``direct`` is one model call with
    context and question (an SRLM whose direct route takes every context); ``rlm`` one
    trajectory; ``srlm`` K candidates in parallel at temperature 0.7 with confidence
    elicitation. A task that fails is recorded as wrong; only a configuration problem
    (bad argument, missing key or model, unreachable server) raises
    ``ConfigurationError``, before any task runs. With ``out_dir`` the report files
    are written there (:func:`lmrepl.eval.report.write_report`).
    """
    specs = parse_methods(methods, k)
    task_list = list(tasks) if tasks is not None else make_suite()
    if not task_list:
        raise ConfigurationError("tasks must hold at least one task")
    if backend is None:
        backend = config.default_backend()[0]
    kwargs = dict(backend_kwargs or {})
    biggest_k = max(s.k for s in specs)
    if backend == "local" and biggest_k > 4:
        kwargs.setdefault("n_parallel", biggest_k)  # every candidate gets a server slot
    env_kwargs = {"cell_timeout": 30} if environment_kwargs is None else dict(environment_kwargs)
    common: dict[str, Any] = {
        "backend": backend,
        "backend_kwargs": kwargs,
        "environment": environment,
        "environment_kwargs": env_kwargs,
        "max_iterations": max_iterations,
        "max_timeout": max_timeout,
    }
    if out_dir is not None:
        from lmrepl.eval.report import require_matplotlib

        require_matplotlib()
    _preflight(backend, kwargs)
    rows_file = None
    if out_dir is not None:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        rows_file = Path(out_dir) / "rows.jsonl"
        rows_file.unlink(missing_ok=True)
    models: dict[str, RLM] = {}
    report: EvalReport | None = None
    started = time.perf_counter()
    try:
        for spec in specs:
            models[spec.label] = _build(spec, common)
        with_repl = [models[s.label] for s in specs if s.name != "direct"]
        report = EvalReport(
            settings=EvalSettings(
                methods=[s.label for s in specs],
                backend=backend,
                backend_kwargs=mask_secrets(kwargs),
                environment=with_repl[0].environment if with_repl else environment,
                environment_kwargs=env_kwargs,
                max_iterations=max_iterations,
                max_timeout=max_timeout,
                families=list(dict.fromkeys(t.family for t in task_list)),
                lengths=sorted({t.length for t in task_list}),
                seeds=sorted({t.seed for t in task_list}),
                n_tasks=len(task_list),
                command=command,
            ),
            started_at=_now(),
        )
        with _progress(len(task_list) * len(specs), quiet) as advance:
            for task in task_list:
                for spec in specs:
                    advance(f"{task.id} · {spec.label}", None)
                    row = run_one(models[spec.label], spec.label, task)
                    report.rows.append(row)
                    if rows_file is not None:  # each row as it ends: a long eval can be watched
                        with rows_file.open("a", encoding="utf-8") as fh:
                            fh.write(row.model_dump_json() + "\n")
                    advance(f"{task.id} · {spec.label}", report)
    except KeyboardInterrupt:
        # Ctrl-C: the rows so far are still summarised and written, then it propagates.
        if report is None:
            raise
        report.interrupted = True
    finally:
        for model in models.values():
            model.close()
    report.seconds = round(time.perf_counter() - started, 3)
    report.finished_at = _now()
    report.summary = summarize(report.rows, [s.label for s in specs])
    if out_dir is not None:
        from lmrepl.eval.report import write_report

        write_report(report, out_dir)
    if report.interrupted:
        raise KeyboardInterrupt
    return report


#: ``advance(description, report)``: what runs now; with the report, one more is done.
_Advance = Callable[[str, EvalReport | None], None]


@contextmanager
def _progress(total: int, quiet: bool) -> Iterator[_Advance]:
    """``advance(description, report)``: show what runs; with a report, one more is done."""
    if quiet:
        yield lambda description, report: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[accuracy]}"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
    )
    bar = progress.add_task("starting", total=total, accuracy="")

    def advance(description: str, report: EvalReport | None) -> None:
        if report is None:
            progress.update(bar, description=description)
            return
        summary = summarize(report.rows, report.settings.methods)
        accuracy = "  ".join(f"{m} {a.correct}/{a.n}" for m, a in summary.accuracy.items() if a.n)
        progress.update(bar, description=description, advance=1, accuracy=accuracy)

    with progress:
        yield advance

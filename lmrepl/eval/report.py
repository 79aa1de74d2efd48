"""An eval's report files: ``report.json``, ``report.md`` and ``accuracy.png``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lmrepl.errors import ConfigurationError
from lmrepl.eval.results import Accuracy, EvalReport

__all__ = [
    "load_report",
    "plot_accuracy",
    "render_markdown",
    "render_tables",
    "require_matplotlib",
    "write_report",
]

# Marker and line style per method, so methods with the same accuracy stay visible.
_STYLES = (("o", "-"), ("s", "--"), ("^", "-."), ("D", ":"), ("v", "-"), ("P", "--"))
_INSTALL = 'the accuracy plot needs matplotlib; install it: pip install "lmrepl[eval]"'


def _cell(acc: Accuracy | None) -> str:
    if acc is None or not acc.n:
        return "–"
    return f"{acc.percent:.0f}% ({acc.correct}/{acc.n})"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def render_tables(report: EvalReport) -> str:
    """Markdown tables: accuracy per method × context length, then per method × family."""
    summary = report.summary
    methods = list(summary.accuracy)
    lengths = sorted({n for table in summary.by_length.values() for n in table})
    families = list(dict.fromkeys(f for table in summary.by_family.values() for f in table))
    by_length = _table(
        ["method", *(f"{n:,} chars" for n in lengths), "all"],
        [
            [m, *(_cell(summary.by_length[m].get(n)) for n in lengths), _cell(summary.accuracy[m])]
            for m in methods
        ],
    )
    by_family = _table(
        ["method", *families],
        [[m, *(_cell(summary.by_family[m].get(f)) for f in families)] for m in methods],
    )
    return "\n".join(
        [
            "### Accuracy by context length",
            "",
            *by_length,
            "",
            "### Accuracy by family",
            "",
            *by_family,
        ]
    )


def _tokens(report: EvalReport, method: str, field: str) -> str:
    values = [getattr(r, field) for r in report.rows if r.method == method]
    known = [v for v in values if v is not None]
    return f"{sum(known) / len(known):,.0f}" if known else "–"


def render_markdown(report: EvalReport) -> str:
    """The whole ``report.md``: settings, the accuracy tables, and time per method."""
    s = report.settings
    model = s.backend_kwargs.get("model_name") or s.backend_kwargs.get("model_path")
    header = [
        "# lmrepl eval",
        "",
        *([f"Command: `{s.command}`", ""] if s.command else []),
        f"- started: {report.started_at}; took {report.seconds:,.0f} s"
        + ("; **interrupted: partial results**" if report.interrupted else ""),
        f"- backend: {s.backend}" + (f" ({model})" if model else ""),
        f"- environment: {s.environment}"
        + "".join(f", {k}={v}" for k, v in s.environment_kwargs.items()),
        f"- methods: {', '.join(s.methods)}",
        f"- max_iterations: {s.max_iterations}; max_timeout: {s.max_timeout} s",
        f"- tasks: {s.n_tasks} (families {', '.join(s.families)}; lengths "
        f"{', '.join(f'{n:,}' for n in s.lengths)} characters; seeds "
        f"{', '.join(map(str, s.seeds))})",
        "",
    ]
    time_rows = [
        [
            m,
            f"{report.summary.mean_seconds.get(m, 0.0):.1f}",
            _tokens(report, m, "input_tokens"),
            _tokens(report, m, "output_tokens"),
            str(report.summary.failed.get(m, 0)),
        ]
        for m in report.summary.accuracy
    ]
    timing = _table(
        ["method", "mean seconds", "mean input tokens", "mean output tokens", "failed runs"],
        time_rows,
    )
    return "\n".join(
        [*header, render_tables(report), "", "### Time and tokens per run", "", *timing, ""]
    )


def require_matplotlib() -> None:
    """``ConfigurationError`` (saying how to install it) unless matplotlib imports."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        raise ConfigurationError(f"{_INSTALL} ({exc})") from None


def plot_accuracy(report: EvalReport, path: str | Path) -> Path:
    """``accuracy.png``: accuracy (%) against context length (log x) per method."""
    require_matplotlib()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    try:
        for i, (method, table) in enumerate(report.summary.by_length.items()):
            points = sorted(table.items())
            if points:
                xs = [n for n, _ in points]
                ys = [acc.percent for _, acc in points]
                style = _STYLES[i % len(_STYLES)]
                ax.plot(xs, ys, marker=style[0], linestyle=style[1], label=method, alpha=0.85)
        ax.set_xscale("log")
        lengths = report.settings.lengths or sorted(
            {n for t in report.summary.by_length.values() for n in t}
        )
        ax.set_xticks(lengths, [f"{n:,}" for n in lengths])
        ax.minorticks_off()
        ax.set_ylim(-5, 105)
        ax.set_xlabel("context length (characters)")
        ax.set_ylabel("accuracy (%)")
        model = report.settings.backend_kwargs.get("model_name") or report.settings.backend
        ax.set_title(f"lmrepl eval: {model}, {report.settings.n_tasks} tasks")
        ax.grid(True, alpha=0.3)
        ax.legend()
        fig.tight_layout()
        out = Path(path)
        fig.savefig(out, dpi=120)
    finally:
        plt.close(fig)
    return out


def write_report(report: EvalReport, out_dir: str | Path) -> dict[str, Path]:
    """Write ``report.json``, ``report.md`` and ``accuracy.png`` into ``out_dir``.

    Returns their paths by kind (``json``, ``markdown``, ``plot``). The JSON and the
    markdown are written first, so a missing matplotlib loses only the plot.
    """
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {
        "json": folder / "report.json",
        "markdown": folder / "report.md",
        "plot": folder / "accuracy.png",
    }
    _write_text(paths["json"], report.model_dump_json(indent=2))
    _write_text(paths["markdown"], render_markdown(report))
    plot_accuracy(report, paths["plot"])
    return paths


def _write_text(path: Path, text: str) -> None:
    """Write via a temporary file and rename, so a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
    os.replace(tmp, path)


def load_report(path: str | Path) -> EvalReport:
    """Read a ``report.json`` back."""
    data: Any = Path(path).read_text(encoding="utf-8")
    return EvalReport.model_validate_json(data)

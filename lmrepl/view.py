"""``lmrepl view FILE``: one self-contained HTML page for a trajectory record or a log.

FILE is a trajectory record (``SearchRecord.save``, docs/trajectory-schema.md) or a
JSONL log of :class:`~lmrepl.logger.RLMLogger` — the main log or a per-candidate
``*_candN.jsonl``. A log's ``search_finished`` record is used when present; otherwise
its events are folded with :class:`~lmrepl.live.LiveState`, so a log cut off mid-run
shows the run as it was when the log ends.

The page is the notebook panel's static rendering (:mod:`lmrepl.html`) with
the question and the answer on top, longer limits, and one ``<style>`` block that
follows the reader's light/dark preference. No network, no JavaScript.

Where the page goes (docs/viewer.md): ``-o OUT`` if given; else next to FILE as
``<FILE's name without its last suffix>.html``; else, when FILE's folder is not
writable, the same name in the current directory. Bad input raises :class:`ViewError`
(the command prints it on one line and exits with status 2) before anything is written.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import webbrowser
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError

from lmrepl import events as ev
from lmrepl.live import LiveState
from lmrepl.logger import read_log
from lmrepl.records import SearchRecord, parse_record

if TYPE_CHECKING:
    from lmrepl.html import RenderOptions

# lmrepl.html is imported inside the functions that draw: it loads pygments, which the
# other ``lmrepl`` subcommands (they build the same parser) should not pay for.

__all__ = [
    "BAD_INPUT",
    "Loaded",
    "ViewError",
    "add_view_arguments",
    "default_output",
    "load",
    "page_options",
    "render_page",
    "run_view",
    "write_html",
]

#: Exit status of ``lmrepl view`` for input it cannot show.
BAD_INPUT = 2


class ViewError(ValueError):
    """FILE cannot be shown; the message is one line that names FILE and the reason."""


@dataclass
class Loaded:
    """What :func:`load` read: the state to draw and where it came from."""

    path: Path
    state: LiveState
    #: ``record``, ``log`` or ``candidate log`` (a per-candidate ``*_candN.jsonl``).
    source: str
    #: The candidate of a per-candidate log.
    candidate: int | None = None
    #: Time of the log's last event (None for a record).
    last_event: float | None = None

    @property
    def record(self) -> SearchRecord:
        """The record shown."""
        return self.state.record


def _one_line(text: str, limit: int = 200) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def load(path: str | Path) -> Loaded:
    """Read FILE as a trajectory record or a JSONL log; :class:`ViewError` if neither."""
    p = Path(path)
    if not p.exists():
        raise ViewError(f"{p}: no such file")
    if not p.is_file():
        raise ViewError(f"{p}: not a file")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ViewError(f"{p}: not a text file (expected JSON or JSONL)") from None
    except OSError as exc:
        raise ViewError(f"{p}: cannot read it: {exc.strerror or exc}") from None
    if not text.strip():
        raise ViewError(f"{p}: the file is empty")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        if text.lstrip().startswith("{\n"):  # records are indented; log lines never are
            raise ViewError(
                f"{p}: not valid JSON ({exc.msg} at line {exc.lineno}); a record cut short?"
            ) from None
        return _load_log(p)  # many lines (or one cut-off line): JSONL
    if isinstance(data, dict) and ("schema_version" in data or "candidates" in data):
        return Loaded(p, LiveState.from_record(_parse_record(p, data)), "record")
    if isinstance(data, dict) and "kind" in data and "run_id" in data:
        return _load_log(p)  # a log of one event
    what = "a JSON object" if isinstance(data, dict) else f"JSON {type(data).__name__}"
    raise ViewError(
        f"{p}: {what}, but neither a trajectory record (no schema_version) nor an lmrepl log"
    )


def _parse_record(p: Path, data: dict[str, object]) -> SearchRecord:
    try:
        return parse_record(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(map(str, first["loc"])) or "(top)"
        raise ViewError(
            f"{p}: not a valid trajectory record ({exc.error_count()} errors; "
            f"first at {where}: {_one_line(first['msg'], 80)})"
        ) from None
    except ValueError as exc:
        raise ViewError(f"{p}: {_one_line(str(exc))}") from None


def _load_log(p: Path) -> Loaded:
    try:
        events = read_log(p)  # skips a cut-off last line, as for every other reader
    except ValueError as exc:  # names the file and the line
        raise ViewError(_one_line(str(exc))) from None
    if not events:
        raise ViewError(f"{p}: no lmrepl events in it (not a trajectory record or a log)")
    last = events[-1].time
    finished = [e for e in events if isinstance(e, ev.SearchFinished)]
    if finished:
        return Loaded(p, LiveState.from_record(finished[-1].record), "log", last_event=last)
    state = LiveState()
    state.apply_all(events)
    indices = {e.candidate for e in events}
    searched = any(isinstance(e, ev.SearchStarted) for e in events)
    if searched or len(indices) != 1 or None in indices:
        return Loaded(p, state, "log", last_event=last)
    # Only one candidate's events: the vote and the other candidates are in the main log.
    (index,) = indices
    assert index is not None
    _keep_one_candidate(state, index)
    return Loaded(p, state, "candidate log", candidate=index, last_event=last)


def _keep_one_candidate(state: LiveState, index: int) -> None:
    rec = state.record
    cand = rec.candidate(index)
    rec.kind, rec.mode, rec.winner, rec.clusters = "srlm", "rlm", None, []
    rec.candidates = [cand]
    rec.answer, rec.error = cand.answer, cand.error
    if cand.status in ("queued", "running"):
        rec.status = "running"
    elif cand.status in ("failed", "cancelled", "stopped"):
        rec.status = cand.status
    else:
        rec.status = "done"  # done or no_answer: the trajectory ended


def page_options() -> RenderOptions:
    """The page's limits: longer than the notebook's, as the page is for reading a run."""
    from lmrepl.html import RenderOptions

    return RenderOptions(
        max_output_lines=80,
        max_output_chars=8000,
        max_code_lines=300,
        max_answer_chars=8000,
        max_question_chars=8000,
    )


_CSS = """
:root { color-scheme: light dark; }
body { margin: 0; background: #fff; color: #222;
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; }
main { background: #fff; color: #222; padding: 16px 20px 40px; }
h1 { font-size: 18px; margin: 0 0 6px; }
.lmrepl-box { white-space: pre-wrap; word-break: break-word; padding: 6px 10px;
  margin: 4px 0 10px; border-radius: 3px; font-family: ui-monospace, monospace; }
.lmrepl-question { border-left: 4px solid #90caf9; background: #f5f9ff; }
.lmrepl-answer { border-left: 4px solid #2e7d32; background: #f1f8e9; color: #1b5e20;
  font-size: 16px; font-weight: 600; }
.lmrepl-noanswer { border-left: 4px solid #ef6c00; background: #fff8e1; color: #8a4b00; }
.lmrepl-facts { color: #555; font-size: 12px; }
.lmrepl-note { background: #fff8e1; color: #8a4b00; padding: 4px 10px; margin: 6px 0;
  border-radius: 3px; }
details > summary { margin: 2px 0; }
/* Code wraps here rather than scroll: columns are narrow and the page is for reading. */
.highlight pre { margin: 0; white-space: pre-wrap; overflow-wrap: anywhere; }
/* Dark: invert the light page and turn hues back, so every inline colour of the
   shared fragment (which cannot use this block in a notebook) follows along. */
@media (prefers-color-scheme: dark) {
  body { background: #141414; }
  main { filter: invert(0.92) hue-rotate(180deg); }
}
"""


def _facts(loaded: Loaded | None, record: SearchRecord) -> str:
    from lmrepl.html import badge, fmt_float, stop_badge

    facts = [badge(record.status) + stop_badge(record.stop_reason, record.answer is not None)]
    if loaded is not None and loaded.source == "candidate log":
        facts.append(f"SRLM candidate #{loaded.candidate} only")
    elif record.kind == "srlm":
        facts.append(f"SRLM, mode {escape(record.mode or '?')}, K={record.n_candidates}")
    else:
        facts.append("RLM, one trajectory")
    for label, value in (
        ("model", record.model),
        ("backend", record.backend),
        ("environment", record.environment),
        ("sandbox", record.sandbox),
    ):
        if value:
            facts.append(f"{label} <code>{escape(value)}</code>")
    if record.execution_time is not None:
        facts.append(f"{fmt_float(record.execution_time, 1)} s")
    facts.append(f"{record.model_calls} model calls")
    facts.append(f"{record.input_tokens:,} in / {record.output_tokens:,} out tokens")
    if record.cost:
        facts.append(f"${record.cost:.4f}")
    return " · ".join(facts)


def _answer_html(record: SearchRecord) -> str:
    from lmrepl.html import grounding_badge

    if record.answer is None:
        why = "still running" if record.status == "running" else "no answer"
        return f'<div class="lmrepl-box lmrepl-noanswer">({why})</div>'
    label = "answer"
    if record.kind == "srlm" and record.winner is not None:
        label += f" — candidate #{record.winner}"
        if record.selection_reason:
            label += f", selected by {escape(record.selection_reason)}"
        winner = next((c for c in record.candidates if c.index == record.winner), None)
        if winner is not None and (tag := grounding_badge(winner.grounded)):
            label += " " + tag
    return (
        f'<div class="lmrepl-facts">{label}</div>'
        f'<div class="lmrepl-box lmrepl-answer">{escape(record.answer)}</div>'
    )


def render_page(record: SearchRecord | LiveState | Loaded, *, title: str | None = None) -> str:
    """The standalone HTML page of ``record`` (a record, a folded state or a load)."""
    from lmrepl.html import clusters_html, columns_html, pre_html

    loaded = record if isinstance(record, Loaded) else None
    if isinstance(record, Loaded):
        state = record.state
    elif isinstance(record, LiveState):
        state = record
    else:
        state = LiveState.from_record(record)
    rec = state.record
    opts = page_options()
    name = title or (loaded.path.name if loaded is not None else "trajectory")
    notes = []
    if rec.status == "running":
        when = loaded.last_event if loaded is not None else None
        if when is not None:
            at = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(when))
            notes.append(f"The log ends mid-run at {at}: this is the run as it was then.")
        else:
            notes.append("The run had not finished when this record was taken.")
    if loaded is not None and loaded.source == "candidate log":
        notes.append(
            "A per-candidate log: the vote and the other candidates are in the main log "
            "(the same name without <code>_cand…</code>)."
        )
    body = [
        f"<h1>lmrepl · {escape(name)}</h1>",
        f'<div class="lmrepl-facts">{_facts(loaded, rec)}</div>',
        *(f'<div class="lmrepl-note">{n}</div>' for n in notes),
        '<div class="lmrepl-facts" style="margin-top:10px;">question</div>',
        f'<div class="lmrepl-box lmrepl-question">{escape(rec.question)}</div>',
    ]
    if rec.context_info:
        body.append(f'<div class="lmrepl-facts">context: {escape(rec.context_info)}</div>')
    body.append(_answer_html(rec))
    if rec.error:
        body.append(pre_html(rec.error, "#c62828", "#ffebee"))
    if not (loaded is not None and loaded.source == "candidate log"):
        body.append(f'<div style="margin:8px 0;">{clusters_html(rec)}</div>')
    body.append(columns_html(state, opts))
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>lmrepl · {escape(name)}</title><style>{_CSS}</style></head>\n"
        f'<body><main><div class="lmrepl-panel" style="font-size:13px;">'
        f"{''.join(body)}</div></main></body></html>\n"
    )


def default_output(path: str | Path) -> Path:
    """Where the page of FILE goes without ``-o``: next to FILE, else in the cwd.

    The name is FILE's without its last suffix plus ``.html`` (``run.jsonl`` →
    ``run.html``, ``x.record.json`` → ``x.record.html``). A log folder may belong to
    someone else (a shared ``runs/``), so an unwritable folder falls back to the
    current directory instead of failing.
    """
    p = Path(path)
    name = f"{p.stem}.html"
    folder = p.parent
    if os.access(folder, os.W_OK | os.X_OK):
        return folder / name
    return Path.cwd() / name


def write_html(path: str | Path, out: str | Path | None = None) -> Path:
    """Render FILE to ``out`` (default: :func:`default_output`); returns the page's path.

    ``out`` may be a folder (the default name goes there); missing folders are made.
    Raises :class:`ViewError` for input it cannot show (nothing written then) and
    ``OSError`` when the page cannot be written.
    """
    loaded = load(path)
    target = default_output(path) if out is None else Path(out)
    if target.is_dir():
        target = target / default_output(path).name
    if target.exists() and target.resolve() == loaded.path.resolve():
        raise ViewError(f"{target}: the page would overwrite FILE itself; pass -o")
    page = render_page(loaded)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Written beside the target and renamed: a reader never sees half a page.
    partial = target.with_name(f".{target.name}.part")
    try:
        partial.write_text(page, encoding="utf-8")
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return target


def add_view_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``lmrepl view``; sets ``func`` to :func:`run_view`."""
    parser.add_argument("file", metavar="FILE", help="a trajectory record (.json) or a JSONL log")
    parser.add_argument(
        "-o",
        "--output",
        metavar="OUT.html",
        default=None,
        help="where to write the page (default: FILE's folder, or the current directory "
        "when that is not writable, as <FILE name>.html)",
    )
    parser.add_argument("--open", action="store_true", help="open the page in a web browser")
    parser.set_defaults(func=run_view)


def run_view(args: argparse.Namespace) -> int:
    """Write the page, print its path, open it if asked; 2 for bad input, 1 if unwritable."""
    try:
        out = write_html(args.file, args.output)
    except ViewError as exc:
        print(f"lmrepl view: error: {exc}", file=sys.stderr)
        return BAD_INPUT
    except OSError as exc:
        where = exc.filename or args.output or args.file
        print(f"lmrepl view: error: cannot write {where}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(out)
    if args.open:
        url = out.resolve().as_uri()
        if not webbrowser.open(url):
            print(f"lmrepl view: no browser found; open {url}", file=sys.stderr)
    return 0

"""Static HTML of the panel: header, clusters, one column per candidate.

Used twice: the live widget panel sets these fragments as ``HTML`` widget values, and
the result object's ``text/html`` is the whole panel at once. Everything is escaped,
styles are inline (notebook sanitizers drop ``<style>`` blocks) and there is no
JavaScript, so a saved notebook shows it anywhere.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape

from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import PythonLexer

from lmrepl.live import LiveState
from lmrepl.records import CandidateRecord, SearchRecord, StepRecord

BADGE_COLOURS = {
    "queued": "#757575",
    "running": "#1565c0",
    "done": "#2e7d32",
    "no_answer": "#ef6c00",
    "failed": "#c62828",
    "cancelled": "#ef6c00",
    "stopped": "#6a1b9a",
}
WINNER_COLOUR = "#2e7d32"
#: Grounded: the answer was computed or seen in output; ungrounded: a possible guess.
GROUNDING_COLOURS = {True: "#2e7d32", False: "#ef6c00"}
_FORMATTER = HtmlFormatter(noclasses=True, style="default", nobackground=True)
_LEXER = PythonLexer()
_MONO = "font-family:var(--jp-code-font-family,monospace);font-size:12px;"


@dataclass(frozen=True)
class RenderOptions:
    """Limits of what the panel shows (the record itself keeps everything)."""

    max_output_lines: int = 12
    max_output_chars: int = 1500
    max_code_lines: int = 40
    max_answer_chars: int = 600
    max_question_chars: int = 400


def truncate(text: str, max_lines: int, max_chars: int) -> str:
    """Cut ``text`` to ``max_lines`` lines and ``max_chars`` characters, saying how much."""
    lines = text.splitlines()
    cut_lines = len(lines) > max_lines
    out = "\n".join(lines[:max_lines]) if cut_lines else text
    cut_chars = len(out) > max_chars
    if cut_chars:
        out = out[:max_chars]
    if cut_lines or cut_chars:
        out += f"\n… ({len(text) - len(out):,} more characters)"
    return out


def badge(status: str) -> str:
    """A coloured status label."""
    colour = BADGE_COLOURS.get(status, "#757575")
    return (
        f'<span style="background:{colour};color:#fff;border-radius:3px;'
        f'padding:1px 6px;font-size:11px;font-weight:600;">{escape(status)}</span>'
    )


def grounding_badge(grounded: bool | None) -> str:
    """A small outlined ``grounded``/``ungrounded`` tag; "" when unknown (no answer)."""
    if grounded is None:
        return ""
    colour = GROUNDING_COLOURS[grounded]
    label = "grounded" if grounded else "ungrounded"
    why = (
        "computed by its code or seen in output"
        if grounded
        else "a constant never seen in output: possibly a guess"
    )
    return (
        f'<span class="lmrepl-grounding" title="{why}" style="border:1px solid {colour};'
        f'color:{colour};border-radius:3px;padding:0 4px;font-size:10px;">{label}</span>'
    )


def code_html(code: str, max_lines: int = 40) -> str:
    """Python code highlighted with pygments (inline styles)."""
    lines = code.splitlines()
    if len(lines) > max_lines:
        code = "\n".join(lines[:max_lines]) + f"\n# … {len(lines) - max_lines} more lines"
    body = highlight(code, _LEXER, _FORMATTER)
    return (
        f'<div style="background:#f6f8fa;border-radius:3px;padding:2px 6px;margin:2px 0;'
        f'overflow-x:auto;{_MONO}">{body}</div>'
    )


def _pre(text: str, colour: str = "#222", background: str = "#fff") -> str:
    return (
        f'<pre style="white-space:pre-wrap;word-break:break-word;margin:2px 0;padding:2px 6px;'
        f'background:{background};color:{colour};border-left:2px solid #ddd;{_MONO}">'
        f"{escape(text)}</pre>"
    )


def fmt_float(value: float | None, digits: int = 2) -> str:
    """A score for display; None and non-finite values are shown as a dash."""
    if value is None or not math.isfinite(value):
        return "–"
    return f"{value:.{digits}f}"


def clock(state: LiveState, now: float | None = None) -> str:
    """Elapsed time: coarse while running (1 s, after a minute 5 s), tenths when done.

    The live header is re-sent only when its text changes. A coarse clock keeps a long
    run to a few hundred widget messages: front ends that read IOPub only after the
    cell (nbval) otherwise overflow its queues (about 2000 messages) and fail the cell.
    """
    elapsed = state.elapsed(now)
    if state.finished:
        return f"{elapsed:.1f} s"
    step = 1 if elapsed < 60 else 5
    return f"{int(elapsed) // step * step} s"


def header_html(state: LiveState, now: float | None = None) -> str:
    """Question, status and running totals."""
    rec = state.record
    opts = RenderOptions()
    magic = "%%rlm" if rec.kind == "rlm" else "%%srlm"
    parts = [f"<b>{magic}</b>", badge(rec.status)]
    if rec.kind == "srlm":
        parts.append(f"K={rec.n_candidates} (parallel {rec.candidate_parallel})")
    if rec.mode:
        parts.append(f"mode {escape(rec.mode)}")
    if rec.model:
        parts.append(f"model <code>{escape(rec.model)}</code>")
    if rec.sandbox:
        parts.append(f"sandbox {escape(rec.sandbox)}")
    totals = [
        clock(state, now),
        f"{rec.model_calls} model calls",
        f"{rec.input_tokens:,} in / {rec.output_tokens:,} out tokens",
    ]
    if rec.cost:
        totals.append(f"${rec.cost:.4f}")
    question = truncate(rec.question, 6, opts.max_question_chars)
    html = (
        f'<div style="margin-bottom:4px;">{" · ".join(parts)}'
        f'<span style="float:right;color:#555;">{" · ".join(totals)}</span></div>'
        f'<div style="{_MONO}white-space:pre-wrap;color:#333;border-left:3px solid #90caf9;'
        f'padding:2px 6px;">{escape(question)}</div>'
    )
    if rec.error:
        html += f'<div style="color:#c62828;margin-top:4px;">{escape(rec.error)}</div>'
    return html


def clusters_html(record: SearchRecord) -> str:
    """The vote: each cluster's answer, votes and members; each survivor's scores."""
    if record.kind == "rlm":
        return ""  # one trajectory: no vote to show
    if not record.clusters:
        if record.mode == "direct":
            return ""
        return '<div style="color:#777;">clusters: waiting for candidates…</div>'
    winner = record.winner
    cell = 'style="padding:1px 8px;text-align:left;"'
    rows = []
    for i, cl in enumerate(record.clusters):
        win = winner is not None and winner in cl.members
        style = f"background:#e8f5e9;font-weight:600;color:{WINNER_COLOUR};" if win else ""
        members = ", ".join(f"#{m}" for m in cl.members)
        answer = truncate(cl.answer or "", 2, 120)
        rows.append(
            f'<tr style="{style}"><td {cell}>{i}</td><td {cell}>{escape(answer)}</td>'
            f"<td {cell}>{cl.votes}</td><td {cell}>{members}</td></tr>"
        )
    table = (
        '<table style="border-collapse:collapse;font-size:12px;margin:2px 0;">'
        f"<tr><th {cell}>cluster</th><th {cell}>answer</th><th {cell}>votes</th>"
        f"<th {cell}>members</th></tr>{''.join(rows)}</table>"
    )
    alive = record.survivors
    score_rows = []
    for idx in alive:
        if idx >= len(record.candidates):
            continue
        cand = record.candidates[idx]
        win = idx == winner
        style = f"background:#e8f5e9;font-weight:600;color:{WINNER_COLOUR};" if win else ""
        mark = " ★ winner" if win else ""
        score_rows.append(
            f'<tr style="{style}"><td {cell}>#{idx}{mark}</td><td {cell}>{fmt_float(cand.vc)}</td>'
            f"<td {cell}>{cand.length}</td><td {cell}>{fmt_float(cand.score, 1)}</td></tr>"
        )
    scores = ""
    if score_rows:
        scores = (
            '<table style="border-collapse:collapse;font-size:12px;margin:2px 0;">'
            f"<tr><th {cell}>survivor</th><th {cell}>VC</th><th {cell}>Len</th>"
            f"<th {cell}>VC·Len</th></tr>{''.join(score_rows)}</table>"
        )
    return (
        '<div style="display:flex;gap:24px;flex-wrap:wrap;align-items:flex-start;">'
        f"{table}{scores}</div>"
    )


def step_html(step: StepRecord, opts: RenderOptions) -> str:
    """One iteration: code, truncated output, confidence, notices."""
    conf = "" if step.confidence is None else f" · confidence {step.confidence:g}"
    sub = " · <b>submitted</b>" if step.submitted else ""
    html = (
        '<div style="font-size:11px;color:#555;margin-top:6px;">'
        f"step {step.iteration}{conf}{sub}</div>"
    )
    if step.code:
        html += code_html(step.code, opts.max_code_lines)
    elif step.reply:
        html += _pre(truncate(step.reply, opts.max_output_lines, opts.max_output_chars), "#555")
    if step.output:
        html += _pre(truncate(step.output, opts.max_output_lines, opts.max_output_chars))
    for notice in step.notices:
        html += _pre(notice, "#8a4b00", "#fff8e1")
    return html


def candidate_title_html(cand: CandidateRecord, record: SearchRecord) -> str:
    """Column head: index, status badge, winner mark and per-candidate counters."""
    win = record.winner == cand.index and record.winner is not None
    star = f' <b style="color:{WINNER_COLOUR};">★ winner</b>' if win else ""
    label = "trajectory" if record.kind == "rlm" else f"candidate #{cand.index}"
    facts = [f"{len(cand.steps)} steps", f"{cand.model_calls} calls"]
    if subcalls := cand.subcall_count():
        facts.append(f"{subcalls} sub-calls")
    if children := cand.child_count():
        facts.append(f"{children} child RLMs")
    if cand.length:
        facts.append(f"Len {cand.length}")
    if cand.vc is not None:
        facts.append(f"VC {fmt_float(cand.vc)}")
    return (
        f"<div><b>{label}</b> {badge(cand.status)}{star}</div>"
        f'<div style="font-size:11px;color:#555;">{" · ".join(facts)}</div>'
    )


def candidate_body_html(
    cand: CandidateRecord,
    running_code: str | None,
    opts: RenderOptions | None = None,
    activity: str | None = None,
) -> str:
    """Column body: the steps, what runs now, then the answer or the error."""
    opts = opts or RenderOptions()
    html = "".join(step_html(s, opts) for s in cand.steps)
    if activity is not None or running_code is not None:
        label = escape(activity or "running…")
        html += f'<div style="font-size:11px;color:#1565c0;margin-top:6px;">{label}</div>'
    if running_code is not None:
        html += code_html(running_code, opts.max_code_lines)
    if cand.answer is not None:
        answer = truncate(cand.answer, 20, opts.max_answer_chars)
        tag = grounding_badge(cand.grounded)
        html += (
            '<div style="margin-top:6px;font-size:11px;color:#555;">'
            f"answer{' ' + tag if tag else ''}</div>" + _pre(answer, "#1b5e20", "#f1f8e9")
        )
    if cand.error:
        html += _pre(truncate(cand.error, 6, 500), "#c62828", "#ffebee")
    return html


def column_style(winner: bool) -> str:
    """Inline style of one candidate column in the static rendering."""
    border = f"3px solid {WINNER_COLOUR}" if winner else "1px solid #ccc"
    return (
        f"flex:1 1 0;min-width:220px;border:{border};border-radius:4px;padding:4px 6px;"
        "overflow:hidden;"
    )


def panel_html(state: LiveState, opts: RenderOptions | None = None) -> str:
    """The whole panel as one static HTML fragment."""
    opts = opts or RenderOptions()
    rec = state.record
    cols = []
    for cand in rec.candidates:
        win = rec.winner == cand.index
        running = state.running_code.get(cand.index)
        body = candidate_body_html(cand, running, opts, state.activity(cand.index))
        cols.append(
            f'<div class="lmrepl-candidate{" lmrepl-winner" if win else ""}" '
            f'style="{column_style(win)}">{candidate_title_html(cand, rec)}{body}</div>'
        )
    answer = ""
    if rec.mode == "direct" and rec.answer is not None:
        answer = "<div><b>direct answer</b></div>" + _pre(rec.answer, "#1b5e20", "#f1f8e9")
    return (
        '<div class="lmrepl-panel" style="font-size:13px;">'
        f"{header_html(state)}<div style='margin:6px 0;'>{clusters_html(rec)}</div>{answer}"
        f'<div style="display:flex;gap:6px;align-items:flex-start;">{"".join(cols)}</div></div>'
    )

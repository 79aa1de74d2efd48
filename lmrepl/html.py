"""Static HTML of the panel: header, clusters, one column per candidate.

Used three times: the live widget panel sets these fragments as ``HTML`` widget
values, the result object's ``text/html`` is the whole panel at once, and
``lmrepl view`` (:mod:`lmrepl.view`) builds a standalone page from them. Everything is
escaped, styles are inline (notebook sanitizers drop ``<style>`` blocks) and there is
no JavaScript, so a saved notebook shows it anywhere. The static renderings also show
each trajectory's sub-calls and child RLMs in collapsed ``<details>`` elements.
"""

from __future__ import annotations

from html import escape

from lmrepl.html_base import (
    BADGE_COLOURS,
    GROUNDING_COLOURS,
    MONO,
    WINNER_COLOUR,
    RenderOptions,
    badge,
    children_html,
    code_html,
    fmt_float,
    grounding_badge,
    pre_html,
    run_details_html,
    step_html,
    stop_badge,
    subcalls_html,
    truncate,
)
from lmrepl.live import LiveState
from lmrepl.records import CandidateRecord, SearchRecord

# The building blocks live in html_base; listed here so importers of this module keep them.
__all__ = [
    "BADGE_COLOURS",
    "GROUNDING_COLOURS",
    "WINNER_COLOUR",
    "RenderOptions",
    "badge",
    "candidate_body_html",
    "candidate_title_html",
    "children_html",
    "clock",
    "clusters_html",
    "code_html",
    "column_style",
    "columns_html",
    "fmt_float",
    "grounding_badge",
    "header_html",
    "panel_html",
    "pre_html",
    "run_details_html",
    "step_html",
    "stop_badge",
    "subcalls_html",
    "truncate",
]


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
    parts = [
        f"<b>{magic}</b>",
        badge(rec.status) + stop_badge(rec.stop_reason, rec.answer is not None),
    ]
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
        f'<div style="{MONO}white-space:pre-wrap;color:#333;border-left:3px solid #90caf9;'
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


def candidate_title_html(cand: CandidateRecord, record: SearchRecord) -> str:
    """Column head: index, status badge, winner mark and per-candidate counters."""
    win = record.winner == cand.index and record.winner is not None
    star = f' <b style="color:{WINNER_COLOUR};">★ winner</b>' if win else ""
    label = "trajectory" if record.kind == "rlm" else f"candidate #{cand.index}"
    facts = [f"{len(cand.steps)} steps", f"{cand.model_calls} calls"]
    if subcalls := cand.subcall_count():
        facts.append(f"{subcalls} sub-call" + ("s" if subcalls != 1 else ""))
    if children := cand.child_count():
        facts.append(f"{children} child RLM" + ("s" if children != 1 else ""))
    if cand.length:
        facts.append(f"Len {cand.length}")
    if cand.vc is not None:
        facts.append(f"VC {fmt_float(cand.vc)}")
    stop = stop_badge(cand.stop_reason, cand.answer is not None)
    return (
        f"<div><b>{label}</b> {badge(cand.status)}{stop}{star}</div>"
        f'<div style="font-size:11px;color:#555;">{" · ".join(facts)}</div>'
    )


def candidate_body_html(
    cand: CandidateRecord,
    running_code: str | None,
    opts: RenderOptions | None = None,
    activity: str | None = None,
    details: bool = False,
) -> str:
    """Column body: the steps, what runs now, then the answer or the error.

    ``details`` adds the collapsed sub-call and child sections: the static renderings
    want them; the live panel does not, as each re-render would close what was opened.
    """
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
            f"answer{' ' + tag if tag else ''}</div>" + pre_html(answer, "#1b5e20", "#f1f8e9")
        )
    if cand.error:
        html += pre_html(truncate(cand.error, 6, 500), "#c62828", "#ffebee")
    if details:
        html += run_details_html(cand, opts)
    return html


def column_style(winner: bool) -> str:
    """Inline style of one candidate column in the static rendering."""
    border = f"3px solid {WINNER_COLOUR}" if winner else "1px solid #ccc"
    return (
        f"flex:1 1 0;min-width:220px;border:{border};border-radius:4px;padding:4px 6px;"
        "overflow:hidden;"
    )


def columns_html(state: LiveState, opts: RenderOptions | None = None) -> str:
    """One column per candidate, side by side, with their sub-call and child details."""
    opts = opts or RenderOptions()
    rec = state.record
    cols = []
    for cand in rec.candidates:
        win = rec.winner == cand.index
        running = state.running_code.get(cand.index)
        body = candidate_body_html(cand, running, opts, state.activity(cand.index), details=True)
        cols.append(
            f'<div class="lmrepl-candidate{" lmrepl-winner" if win else ""}" '
            f'style="{column_style(win)}">{candidate_title_html(cand, rec)}{body}</div>'
        )
    return f'<div style="display:flex;gap:6px;align-items:flex-start;">{"".join(cols)}</div>'


def panel_html(state: LiveState, opts: RenderOptions | None = None) -> str:
    """The whole panel as one static HTML fragment."""
    opts = opts or RenderOptions()
    rec = state.record
    answer = ""
    if rec.mode == "direct" and rec.answer is not None:
        answer = "<div><b>direct answer</b></div>" + pre_html(rec.answer, "#1b5e20", "#f1f8e9")
    return (
        '<div class="lmrepl-panel" style="font-size:13px;">'
        f"{header_html(state)}<div style='margin:6px 0;'>{clusters_html(rec)}</div>{answer}"
        f"{columns_html(state, opts)}</div>"
    )

"""Building blocks of the static HTML: text, code, one step, sub-calls, child RLMs.

Shared by the panel fragments (:mod:`lmrepl.html`) and the standalone page of
``lmrepl view`` (:mod:`lmrepl.view`). The same rules hold: everything is escaped,
styles are inline and there is no JavaScript; sub-calls and child RLMs are collapsed
``<details>`` elements, which need no script to open.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape

from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import PythonLexer

from lmrepl.records import STOP_WORDS, RunRecord, StepRecord, SubcallRecord, stop_tag

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
#: Inline font of code and output (the notebook's code font where there is one).
MONO = "font-family:var(--jp-code-font-family,monospace);font-size:12px;"


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


def stop_badge(stop_reason: str | None, has_answer: bool) -> str:
    """An outlined ``forced``/``limit`` tag (its title says why); "" for other stops."""
    tag = stop_tag(stop_reason, has_answer)
    if not tag:
        return ""
    why = escape(STOP_WORDS.get(stop_reason or "", ""))
    return (
        f' <span class="lmrepl-stop" title="{why}" style="border:1px solid #e65100;'
        f'color:#e65100;border-radius:3px;padding:0 4px;font-size:10px;">{tag}</span>'
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
        f'overflow-x:auto;{MONO}">{body}</div>'
    )


def pre_html(text: str, colour: str = "#222", background: str = "#fff") -> str:
    return (
        f'<pre style="white-space:pre-wrap;word-break:break-word;margin:2px 0;padding:2px 6px;'
        f'background:{background};color:{colour};border-left:2px solid #ddd;{MONO}">'
        f"{escape(text)}</pre>"
    )


def fmt_float(value: float | None, digits: int = 2) -> str:
    """A score for display; None and non-finite values are shown as a dash."""
    if value is None or not math.isfinite(value):
        return "–"
    return f"{value:.{digits}f}"


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
        html += pre_html(truncate(step.reply, opts.max_output_lines, opts.max_output_chars), "#555")
    if step.output:
        html += pre_html(truncate(step.output, opts.max_output_lines, opts.max_output_chars))
    for notice in step.notices:
        html += pre_html(notice, "#8a4b00", "#fff8e1")
    return html


def _summary(label: str) -> str:
    return f'<summary style="cursor:pointer;font-size:11px;color:#555;">{label}</summary>'


def _preview(text: str, chars: int = 80) -> str:
    """The first line of ``text``, cut to ``chars``, escaped (for a summary line)."""
    line = text.strip().split("\n", 1)[0]
    cut = len(line) > chars or "\n" in text.strip()
    return escape(line[:chars]) + ("…" if cut else "")


def _label(text: str) -> str:
    return f'<div style="font-size:11px;color:#555;margin-top:4px;">{text}</div>'


def subcall_html(call: SubcallRecord, opts: RenderOptions) -> str:
    """One sub-call, collapsed: function, model, duration; open: prompt and response."""
    facts = [f"<b>{escape(call.function)}</b>"]
    if call.batch_index is not None:
        facts.append(f"slot {call.batch_index}")
    facts += [f"<code>{escape(call.model)}</code>", f"{call.duration:.2f} s"]
    if call.error:
        facts.append(badge("failed"))
    facts.append(f"<i>{_preview(call.prompt)}</i>")
    lines, chars = opts.max_output_lines, opts.max_output_chars
    body = _label("prompt") + pre_html(truncate(call.prompt, lines, chars), "#333", "#f6f8fa")
    body += _label("response") + pre_html(
        truncate(call.response, lines, chars), "#1b5e20", "#f1f8e9"
    )
    if call.error:
        body += pre_html(truncate(call.error, 6, 500), "#c62828", "#ffebee")
    if call.child_run_id:
        body += _label(f"child RLM <code>{escape(call.child_run_id)}</code>")
    return (
        f'<details class="lmrepl-subcall" style="margin:2px 0 2px 8px;">'
        f"{_summary(' · '.join(facts))}{body}</details>"
    )


def subcalls_html(calls: list[SubcallRecord], opts: RenderOptions | None = None) -> str:
    """A trajectory's ``llm_query``/``rlm_query`` calls in one collapsed section."""
    if not calls:
        return ""
    opts = opts or RenderOptions()
    return _section(
        "lmrepl-subcalls", len(calls), "sub-call", [subcall_html(c, opts) for c in calls]
    )


def _section(css_class: str, count: int, noun: str, items: list[str]) -> str:
    """A collapsed section headed "<count> <noun>(s)" holding ``items``."""
    label = f"{count} {noun}" + ("" if count == 1 else "s")
    return (
        f'<details class="{css_class}" style="margin-top:6px;">'
        f"{_summary(f'<b>{label}</b>')}{''.join(items)}</details>"
    )


def child_html(run: RunRecord, opts: RenderOptions) -> str:
    """One child RLM, collapsed: its status; open: question, steps, answer, its own calls."""
    facts = [
        f"<b>child RLM</b> (depth {run.depth})",
        badge(run.status) + stop_badge(run.stop_reason, run.answer is not None),
        f"{len(run.steps)} step{'' if len(run.steps) == 1 else 's'}",
        f"<i>{_preview(run.question)}</i>",
    ]
    body = _label("question") + pre_html(truncate(run.question, 6, opts.max_question_chars), "#333")
    body += "".join(step_html(s, opts) for s in run.steps)
    if run.answer is not None:
        answer = truncate(run.answer, 20, opts.max_answer_chars)
        body += _label("answer") + pre_html(answer, "#1b5e20", "#f1f8e9")
    if run.error:
        body += pre_html(truncate(run.error, 6, 500), "#c62828", "#ffebee")
    body += run_details_html(run, opts)  # a child may call sub-calls and children too
    return (
        f'<details class="lmrepl-child" style="margin:2px 0 2px 8px;padding-left:6px;'
        f'border-left:2px solid #ce93d8;">{_summary(" · ".join(facts))}{body}</details>'
    )


def children_html(children: list[RunRecord], opts: RenderOptions | None = None) -> str:
    """A trajectory's child RLMs (``rlm_query``), each expandable, recursively."""
    if not children:
        return ""
    opts = opts or RenderOptions()
    items = [child_html(c, opts) for c in children]
    return _section("lmrepl-children", len(children), "child RLM", items)


def run_details_html(run: RunRecord, opts: RenderOptions | None = None) -> str:
    """The sub-calls and the child RLMs of one trajectory ("" when it has neither)."""
    return subcalls_html(run.subcalls, opts) + children_html(run.children, opts)

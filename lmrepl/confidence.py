"""Verbalised per-step confidence: the prompt instruction and its parser (SPEC §6 step 4).

The model is asked to end every reply with a line ``{"confidence": N}``. Small models
write it in many shapes (single quotes, ``"85"``, ``85%``, inside a fenced block, a
second key next to it), so the parser accepts any flat ``{...}`` object whose
``confidence`` key holds a number, and ignores everything else rather than guessing.

Decisions (documented in docs/selection.md):

- The **last** valid report in a reply counts: a model that revises its estimate
  mid-reply means the later one.
- Values are taken literally on the 0–100 scale and clamped into it. ``0.9`` is 0.9 %,
  not 90 %: the instruction names the scale, and reading values below 1 as fractions
  would make ``1`` ambiguous (1 % or 100 %).
- Non-numeric values (``"high"``), NaN and infinities are ignored.
"""

from __future__ import annotations

import math
import re

__all__ = [
    "CONFIDENCE_INSTRUCTION",
    "CONFIDENCE_REMINDER",
    "parse_confidence",
    "strip_confidence",
]

# Phrased as part of the reply's format: a small model told "after every step, end
# with a confidence line" replied with that line alone and no code (measured).
CONFIDENCE_INSTRUCTION = (
    "Every reply has two parts: first a ```repl block with code, then a last line "
    '{"confidence": N}, N from 0 to 100 = how sure you are that your work so far leads '
    "to the right answer."
)

# Repeated in every step's feedback: a small model reads the system prompt's format once
# and drops the confidence line after the first reply (343 of 365 demo steps had none).
CONFIDENCE_REMINDER = 'End your reply with the line {"confidence": N} (0 to 100).'

# A number as a model writes it: optional sign, digits with an optional fraction,
# optional exponent; optionally quoted and/or followed by a percent sign.
_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_VALUE = rf"""(?P<q>["']?)\s*(?P<num>{_NUMBER})\s*%?\s*(?P=q)"""

# A flat object (no nested braces) with a quoted confidence key somewhere in it. The
# key must be followed by a value that ends at a comma or the closing brace, so
# {"confidence": "85 maybe"} is rejected rather than read as 85. Second form: the
# quoted key and its value without the braces ("confidence": 85 at the end of a line
# of prose, or before a comma), which small models write when they drop the braces; the
# value must end the line or meet a comma or a brace, so the quoted key stays the signal
# and prose after a number ("confidence": 85 maybe) is not read. An unquoted
# ``confidence: 85`` is not a report (the instruction asks for the JSON line).
_OBJECT = rf"""\{{[^{{}}]*?["']confidence["']\s*:\s*{_VALUE}\s*(?:,[^{{}}]*)?\}}"""
_KEYED = (
    r"""["']confidence["'][ \t]*:[ \t]*(?P<kq>["']?)[ \t]*(?P<knum>"""
    + _NUMBER
    + r""")[ \t]*%?[ \t]*(?P=kq)(?=[ \t]*(?:[,}\n]|$))"""
)
_OBJECT_RE = re.compile(rf"{_OBJECT}|{_KEYED}", re.IGNORECASE)

# A fenced block holding nothing but confidence objects (```json\n{"confidence": 80}\n```).
_FENCE_RE = re.compile(
    r"^[ \t]*(`{3,}|~{3,})[^\n`]*\n(?P<body>.*?)^[ \t]*\1[ \t]*$\n?", re.M | re.S
)


def _value_of(match: re.Match[str]) -> float | None:
    try:
        value = float(match.group("num") or match.group("knum"))
    except ValueError:
        return None
    if not math.isfinite(value):
        return None
    return min(100.0, max(0.0, value))


def parse_confidence(text: str | None) -> float | None:
    """Return the last valid ``{"confidence": N}`` in ``text``, clamped to 0–100.

    Returns ``None`` when the text holds no valid report. Tolerates single quotes,
    spaces, ``N`` written as an int, a float, a quoted string or with a ``%`` sign,
    other keys in the same object, code fences around it, and a missing pair of braces
    (``"confidence": 85`` at the end of a line).
    """
    if not text:
        return None
    last: float | None = None
    for match in _OBJECT_RE.finditer(text):
        value = _value_of(match)
        if value is not None:
            last = value
    return last


def _only_reports(body: str) -> bool:
    """True when a fenced block's body is nothing but confidence objects."""
    rest = _OBJECT_RE.sub("", body)
    return _OBJECT_RE.search(body) is not None and not rest.strip()


def strip_confidence(text: str) -> str:
    """Remove the confidence reports from ``text`` (e.g. before showing a reply).

    A fenced block that held only reports is removed whole; a line that held only a
    report disappears; a report at the end of a line of prose is cut from that line.
    Everything else, including blank lines elsewhere, is kept as written.
    """
    if not text:
        return text

    def drop_fence(match: re.Match[str]) -> str:
        return "" if _only_reports(match.group("body")) else match.group(0)

    text = _FENCE_RE.sub(drop_fence, text)
    pieces: list[str] = []
    pos = 0
    for match in _OBJECT_RE.finditer(text):
        line_start = text.rfind("\n", 0, match.start()) + 1
        line_end = text.find("\n", match.end())
        line_end = len(text) if line_end < 0 else line_end + 1
        before = text[line_start : match.start()]
        after = text[match.end() : line_end]
        if line_start >= pos and not before.strip() and not after.strip():
            # The report is alone on its line(s): the whole line goes.
            pieces.append(text[pos:line_start])
            pos = line_end
        else:
            # Prose shares the line: cut the report and the spaces before it.
            pieces.append(text[pos : match.start()].rstrip(" \t"))
            pos = match.end()
    pieces.append(text[pos:])
    return "".join(pieces)

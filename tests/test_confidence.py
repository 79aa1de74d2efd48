"""Parsing and stripping verbalised confidence reports (SPEC §6 step 4)."""

from __future__ import annotations

import pytest

from lmrepl.confidence import CONFIDENCE_INSTRUCTION, parse_confidence, strip_confidence

PARSE_CASES: list[tuple[str | None, float | None]] = [
    ('{"confidence": 85}', 85.0),
    ("{'confidence': 70}", 70.0),
    ('{ "confidence" :  60 }', 60.0),
    ('{"confidence": 72.5}', 72.5),
    ('{"confidence": "85"}', 85.0),
    ('{"confidence": 85%}', 85.0),
    ('{"confidence": "85%"}', 85.0),
    ('{"Confidence": 40}', 40.0),
    ('{"confidence": 150}', 100.0),
    ('{"confidence": -20}', 0.0),
    ('{"confidence": 0}', 0.0),
    ('{"confidence": 0.9}', 0.9),  # taken literally on the 0–100 scale
    ('{"confidence": 1e2}', 100.0),
    ('{"confidence": 80, "reason": "checked twice"}', 80.0),
    ('{"reason": "checked", "confidence": 65}', 65.0),
    ('Some prose.\n```json\n{"confidence": 55}\n```\n', 55.0),
    ('```repl\nx = 1\n```\n{"confidence": 30}\n', 30.0),
    ('first {"confidence": 20} then revised {"confidence": 90}', 90.0),
    ('{"confidence": 90}\n{"confidence": "high"}', 90.0),  # garbage after a valid one
    ('{"confidence": "high"}', None),
    ('{"confidence": "85 maybe"}', None),
    ('{"confidence": }', None),
    ('{"confidence": nan}', None),
    ("confidence: 85", None),  # no braces: not the requested format
    ('{"certainty": 85}', None),
    ("", None),
    (None, None),
    ('{\n  "confidence": 45\n}', 45.0),
]


@pytest.mark.parametrize(("text", "expected"), PARSE_CASES)
def test_parse_confidence(text: str | None, expected: float | None) -> None:
    assert parse_confidence(text) == expected


def test_instruction_names_the_format_and_scale() -> None:
    assert '{"confidence": N}' in CONFIDENCE_INSTRUCTION
    assert "0 to 100" in CONFIDENCE_INSTRUCTION and "```repl" in CONFIDENCE_INSTRUCTION
    # The example line in the instruction must itself not parse as a report.
    assert parse_confidence(CONFIDENCE_INSTRUCTION) is None


STRIP_CASES: list[tuple[str, str]] = [
    ('Let me look.\n{"confidence": 80}\n', "Let me look.\n"),
    ('Done here. {"confidence": 80}\nNext line', "Done here.\nNext line"),
    (
        '```repl\nprint(1)\n```\n```json\n{"confidence": 70}\n```\nafter',
        "```repl\nprint(1)\n```\nafter",
    ),
    ('{\n  "confidence": 40\n}\ntail', "tail"),
    ("no report at all\n", "no report at all\n"),
    ('{"confidence": "high"}\n', '{"confidence": "high"}\n'),  # not a report: kept
    ('a\n{"confidence": 1}\nb\n{"confidence": 2}', "a\nb\n"),
]


@pytest.mark.parametrize(("text", "expected"), STRIP_CASES)
def test_strip_confidence(text: str, expected: str) -> None:
    stripped = strip_confidence(text)
    assert stripped == expected
    assert parse_confidence(stripped) is None


def test_strip_keeps_code_fence_with_other_content() -> None:
    text = '```json\n{"confidence": 70, "x": 1}\n{"a": 2}\n```\n'
    out = strip_confidence(text)
    assert out.startswith("```json\n")
    assert '{"a": 2}' in out
    assert parse_confidence(out) is None

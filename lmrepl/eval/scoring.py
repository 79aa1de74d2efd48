"""Exact scorers, one per task family: ``score(task, answer) -> bool``.

Numbers are compared as numbers, not text: grouping commas and spaces are dropped
(``1,234`` and ``1 234`` are ``1234``) and ``1234.0`` equals ``1234``. An answer that
names every candidate (all the vaults' codes, every user id) is wrong.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from lmrepl.eval.tasks import Task

__all__ = ["SCORERS", "first_number", "numbers", "score"]

# A comma or space between digits that groups thousands: "1,234,567", "1 234".
_GROUPING = re.compile(r"(?<=\d)[, ](?=\d{3}(?!\d))")
_DIGITS = re.compile(r"\d+")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_NEEDLE = re.compile(r"The access code for vault (\w+) is (\d+)\.")
_USER = re.compile(r"user=u(\d+)")


def _ungroup(answer: str) -> str:
    return _GROUPING.sub("", answer)


def numbers(answer: str) -> set[str]:
    """Every run of digits in ``answer`` after dropping thousands separators."""
    return set(_DIGITS.findall(_ungroup(answer)))


def first_number(answer: str) -> float | None:
    """The first number in ``answer`` (``"1,234"`` → 1234.0, ``"12.0"`` → 12.0), or None."""
    match = _NUMBER.search(_ungroup(answer))
    return float(match.group()) if match else None


def _truth_text(task: Task) -> str:
    return task.truth if isinstance(task.truth, str) else " ".join(task.truth)


def score_niah(task: Task, answer: str) -> bool:
    """The code is in the answer as a whole number."""
    return _truth_text(task) in numbers(answer)


def score_niah_multi(task: Task, answer: str) -> bool:
    """The asked vault's code is in the answer and no other vault's code is."""
    found = numbers(answer)
    truth = _truth_text(task)
    others = {code for _, code in _NEEDLE.findall(task.context)} - {truth}
    return truth in found and not (found & others)


def score_count(task: Task, answer: str) -> bool:
    """The answer's first number equals the count or total."""
    value = first_number(answer)
    return value is not None and value == float(_truth_text(task))


def score_pairs(task: Task, answer: str) -> bool:
    """Exactly the two user ids are named (with or without their ``u``), no third one."""
    users = set(_USER.findall(task.context))
    truth = {t.removeprefix("u") for t in task.truth} if isinstance(task.truth, list) else set()
    named = set(_DIGITS.findall(answer)) & users
    return bool(truth) and named == truth


#: Family name → scorer ``(task, answer) -> bool``; the answer is never None here.
SCORERS: dict[str, Callable[[Task, str], bool]] = {
    "niah": score_niah,
    "niah-multi": score_niah_multi,
    "count": score_count,
    "pairs": score_pairs,
}


def score(task: Task, answer: str | None) -> bool:
    """True when ``answer`` is right for ``task``; None and blank answers are wrong."""
    if answer is None or not answer.strip():
        return False
    return SCORERS[task.family](task, answer)

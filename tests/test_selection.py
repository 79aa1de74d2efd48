"""Answer normalisation and self-consistency clustering (SPEC §6 step 3)."""

from __future__ import annotations

import itertools
import random

import pytest

from lmrepl.selection import (
    Cluster,
    cluster_answers,
    matches_inside,
    normalize_answer,
    surviving_members,
)

NORMALIZE_CASES: list[tuple[str | None, str]] = [
    ("  Paris  ", "paris"),
    ("PARIS", "paris"),
    ("New   York\nCity", "new york city"),
    ('"Paris"', "paris"),
    ("“Paris”", "paris"),
    ("'Paris'.", "paris"),
    ("`42`", "42"),
    ("**Paris**", "paris"),
    ("[Paris]", "paris"),
    ("(Paris)", "paris"),
    ("Paris!", "paris"),
    ("Paris?!" + "!" * 80, "paris"),
    ("The answer is Paris.", "paris"),
    ("Answer: Paris", "paris"),
    ("Final answer: **New York City**.", "new york city"),
    ("the final answer is: 42", "42"),
    ("1,000", "1000"),
    ("1000.0", "1000"),
    ("1e3", "1000"),
    ("1.50", "1.5"),
    (".5", "0.5"),
    ("-0", "0"),
    ("-0.0", "0"),
    ("−5", "-5"),  # typographic minus
    ("$1,000.00", "1000"),
    ("50%", "50"),
    ("50 percent", "50"),
    ("1,000 people", "1000 people"),
    ("(B)", "b"),
    ("B.", "b"),
    ("b)", "b"),
    ("Option C", "c"),
    ("answer: (d)", "d"),
    ("optiona", "optiona"),  # a word, not "option a"
    ("2024-01-05", "2024-01-05"),  # dates stay as written
    ("v1.2.3", "v1.2.3"),
    ("1,2,3", "1,2,3"),  # a list, not a thousands separator
    ("(a) or (b)", "(a) or (b)"),  # two wraps, not one
    ("...", ""),
    ("", ""),
    (None, ""),
]


@pytest.mark.parametrize(("text", "expected"), NORMALIZE_CASES)
def test_normalize_answer(text: str | None, expected: str) -> None:
    assert normalize_answer(text) == expected


def test_normalize_is_idempotent() -> None:
    for text, _ in NORMALIZE_CASES:
        once = normalize_answer(text)
        assert normalize_answer(once) == once


def test_huge_exponent_stays_bounded() -> None:
    assert len(normalize_answer("1e999999")) < 20


@pytest.mark.parametrize(
    ("short", "long", "expected"),
    [
        ("paris", "the capital is paris", True),
        ("cat", "category", False),
        ("5", "5.5", False),
        ("5", "-5", False),
        ("42", "there are 42 apples", True),
        ("42", "42 of 100", False),
        ("a", "a car", False),
        ("no", "no idea", False),
        ("new york", "new york city", True),
        ("paris", "paris", False),
    ],
)
def test_matches_inside(short: str, long: str, expected: bool) -> None:
    assert matches_inside(short, long) is expected


# (name, answers, expected partition of the non-empty answers' indices)
CLUSTER_CASES: list[tuple[str, list[str | None], list[set[int]]]] = [
    ("identical", ["42", "42", "42"], [{0, 1, 2}]),
    ("thousands", ["1,000", "1000", "1000.0", "1e3"], [{0, 1, 2, 3}]),
    ("number words differ", ["1000", "1001"], [{0}, {1}]),
    ("negative zero", ["-0", "0", "0.0"], [{0, 1, 2}]),
    ("negative vs positive", ["-5", "5"], [{0}, {1}]),
    ("decimal not inside", ["5", "5.5"], [{0}, {1}]),
    ("currency and percent", ["$5", "5", "5%"], [{0, 1, 2}]),
    ("case and punctuation", ["Paris", "paris.", "PARIS!"], [{0, 1, 2}]),
    ("quotes and backticks", ['"Paris"', "`Paris`", "'paris'"], [{0, 1, 2}]),
    ("containment", ["Paris", "The capital is Paris", "London"], [{0, 1}, {2}]),
    ("answer prefix", ["The answer is 42.", "42"], [{0, 1}]),
    ("number inside sentence", ["42", "There are 42 apples"], [{0, 1}]),
    ("number among numbers", ["42", "42 of 100"], [{0}, {1}]),
    ("mc letter variants", ["(A)", "A.", "a", "Option A"], [{0, 1, 2, 3}]),
    ("mc letter vs word", ["A", "a car", "A"], [{0, 2}, {1}]),
    ("mc letters differ", ["A", "B", "(b)"], [{0}, {1, 2}]),
    ("short word exact only", ["no", "no idea"], [{0}, {1}]),
    ("hedge words", ["red", "blue", "red or blue"], [{0}, {1}, {2}]),
    ("hedge numbers", ["42", "99", "either 42 or 99"], [{0}, {1}, {2}]),
    ("hedge with one side only", ["red", "red or blue"], [{0, 1}]),
    ("nested containment", ["paris", "paris france", "it is paris france"], [{0, 1, 2}]),
    ("word boundary", ["cat", "category"], [{0}, {1}]),
    ("none and empty", [None, "", "  ", "Paris", "..."], [{3}]),
    ("all empty", [None, "", "?"], []),
    ("multiword core", ["New York", "New York City", "York"], [{0, 1, 2}]),
    ("two hedges same text", ["x1", "y1", "x1 or y1", "X1 or Y1"], [{0}, {1}, {2, 3}]),
    ("dates verbatim", ["2024-01-05", "2024-1-5", "January 5"], [{0}, {1}, {2}]),
    ("thousands in sentence", ["1,000 people", "1000 people", "1000"], [{0, 1, 2}]),
    ("unicode quotes", ["“Yes”", "yes", "Yes."], [{0, 1, 2}]),
]


def _partition(clusters: list[Cluster]) -> list[set[int]]:
    return sorted((set(c.members) for c in clusters), key=lambda s: sorted(s))


@pytest.mark.parametrize(
    ("answers", "expected"),
    [pytest.param(a, e, id=name) for name, a, e in CLUSTER_CASES],
)
def test_cluster_answers(answers: list[str | None], expected: list[set[int]]) -> None:
    clusters = cluster_answers(answers)
    assert _partition(clusters) == sorted(expected, key=lambda s: sorted(s))
    for c in clusters:
        assert c.votes == len(c.members)
        assert c.members == sorted(c.members)
        # The representative is one of the members' own texts.
        assert c.answer in {(answers[i] or "").strip() for i in c.members}
        assert c.normalized == normalize_answer(c.answer)
    # Sorted by votes, largest first.
    assert [c.votes for c in clusters] == sorted((c.votes for c in clusters), reverse=True)


def _as_answer_sets(answers: list[str | None], clusters: list[Cluster]) -> list[tuple[str, ...]]:
    """Clusters described by their members' texts (with multiplicity), index-free."""
    return sorted(tuple(sorted(answers[i] or "" for i in c.members)) for c in clusters)


@pytest.mark.parametrize(
    "answers",
    [pytest.param(a, id=name) for name, a, _ in CLUSTER_CASES],
)
def test_cluster_is_order_independent(answers: list[str | None]) -> None:
    reference = cluster_answers(answers)
    expected = _as_answer_sets(answers, reference)
    reps = [(c.answer, c.normalized, c.votes) for c in reference]
    orders = list(itertools.permutations(range(len(answers))))
    if len(orders) > 60:
        orders = random.Random(7).sample(orders, 60)
    for order in orders:
        shuffled = [answers[i] for i in order]
        got = cluster_answers(shuffled)
        assert _as_answer_sets(shuffled, got) == expected
        assert [(c.answer, c.normalized, c.votes) for c in got] == reps


def test_representative_is_most_common_spelling() -> None:
    clusters = cluster_answers(["paris.", "Paris", "Paris", "The capital is Paris"])
    assert len(clusters) == 1
    assert clusters[0].answer == "Paris"
    assert clusters[0].votes == 4


def test_surviving_members_single_largest() -> None:
    clusters = cluster_answers(["42", "42", "7", "9"])
    assert surviving_members(clusters) == [0, 1]


def test_surviving_members_ties_pool() -> None:
    clusters = cluster_answers(["42", "7", "42", "7", "9"])
    assert surviving_members(clusters) == [0, 1, 2, 3]


def test_surviving_members_all_singletons_pool_everyone() -> None:
    clusters = cluster_answers(["a", "b", None, "c"])
    assert surviving_members(clusters) == [0, 1, 3]


def test_surviving_members_empty() -> None:
    assert surviving_members([]) == []
    assert surviving_members(cluster_answers([None, ""])) == []

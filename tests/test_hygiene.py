"""Submission hygiene rules (lmrepl.hygiene): what is refused, what is held."""

from __future__ import annotations

import pytest

from lmrepl.hygiene import SubmissionGate, hold_note, refusal

QUESTION = "How many lines contain ERROR?"
DESCRIPTION = "`context`: a str with 81,330 characters in 1,500 lines"


@pytest.mark.parametrize(
    "answer",
    [
        "your answer",
        "Your Answer",
        "your final answer",
        "answer",
        "Answer.",
        "<answer>",
        "[answer]",
        "{answer}",
        "your_answer",
        "final answer",
        "the answer",
        "The final answer",
        "value",
        "<value>",
        "result",
        "your answer here",
        "insert answer here",
        "...",
        "…",
        "?",
        "TODO",
        "placeholder",
        "`your answer`",
        '"answer"',
    ],
)
def test_placeholders_are_refused_hard(answer: str) -> None:
    why = refusal(answer, question=QUESTION, description=DESCRIPTION)
    assert why is not None and not why.soft
    assert why.note.startswith("[lmrepl] Not accepted")
    assert "\n" not in why.note


@pytest.mark.parametrize(
    "answer",
    [
        "B",
        "b",
        "(B)",
        "x",
        "X",
        "42",
        "-3.5",
        "Paris",
        "yes",
        "no",
        "True",
        "25 lines",
        # The value is there: only a *whole* answer that is a placeholder is refused.
        "your answer is 42",
        "The answer is 42",
        "answer: 42",
        "81,330",  # a lone number may be the answer ("how many characters?")
        "1500 lines",  # two tokens of the description: too little to call a copy
        '{"a": 1}',  # JSON braces are not a template
        "a str",
    ],
)
def test_legit_answers_are_accepted(answer: str) -> None:
    assert refusal(answer, question=QUESTION, description=DESCRIPTION, source="literal") is None


@pytest.mark.parametrize(
    "answer",
    [
        "How many lines contain ERROR?",
        "how many lines contain error",
        "Question: How many lines contain ERROR?",
    ],
)
def test_the_echoed_question_is_refused_hard(answer: str) -> None:
    why = refusal(answer, question=QUESTION, description=DESCRIPTION)
    assert why is not None and not why.soft and "repeats the question" in why.note


def test_a_one_word_question_is_no_echo() -> None:
    assert refusal("q", question="q") is None


@pytest.mark.parametrize(
    "answer",
    [
        "a str with 81,330 characters in 1,500 lines",
        "`context`: a str with 81,330 characters in 1,500 lines",
        "The context is a str with 81330 characters in 1500 lines.",
        "81,330 characters in 1,500 lines",
        "str with 81,330 characters",
    ],
)
def test_a_copied_description_is_refused_soft(answer: str) -> None:
    why = refusal(answer, question=QUESTION, description=DESCRIPTION)
    assert why is not None and why.soft and "description" in why.note


@pytest.mark.parametrize(
    "answer", ["None", "none", "null", "NaN", "unknown", "N/A", "Not found", "no answer"]
)
def test_nothing_found_words_are_refused_soft(answer: str) -> None:
    why = refusal(answer, question=QUESTION)
    assert why is not None and why.soft


@pytest.mark.parametrize("answer", ["0", "0.0", "zero", "Zero."])
def test_a_count_of_nothing_is_refused_soft(answer: str) -> None:
    # Accepted when submitted again (a soft refusal), but first the search is checked:
    # a 0 is most often a search that could not match.
    why = refusal(answer, question=QUESTION)
    assert why is not None and why.soft and "print a few lines" in why.note
    assert refusal("10", question=QUESTION) is None


def test_an_unformatted_template_is_refused_soft() -> None:
    why = refusal("There are {count} errors", question=QUESTION)
    assert why is not None and why.soft and "f-string" in why.note
    assert refusal("There are {len(x)} errors") is None  # not a bare name: left alone


def test_a_quoted_variable_name_is_refused_soft_only_for_constants() -> None:
    names = {"count", "lines"}
    why = refusal("count", source="literal", variables=lambda: names)
    assert why is not None and why.soft and "FINAL(count)" in why.note
    assert refusal("count", source="computed", variables=lambda: names) is None
    assert refusal("total", source="literal", variables=lambda: names) is None


def test_a_soft_refusal_is_made_once_per_value() -> None:
    gate = SubmissionGate(QUESTION, DESCRIPTION)
    assert gate.review("unknown", "literal").action == "refuse"
    gate.new_reply()
    assert gate.review("Unknown.", "literal").action == "accept"  # same value, normalised
    # A hard refusal never gives way.
    assert gate.review("your answer", "literal").action == "refuse"
    assert gate.review("your answer", "literal").action == "refuse"


def test_the_final_request_skips_soft_refusals_and_holds() -> None:
    gate = SubmissionGate(QUESTION, DESCRIPTION)
    assert gate.review("unknown", "literal", final=True).action == "accept"
    assert gate.review("81330", "literal", unseen_output=True, final=True).action == "accept"
    assert gate.review("<answer>", "literal", final=True).action == "refuse"


def test_a_constant_next_to_unseen_output_is_held_once() -> None:
    gate = SubmissionGate(QUESTION, DESCRIPTION)
    verdict = gate.review("81330", "literal", unseen_output=True)
    assert verdict.action == "hold" and verdict.note == hold_note("81330")
    assert "before seeing this output" in hold_note("81330")
    assert gate.held == "81330"
    gate.step_outputs(["line 1\nline 2"])
    gate.new_reply()
    # The reply right after a hold is accepted whatever it submits...
    accepted = gate.review("25", "literal", unseen_output=True)
    assert accepted.action == "accept" and accepted.grounded is False
    assert gate.held is None


def test_the_same_value_is_not_held_twice() -> None:
    gate = SubmissionGate(QUESTION)
    assert gate.review("7", "literal", unseen_output=True).action == "hold"
    gate.new_reply()
    gate.new_reply()  # a reply in between without a submission
    assert gate.review("7.0", "literal", unseen_output=True).action == "accept"


def test_a_different_value_later_may_be_held_again() -> None:
    gate = SubmissionGate(QUESTION)
    assert gate.review("7", "literal", unseen_output=True).action == "hold"
    gate.new_reply()
    gate.new_reply()
    assert gate.review("8", "literal", unseen_output=True).action == "hold"
    assert gate.held == "8"


@pytest.mark.parametrize(
    ("source", "unseen", "hold"),
    [
        ("literal", True, True),
        ("literal", False, False),  # nothing printed: nothing unseen
        ("computed", True, False),  # FINAL(count): the value came from the code
        ("text", True, False),  # plain-text FINAL: earlier output was all shown
    ],
)
def test_what_is_held(source: str, unseen: bool, hold: bool) -> None:
    gate = SubmissionGate(QUESTION)
    verdict = gate.review("42", source, unseen_output=unseen)  # type: ignore[arg-type]
    assert (verdict.action == "hold") is hold


def test_holding_can_be_turned_off() -> None:
    gate = SubmissionGate(QUESTION, hold_unseen_final=False)
    assert gate.review("81330", "literal", unseen_output=True).action == "accept"


def test_outputs_count_as_shown_from_the_next_reply() -> None:
    gate = SubmissionGate(QUESTION)
    gate.step_outputs(["25"])
    assert gate.review("25", "text").grounded is False  # not sent to the model yet
    gate.new_reply()
    assert gate.review("25", "text").grounded is True


def test_last_resort_skips_what_is_refused_and_falls_back_to_the_held_answer() -> None:
    gate = SubmissionGate(QUESTION, DESCRIPTION)
    gate.step_outputs(["81330"])
    gate.new_reply()
    assert gate.review("81330", "literal", unseen_output=True).action == "hold"
    assert gate.last_resort(["your answer", None, ""]) == ("81330", True)
    assert gate.last_resort(["unknown"]) == ("unknown", False)  # soft: accepted at the end
    assert SubmissionGate().last_resort(["<answer>", None]) == (None, None)


@pytest.mark.parametrize("answer", ['{"confidence": 98}', "{'confidence': 98}"])
def test_a_confidence_report_is_not_an_answer(answer: str) -> None:
    # Seen in a demo run: the model submitted its confidence line and it won the vote.
    why = refusal(answer, question=QUESTION)
    assert why is not None and not why.soft and "confidence line" in why.note

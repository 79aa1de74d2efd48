"""Submission hygiene: answers refused before they count, blind guesses held until seen.

Small models (the embedded 0.5B one above all) submit things that are not answers: the
prompt's own placeholder (``FINAL(your answer)``), the question echoed back, the
context's size copied from its description. They also write ``print(context[:500])``
and ``FINAL(81330)`` in one block, so a guess is submitted before the output it should
have come from was read. :func:`refusal` names the first kind; :class:`SubmissionGate`
applies it and holds the second kind for one turn. The rules, with examples, are in
docs/selection.md ("Submission hygiene").
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Literal

from lmrepl.confidence import parse_confidence, strip_confidence
from lmrepl.grounding import Source, is_grounded
from lmrepl.selection import contains_tokens, normalize_answer, number_tokens

__all__ = ["Refusal", "SubmissionGate", "Verdict", "hold_note", "refusal"]

# The whole answer is an instruction's stand-in: "your answer", "<answer>", "[value]",
# "the final answer", "your_answer", "result here" (wrappers are gone after
# normalisation). Only whole answers: "your answer is 42" has a value and is accepted.
_TEMPLATE = re.compile(
    r"^(?:(?:insert|enter|put|write|fill\s+in)\s+)?"
    r"(?:(?:your|the|my|a|an|final|correct|actual|real|computed|exact)\s+)*"
    r"(?:answer|value|result|response|output|solution)"
    r"(?:\s+(?:here|goes\s+here))?$"
)
_PLACEHOLDER_WORDS = frozenset(
    {"todo", "tbd", "placeholder", "fill in", "fill me in", "xxx", "lorem ipsum", "insert here"}
)
# Answers that say "nothing found". Sometimes true, usually a model that gave up early:
# refused once, accepted when submitted again.
_NOTHING = frozenset(
    {
        "none",
        "null",
        "nan",
        "unknown",
        "n/a",
        "not found",
        "no answer",
        "not available",
        "undefined",
        "not specified",
        "not mentioned",
        "cannot determine",
        "cannot be determined",
    }
)
# A count of nothing: right sometimes, but in small models' runs most often the symptom of a
# search that could not match (``context.splitlines().count("ERROR")`` is 0). Refused once.
_ZERO = frozenset({"0", "zero"})
# "{count}" in a submitted string: an f-string that lost its "f".
_UNFORMATTED = re.compile(r"\{[A-Za-z_]\w*(?:\.\w+|\[[^\]{}]*\])*(?:![rsa])?(?::[^{}]*)?\}")
_IDENT = re.compile(r"^[A-Za-z_]\w*$")
_NAME_PREFIX = re.compile(r"^`[^`]+`:\s*")
_QUESTION_PREFIX = re.compile(r"^question\s*[:=-]\s*")
#: Description copies shorter than this many tokens are accepted ("81,330" alone may be
#: the answer to "how many characters?").
MIN_COPIED_TOKENS = 3
SHOWN_CHARS = 80


@dataclass(frozen=True)
class Refusal:
    """Why a submission is not accepted: ``note`` for the model; a ``soft`` refusal is
    made once per value (submitted again, it is accepted)."""

    note: str
    soft: bool = False


def _shown(answer: str) -> str:
    """The answer on one short line, as notes quote it."""
    one = " ".join(answer.split())
    return repr(one if len(one) <= SHOWN_CHARS else one[: SHOWN_CHARS - 1] + "…")


def _tokens(normalized: str) -> int:
    return len(normalized.split())


def description_parts(description: str) -> list[str]:
    """The normalised descriptions of each context (``a str with 81,330 characters …``)."""
    parts = [_NAME_PREFIX.sub("", line.strip()) for line in description.splitlines()]
    return [n for n in (normalize_answer(p) for p in parts) if n]


def refusal(
    answer: str,
    *,
    question: str = "",
    description: str = "",
    source: Source = "computed",
    variables: Callable[[], Collection[str]] | None = None,
) -> Refusal | None:
    """The reason ``answer`` is not an answer, or None when it may be one.

    Hard (always refused): nothing but punctuation (``...``, ``?``); nothing but a
    confidence report (``{'confidence': 98}``); a placeholder
    (``your answer``, ``<answer>``, ``[value]``, ``final answer``, ``result``, ``TODO``,
    ``placeholder``); the question echoed back (two or more words, compared normalised,
    a trailing ``?`` or a ``Question:`` prefix ignored). Soft (refused once): a "nothing
    found" word (``None``, ``unknown``, ``N/A``, ``not found``); a ``{name}`` template
    left unformatted; a copy of the context's description (the description of one context
    inside the answer, or three or more of its tokens in a row as the whole answer —
    ``81,330 characters in 1,500 lines``; a lone number is never refused); a constant
    that is the name of a REPL variable (``FINAL("count")``). Single letters and numbers
    (``B``, ``0``, ``42``) are never refused.
    """
    norm = normalize_answer(answer)
    if not norm:
        return Refusal(
            f"[lmrepl] Not accepted: {_shown(answer)} has no letters or digits. Submit the "
            "answer itself with FINAL(...)."
        )
    if parse_confidence(answer) is not None and not strip_confidence(answer).strip():
        return Refusal(
            f"[lmrepl] Not accepted: {_shown(answer)} is your confidence line, not the "
            "answer. Submit the answer itself with FINAL(...)."
        )
    flat = " ".join(norm.replace("_", " ").split())
    if _TEMPLATE.match(flat) or flat in _PLACEHOLDER_WORDS:
        return Refusal(
            f"[lmrepl] Not accepted: {_shown(answer)} is a placeholder, not an answer. Work "
            "out the real value from `context` and submit it with FINAL(...)."
        )
    asked = normalize_answer(question)
    if _tokens(asked) >= 2 and _QUESTION_PREFIX.sub("", norm) == asked:
        return Refusal(
            "[lmrepl] Not accepted: the answer repeats the question. Find the answer in "
            "`context` and submit that with FINAL(...)."
        )
    if flat in _NOTHING:
        return Refusal(
            f"[lmrepl] Not accepted yet: {_shown(answer)} is not an answer (did a function "
            "return nothing, or did the search stop too early?). Look further in `context`. "
            "If there really is no answer, submit the same again.",
            soft=True,
        )
    if flat in _ZERO:
        return Refusal(
            f"[lmrepl] Not accepted yet: {_shown(answer)}. A search that finds nothing often "
            "looked the wrong way (exact match on whole lines, wrong case, wrong split). "
            "Check it: print a few lines of `context` that should match. If 0 is right, "
            "submit it again.",
            soft=True,
        )
    if _UNFORMATTED.search(answer):
        return Refusal(
            f"[lmrepl] Not accepted yet: {_shown(answer)} contains a {{name}} template that "
            'was never filled in; use an f-string (f"...{name}...") or str(name). If the '
            "braces belong in the answer, submit the same again.",
            soft=True,
        )
    if _copies_description(norm, description):
        return Refusal(
            f"[lmrepl] Not accepted yet: {_shown(answer)} copies the description of "
            "`context` (its size), not what it contains. Read the data and submit the value "
            "you find there. If this really is the answer, submit the same again.",
            soft=True,
        )
    name = answer.strip()
    # Asked last and only for a constant name: on a kernel it is one round trip.
    if source == "literal" and variables is not None and _IDENT.match(name) and name in variables():
        return Refusal(
            f"[lmrepl] Not accepted yet: {_shown(answer)} is the name of your variable, "
            f"not its value; submit FINAL({name}) without quotes. If the name itself is "
            "the answer, submit the same again.",
            soft=True,
        )
    return None


def _copies_description(norm: str, description: str) -> bool:
    for part in description_parts(description):
        if contains_tokens(part, norm):
            return True  # the whole description inside the answer
        if (
            _tokens(norm) >= MIN_COPIED_TOKENS
            and number_tokens(norm)
            and contains_tokens(norm, part)
        ):
            return True  # a run of it ("81330 characters in 1500 lines")
    return False


def hold_note(answer: str) -> str:
    """What the model reads when its constant answer was held until it saw the output."""
    return (
        f"[lmrepl] You submitted {_shown(answer)} before seeing this output. If the output "
        "confirms it, submit it again with FINAL(...); otherwise submit the corrected value."
    )


@dataclass(frozen=True)
class Verdict:
    """What to do with one submission: ``accept`` it (with its ``grounded`` flag),
    ``refuse`` it or ``hold`` it; ``note`` is the line the model reads for the latter two."""

    action: Literal["accept", "refuse", "hold"]
    note: str | None = None
    grounded: bool | None = None


class SubmissionGate:
    """The submission rules of one trajectory, and what it needs to remember for them.

    It knows which outputs the model has been shown (a step's outputs count as shown once
    the next reply arrives, :meth:`new_reply`), which soft refusals were made, which
    values were held and the answer still held. ``hold_unseen_final=False`` turns holding
    off; ``variables`` lists the REPL's user variables (asked only for a constant answer
    that looks like a name).
    """

    def __init__(
        self,
        question: str = "",
        description: str = "",
        *,
        hold_unseen_final: bool = True,
        variables: Callable[[], Collection[str]] | None = None,
    ) -> None:
        self.question = question
        self.description = description
        self.hold_unseen_final = hold_unseen_final
        self.variables = variables
        #: Outputs the model has been shown (each step's, in order).
        self.shown: list[str] = []
        #: The last held answer, until a submission is accepted (the answer of last resort).
        self.held: str | None = None
        self._pending: list[str] = []
        self._soft_refused: set[str] = set()
        self._held_values: set[str] = set()
        self._held_last_reply = False
        self._after_hold = False

    def new_reply(self) -> None:
        """A reply arrived: the last step's outputs were in the request, so now shown."""
        self.shown.extend(self._pending)
        self._pending = []
        self._after_hold, self._held_last_reply = self._held_last_reply, False

    def step_outputs(self, outputs: Sequence[str]) -> None:
        """The outputs of the step that just ran (shown with the next request, if any)."""
        self._pending = list(outputs)

    def review(
        self, answer: str, source: Source, *, unseen_output: bool = False, final: bool = False
    ) -> Verdict:
        """Accept, refuse or hold ``answer``, submitted from ``source``.

        ``unseen_output``: a cell of this reply printed something the model has not read.
        ``final``: the reply to the out-of-steps request, which is never held and where
        soft refusals no longer apply (it is the last chance to answer).
        """
        why = refusal(
            answer,
            question=self.question,
            description=self.description,
            source=source,
            variables=self.variables,
        )
        key = normalize_answer(answer)
        if why is not None and not (why.soft and (final or key in self._soft_refused)):
            if why.soft:
                self._soft_refused.add(key)
            return Verdict("refuse", why.note)
        if (
            self.hold_unseen_final
            and not final
            and source == "literal"
            and unseen_output
            and not self._after_hold
            and key not in self._held_values
        ):
            self._held_values.add(key)
            self._held_last_reply = True
            self.held = answer
            return Verdict("hold", hold_note(answer))
        self.held = None
        return Verdict("accept", grounded=is_grounded(answer, source, self.shown))

    def last_resort(self, candidates: Sequence[str | None]) -> tuple[str | None, bool | None]:
        """The first of ``candidates`` (then the held answer) that is not refused outright,
        with whether it is grounded (its value was shown; it was never computed here)."""
        for answer in [*candidates, self.held]:
            text = (answer or "").strip()
            if not text:
                continue
            why = refusal(text, question=self.question, description=self.description)
            if why is None or why.soft:
                return text, is_grounded(text, "text", self.shown)
        return None, None

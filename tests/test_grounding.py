"""Where an answer came from and whether it is grounded (lmrepl.grounding)."""

from __future__ import annotations

import pytest

from lmrepl.grounding import appears_in, is_grounded, submission_source
from lmrepl.selection import contains_tokens


@pytest.mark.parametrize(
    "code",
    [
        "FINAL(81330)",
        "print(context[:500])\nFINAL(81330)",
        "FINAL(-3)",
        "FINAL(2.5e3)",
        "FINAL('Paris')",
        'FINAL("""B""")',
        'FINAL(f"42")',
        "FINAL(f'{42}')",
        "FINAL(str(25))",
        "FINAL(80000 + 1330)",
        "FINAL([1, 2, 3])",
        "FINAL(value=5)",
        "answer['content'] = 'B'\nanswer['ready'] = True",
        "answer.update({'content': 'B', 'ready': True})",
        "answer.update(content='B', ready=True)",
        "answer = {'content': 'B', 'ready': True}",
        "x = 5\nFINAL('5')",  # the submitted value is still a constant
    ],
)
def test_constants(code: str) -> None:
    assert submission_source(code) == "literal"


@pytest.mark.parametrize(
    "code",
    [
        "FINAL(n)",
        "FINAL(len(context))",
        "FINAL(context.count('ERROR'))",
        "FINAL(f'{n} errors')",
        "FINAL(n * 2)",
        "FINAL_VAR('n')",
        "FINAL(llm_query('x'))",
        "FINAL(eval('1+1'))",
        "answer['content'] = n\nanswer['ready'] = True",
        "answer['content'] += 'x'\nanswer['ready'] = True",
        "answer.update({'content': str(n), 'ready': True})",
        # The data chose the constant: an if, a loop, a conditional expression.
        "if 'ERROR' in context:\n    FINAL('yes')\nelse:\n    FINAL('no')",
        "for line in context.splitlines():\n    if 'x' in line:\n        FINAL('B')",
        "FINAL('yes' if n else 'no')",
        "def f():\n    FINAL(1)\nf()",
        "FINAL('a')\nFINAL(n)",  # one computed site: computed
        "answer['ready'] = True",  # content from an earlier cell
        "done()",  # a helper from an earlier cell
        "x = (",  # does not parse
    ],
)
def test_computed(code: str) -> None:
    assert submission_source(code) == "computed"


@pytest.mark.parametrize(
    ("answer", "outputs", "found"),
    [
        ("25", ["ERROR lines: 25"], True),
        ("25", ["250"], False),
        ("25", ["2.5"], False),
        ("25", ["-25"], False),
        ("81330", ["81,330 characters"], True),
        ("1000", ["1000.0"], True),
        ("Paris", ["'Paris, France'"], True),
        ("paris", ["PARIS"], True),
        ("cat", ["category"], False),
        ("New York", ["I live in new  york city"], True),
        ("B", ["(B) Paris"], True),
        ("There are 25 errors", ["25\n"], True),  # every number of the answer was shown
        ("25 of 1500", ["25", "1500 lines"], True),
        ("25 of 1500", ["25"], False),
        ("red car", ["red", "car"], False),  # words must be found together
        # lmrepl's own lines are not output: the hold note quotes the held value.
        ("81330", ["hello\n[lmrepl] You submitted '81330' before seeing this output."], False),
        ("no", ["(no output)"], False),
        ("", ["anything"], False),
        (None, ["anything"], False),
    ],
)
def test_appears_in(answer: str | None, outputs: list[str], found: bool) -> None:
    assert appears_in(answer, outputs) is found


def test_is_grounded() -> None:
    assert is_grounded("25", "computed", []) is True
    assert is_grounded("25", "literal", ["count: 25"]) is True
    assert is_grounded("25", "literal", ["count: 24"]) is False
    assert is_grounded("25", "text", []) is False
    assert is_grounded(None, "computed", []) is None
    assert is_grounded("...", "computed", []) is None


def test_contains_tokens_is_plain_containment() -> None:
    assert contains_tokens("42", "42")
    assert contains_tokens("42", "42 of 100")  # clustering would say no; grounding yes
    assert not contains_tokens("4", "42")
    assert not contains_tokens("", "x")

"""Reading replies: code blocks, plain-text FINAL, context overwrites."""

from __future__ import annotations

import pytest

from lmrepl.parsing import find_code_blocks, find_final_text, overwrites_context


@pytest.mark.parametrize(
    ("reply", "blocks"),
    [
        ("```repl\nx = 1\n```", ["x = 1"]),
        ("```REPL\nx = 1\n```", ["x = 1"]),
        ("```Repl  \nx = 1\n```\ntext\n```repl\ny = 2\n```", ["x = 1", "y = 2"]),
        # Backtick fences inside the code's strings are not the end of the block.
        ("```repl\ns = '''\n```\n'''\nprint(s)\n```", ["s = '''\n```\n'''\nprint(s)"]),
        ("```repl\nx = '```'\nprint(x)\n```", ["x = '```'\nprint(x)"]),
        # A closing fence glued to the last line of code.
        ("```repl\nprint(1)```", ["print(1)"]),
        # An unclosed fence runs to the end.
        ("```repl\nprint(1)\nprint(2)", ["print(1)\nprint(2)"]),
        # python / bare fences only when there is no repl block.
        ("```python\nprint(1)\n```", ["print(1)"]),
        ("```python\nprint(1)\n```\n```repl\nprint(2)\n```", ["print(2)"]),
        ("no code here", []),
        ("```repl\n\n```", []),
        ("```repl block\nprint(1)\n```", ["print(1)"]),
        ("```repl:\nprint(1)\n```", ["print(1)"]),
    ],
)
def test_find_code_blocks(reply: str, blocks: list[str]) -> None:
    assert find_code_blocks(reply) == blocks


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("Done.\nFINAL(42)", ("FINAL", "42")),
        ('FINAL("Paris")', ("FINAL", "Paris")),
        ("**FINAL(Paris)**", ("FINAL", "Paris")),
        ('FINAL(7)\n{"confidence": 80}', ("FINAL", "7")),
        ("FINAL_VAR(result)", ("FINAL_VAR", "result")),
        ("Final(81330)", ("FINAL", "81330")),
        ("Call FINAL(x) when you know it.", None),
        ("FINAL(42)\nbut maybe not", None),
        ("FINAL(answer)", None),
        ("FINAL(...)", None),
        ("```repl\nx=1\n```\nFINAL(3)", None),
    ],
)
def test_find_final_text(reply: str, expected: tuple[str, str] | None) -> None:
    found = find_final_text(reply)
    assert (None if found is None else (found.kind, found.argument)) == expected


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("context = 'made up text'", True),
        ("context = str_of_81_330_characters", True),
        ("context: str = ''", True),
        ("context = context.lower()", False),
        ("lines = context.splitlines()", False),
        ("def f():\n    context = 1", False),
        ("x = (", False),
    ],
)
def test_overwrites_context(code: str, expected: bool) -> None:
    assert overwrites_context(code) is expected

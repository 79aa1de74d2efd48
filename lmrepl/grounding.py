"""Where a submitted answer came from, and whether it is grounded.

A small model's blind guess looks like any other answer once submitted. Two facts tell
them apart, and both are read here:

- **Source** (:func:`submission_source`): did the submitting cell compute the value
  (``FINAL(count)``, ``FINAL(len(lines))``, ``FINAL_VAR("x")``, a submission inside an
  ``if``/loop, which the data chose), or write a constant (``FINAL(81330)``,
  ``FINAL("Paris")``, ``answer["content"] = "B"``)? Decided on the cell's syntax tree.
- **Shown output** (:func:`appears_in`): did the value appear, on word boundaries after
  ``normalize_answer``, in output the model had already been shown?

An answer is **grounded** (:func:`is_grounded`) when its source is computed or its value
appeared in shown output. A constant, or a plain-text ``FINAL(...)``, whose value never
appeared in shown output is not. The rules are in docs/selection.md ("Grounded answers").
"""

from __future__ import annotations

import ast
import builtins
from collections.abc import Iterable, Sequence
from typing import Literal

from lmrepl.selection import contains_tokens, normalize_answer, number_tokens

__all__ = ["Source", "appears_in", "is_grounded", "submission_source"]

#: ``literal``: a constant written in the code; ``computed``: a value the code worked out;
#: ``text``: a plain-text ``FINAL(...)`` outside any code block.
Source = Literal["literal", "computed", "text"]

# Builtins that only reshape a constant (``str(25)``, ``int("7")``) keep it a constant;
# these read something from outside the expression, so calling one computes a value.
_READERS = frozenset(
    {"eval", "exec", "open", "input", "globals", "locals", "vars", "getattr", "__import__"}
)
_PURE_BUILTINS = frozenset(dir(builtins)) - _READERS
# A submission nested in one of these ran because of the data (an ``if`` on a count, a
# loop that stops at a match), so even a constant there was chosen by computation.
_CHOSEN_BY_CODE = (
    ast.If,
    ast.IfExp,
    ast.For,
    ast.AsyncFor,
    ast.While,
    ast.Try,
    ast.TryStar,
    ast.With,
    ast.AsyncWith,
    ast.Match,
    ast.BoolOp,
    ast.FunctionDef,
    ast.AsyncFunctionDef,
    ast.Lambda,
    ast.ClassDef,
    ast.comprehension,
    ast.ListComp,
    ast.SetComp,
    ast.DictComp,
    ast.GeneratorExp,
)
# Lines of our own in an output (hold and refusal notes, REPL notices) and the
# placeholder of an empty output are not data the model was shown.
_OWN_LINE_PREFIXES = ("[lmrepl]", "(no output)")


def _is_constant(node: ast.expr) -> bool:
    """True when ``node`` names no variable: a literal, or builtins applied to literals."""
    called = {
        id(n.func)
        for n in ast.walk(node)
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
    }
    for n in ast.walk(node):
        if isinstance(n, ast.Name) and not (id(n) in called and n.id in _PURE_BUILTINS):
            return False
        if isinstance(n, ast.NamedExpr | ast.Await | ast.Yield | ast.YieldFrom):
            return False
    return True


def _content_of(node: ast.Dict) -> ast.expr | None:
    for key, value in zip(node.keys, node.values, strict=True):
        if isinstance(key, ast.Constant) and key.value == "content":
            return value
    return None


def _is_answer_content(target: ast.expr) -> bool:
    return (
        isinstance(target, ast.Subscript)
        and isinstance(target.value, ast.Name)
        and target.value.id == "answer"
        and isinstance(target.slice, ast.Constant)
        and target.slice.value == "content"
    )


def _site(node: ast.AST) -> tuple[bool, ast.expr | None] | None:
    """Whether ``node`` submits or drafts an answer: ``(True, value)``, value None when the
    value is computed by construction (``FINAL_VAR``, ``+=``); ``None`` when it does not."""
    if isinstance(node, ast.Call):
        func = node.func
        if isinstance(func, ast.Name) and func.id == "FINAL_VAR":
            return True, None
        if isinstance(func, ast.Name) and func.id == "FINAL":
            args = [*node.args, *(k.value for k in node.keywords)]
            return True, args[0] if args else None
        if (
            isinstance(func, ast.Attribute)
            and func.attr == "update"
            and isinstance(func.value, ast.Name)
            and func.value.id == "answer"
        ):
            for arg in node.args:
                if isinstance(arg, ast.Dict) and (value := _content_of(arg)) is not None:
                    return True, value
            for kw in node.keywords:
                if kw.arg == "content":
                    return True, kw.value
        return None
    if isinstance(node, ast.AugAssign) and _is_answer_content(node.target):
        return True, None
    if isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        for target in targets:
            if _is_answer_content(target):
                return True, node.value
            if (
                isinstance(target, ast.Name)
                and target.id == "answer"
                and isinstance(node.value, ast.Dict)
                and (value := _content_of(node.value)) is not None
            ):
                return True, value
    return None


def submission_source(code: str) -> Literal["literal", "computed"]:
    """Whether the cell ``code`` submitted a constant or a computed value.

    ``literal`` only when every submission site in the cell (``FINAL(...)``, an
    ``answer["content"]`` assignment, ``answer.update(content=...)``) runs
    unconditionally at the top level and its value names no variable: ``FINAL(81330)``,
    ``FINAL(-3.5)``, ``FINAL("Paris")``, ``FINAL(f"42")``, ``FINAL(str(25))``,
    ``answer["content"] = "B"``. Everything else is ``computed``: a variable or a call
    on one, ``FINAL_VAR``, arithmetic on variables, a submission inside ``if``/loops
    (the data chose it), code that does not parse, or no visible site at all (a helper
    function from an earlier cell submitted).
    """
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return "computed"
    found = False

    def visit(node: ast.AST, chosen: bool) -> bool:
        """False as soon as a site is computed."""
        nonlocal found
        site = _site(node)
        if site is not None:
            found = True
            value = site[1]
            if chosen or value is None or not _is_constant(value):
                return False
        inner = chosen or isinstance(node, _CHOSEN_BY_CODE)
        return all(visit(child, inner) for child in ast.iter_child_nodes(node))

    all_constant = visit(tree, False)
    return "literal" if found and all_constant else "computed"


def _data_lines(text: str) -> str:
    return "\n".join(
        line for line in text.splitlines() if not line.lstrip().startswith(_OWN_LINE_PREFIXES)
    )


def appears_in(answer: str | None, outputs: Iterable[str]) -> bool:
    """Whether ``answer`` appeared in one of ``outputs`` (normalised, word boundaries).

    Both sides go through ``normalize_answer`` (case, quotes, ``1,000`` = ``1000``), so
    ``Paris`` appeared in ``'Paris, France'`` and ``81330`` in ``81,330 chars``, while
    ``25`` did not appear in ``250``. An answer that is not found whole still appeared when
    it holds numbers and every one of them was shown (``There are 25 errors`` after an
    output of ``25``): the numbers are what a guess gets wrong. Lines of lmrepl's own
    (``[lmrepl] ...`` notes, ``(no output)``) are not output.
    """
    needle = normalize_answer(answer)
    if not needle:
        return False
    texts = [normalize_answer(_data_lines(t)) for t in outputs]
    if any(contains_tokens(needle, hay) for hay in texts):
        return True
    numbers = number_tokens(needle)
    return bool(numbers) and all(any(contains_tokens(n, hay) for hay in texts) for n in numbers)


def is_grounded(answer: str | None, source: Source, shown: Sequence[str]) -> bool | None:
    """Grounded: computed, or a value that appeared in ``shown`` output; None: no answer."""
    if not normalize_answer(answer):
        return None
    return source == "computed" or appears_in(answer, shown)

"""Reading model replies: code blocks, plain-text FINAL(...), placeholders.

Code blocks are fenced ```` ```repl ```` (tag case-insensitive). A closing fence is
a line of only backticks, or backticks glued to the end of the code's last line;
when several closings are possible the first at which the code parses wins, so
code that itself contains backtick fences (inside strings) is not cut. Only when
a reply has no repl block at all are ```` ```python ```` or bare fences taken, since
small models write those.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

# The tag is the first word after the fence; small models write "```repl block".
_OPEN = re.compile(r"^[ \t]*```[ \t]*(?P<tag>[A-Za-z0-9_+-]*)(?:[ \t:]+[^`]*)?[ \t]*$")
# Case-insensitive: small models write ``Final(42)``.
_FINAL_LINE = re.compile(
    r"^\s*(?:\*\*)?(FINAL_VAR|FINAL)\s*\((?P<arg>.*)\)\s*(?:\*\*)?\s*\.?\s*$", re.S | re.I
)
_FALLBACK_TAGS = {"python", "py", "python3", ""}

#: Arguments that are an instruction echoed back, not an answer.
PLACEHOLDERS = {
    "answer",
    "...",
    "…",
    "your answer",
    "your final answer",
    "value",
    "x",
    "final answer",
    "<answer>",
    "the answer",
}


@dataclass(frozen=True)
class FinalText:
    """A plain-text submission: ``FINAL(text)`` or ``FINAL_VAR(name)``."""

    kind: str  # "FINAL" | "FINAL_VAR"
    argument: str


def _parses(code: str) -> bool:
    try:
        ast.parse(code)
    except SyntaxError:
        return False
    return True


def _blocks_with_tags(reply: str, tags: set[str] | None) -> list[str]:
    lines = reply.splitlines()
    blocks: list[str] = []
    i = 0
    while i < len(lines):
        m = _OPEN.match(lines[i])
        tag = m.group("tag").lower() if m else None
        wanted = (
            m is not None
            and tag is not None
            and ((tags is None and tag == "repl") or (tags is not None and tag in tags))
        )
        if not wanted:
            i += 1
            continue
        # Collect candidate closings: (end line index exclusive, glued prefix or None).
        candidates: list[tuple[int, str | None, int]] = []
        for j in range(i + 1, len(lines)):
            stripped = lines[j].strip()
            if stripped and set(stripped) == {"`"} and len(stripped) >= 3:
                candidates.append((j, None, j + 1))
            elif lines[j].rstrip().endswith("```") and stripped.strip("`"):
                candidates.append((j, lines[j].rstrip()[:-3], j + 1))
        chosen: tuple[int, str | None, int] | None = None
        for cand in candidates:
            end, glued, _ = cand
            body = lines[i + 1 : end] + ([glued] if glued is not None else [])
            if _parses("\n".join(body)):
                chosen = cand
                break
        if chosen is None and candidates:
            chosen = candidates[0]
        if chosen is None:  # unclosed fence: the code runs to the end of the reply
            body = lines[i + 1 :]
            next_i = len(lines)
        else:
            end, glued, next_i = chosen
            body = lines[i + 1 : end] + ([glued] if glued is not None else [])
        code = "\n".join(body).strip("\n")
        if code.strip():
            blocks.append(code)
        i = next_i
    return blocks


def find_code_blocks(reply: str) -> list[str]:
    """The ```` ```repl ```` blocks of a reply, in order (python/bare fences as a fallback)."""
    blocks = _blocks_with_tags(reply, None)
    if blocks:
        return blocks
    return _blocks_with_tags(reply, _FALLBACK_TAGS)


def _unquote(text: str) -> str:
    t = text.strip()
    for q in ('"""', "'''", '"', "'"):
        if len(t) >= 2 * len(q) and t.startswith(q) and t.endswith(q):
            return t[len(q) : -len(q)].strip()
    return t


def find_final_text(reply: str) -> FinalText | None:
    """A ``FINAL(...)`` that is the last non-empty line of a reply with no code block.

    Prose that merely mentions FINAL is not an answer, nor is an echoed placeholder
    such as ``FINAL(answer)``.
    """
    if find_code_blocks(reply):
        return None
    lines = [ln for ln in reply.splitlines() if ln.strip()]
    # A trailing confidence report may follow the answer line.
    while lines and re.match(r'^\s*\{\s*["\']confidence["\']', lines[-1]):
        lines.pop()
    if not lines:
        return None
    last = lines[-1].strip().strip("`").strip()
    m = _FINAL_LINE.match(last)
    if not m:
        return None
    arg = _unquote(m.group("arg"))
    if not arg or arg.lower() in PLACEHOLDERS:
        return None
    return FinalText(kind=m.group(1).upper(), argument=arg)


def strip_fences(text: str) -> str:
    """The reply without code blocks (what is left is prose)."""
    return re.sub(r"```.*?(```|$)", "", text, flags=re.S).strip()


def _mentions(node: ast.AST, name: str) -> bool:
    return any(isinstance(n, ast.Name) and n.id == name for n in ast.walk(node))


def overwrites_context(code: str) -> bool:
    """True when top-level code rebinds ``context`` to something not computed from it.

    Small models write ``context = "..."`` (an invented stand-in) and then work on
    that; refusing the cell with an explanation keeps them on the real data.
    """
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return False
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign):
            targets = stmt.targets
        elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
            targets = [stmt.target]
        else:
            continue
        for target in targets:
            if (
                isinstance(target, ast.Name)
                and target.id == "context"
                and (stmt.value is None or not _mentions(stmt.value, "context"))
            ):
                return True
    return False

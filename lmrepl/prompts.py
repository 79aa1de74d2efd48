"""What the root model is told: the system prompt, the first user turn, nudges.

Kept short on purpose: a small local model reads prompts at ~100–160 tokens/s.
The prompt never contains the context itself, only its description.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

SYSTEM_PROMPT = """\
You answer a question about a context that is too long to read directly. The context \
is already loaded in the variable `context` of a Python REPL. You work by writing \
Python code in a repl block, like this:
```repl
print(context[:500])
```
You then see what the code printed (truncated); the value of a last bare expression \
is shown too. Variables persist between blocks.

In the REPL you have:
- `context`: the data (also `context_0`, `context_1`, … when there are several)
- `llm_query(prompt) -> str`: ask a language model about a piece of text
- `llm_query_batched(prompts) -> list[str]`: many prompts at once, answers in order
- `rlm_query(prompt) -> str`: hand a sub-task to a helper that has its own REPL
- `rlm_query_batched(prompts) -> list[str]`: many sub-tasks at once
- `SHOW_VARS()`: the variables you created
{tools}
Look at the context in pieces (len, slices, splitlines, str.count, re) and use \
`llm_query` on chunks that need reading. Compute the answer from `context`; never \
invent data and never assign a new value to `context`. When you know the answer, \
submit it in a repl block with `FINAL(value)` (or `FINAL_VAR("variable_name")`, or \
set answer["content"] = value and answer["ready"] = True).
"""

CHILD_SYSTEM_PROMPT = """\
You are a helper working on one sub-task. The sub-task text is in the variable \
`context` of a Python REPL. Write Python in ```repl blocks; you see their output. \
`llm_query(prompt)` asks a language model. When done, call FINAL(value) in a ```repl \
block with your result.
"""

NO_CODE_NUDGE = (
    "Your reply had no ```repl code block. Write Python in a ```repl block to inspect "
    "`context`, or submit with FINAL(value) inside a ```repl block."
)

CONTEXT_OVERWRITE_NOTE = (
    "[lmrepl] This block was not run: it assigns a new value to `context`, which already "
    "holds the real data. Use `context` directly (for example print(context[:500]))."
)

REPEATED_CODE_NOTE = (
    "[lmrepl] This is the same code as your previous step, so it gives the same output. "
    "Try something different: look at another part of `context`, or submit with FINAL(value)."
)

# No placeholder inside FINAL(...): small models copy it verbatim as their answer.
FINAL_REQUEST = (
    "This is your last step. Do not write more code. Reply now with only your final "
    "answer on the last line, written as FINAL(...) with the value itself inside the "
    "parentheses."
)
REPEAT_STOP = (
    "Running the same code again gives the same output, so this is your last step. Do not "
    "write more code. Reply now with only your final answer on the last line, written as "
    "FINAL(...) with the value itself inside the parentheses."
)


def final_request(last_outputs: list[str], *, repeated: bool = False) -> str:
    """The last request for an answer, naming a lone short last output if there was one."""
    value = _single_value(last_outputs)
    text = REPEAT_STOP if repeated else FINAL_REQUEST
    return text + (f" Your last code printed: {value}" if value is not None else "")


def describe_context(contexts: list[Any]) -> str:
    """Type, total size and piece sizes of the context(s) — never their contents."""
    parts = []
    for i, ctx in enumerate(contexts):
        name = "context" if len(contexts) == 1 else f"context_{i}"
        parts.append(f"`{name}`: {_describe(ctx)}")
    return "\n".join(parts)


def _describe(ctx: Any) -> str:
    if isinstance(ctx, str):
        lines = ctx.count("\n") + (1 if ctx else 0)
        return f"a str with {len(ctx):,} characters in {lines:,} lines"
    if isinstance(ctx, bytes):
        return f"a bytes object of {len(ctx):,} bytes"
    if isinstance(ctx, Mapping):
        keys = list(ctx.keys())
        shown = ", ".join(repr(k) for k in keys[:10]) + (", …" if len(keys) > 10 else "")
        sizes = [len(v) if isinstance(v, (str, bytes, list, dict)) else None for v in ctx.values()]
        total = sum(s for s in sizes if s is not None)
        return f"dict with {len(keys):,} keys ({shown}); total value size {total:,}"
    if isinstance(ctx, (list, tuple)):
        sizes = [len(x) if isinstance(x, (str, bytes, list, dict)) else None for x in ctx]
        known = [s for s in sizes if s is not None]
        head = ", ".join(str(s) for s in known[:10]) + (", …" if len(known) > 10 else "")
        kind = type(ctx).__name__
        return (
            f"{kind} of {len(ctx):,} items; total size {sum(known):,}; item sizes: {head or 'n/a'}"
        )
    return f"{type(ctx).__name__} object"


def tool_lines(descriptions: Mapping[str, str]) -> str:
    """Lines describing custom tools for the system prompt."""
    return "".join(f"- `{name}`: {desc}\n" for name, desc in descriptions.items())


def build_system_prompt(
    custom: str | None,
    tools: Mapping[str, str],
    *,
    child: bool = False,
    confidence_instruction: str | None = None,
    models: list[str] | None = None,
) -> str:
    """The system prompt: a custom one as given (tools appended), else ours.

    ``models`` (when more than one is configured) are named so sub-calls can pick one
    with ``model=NAME``; with a single model the argument is not advertised, since small
    models then invent names.
    """
    if custom is not None:
        text = custom
        if tools:
            text += "\n\nCustom tools in the REPL:\n" + tool_lines(tools)
    elif child:
        text = CHILD_SYSTEM_PROMPT + ("Custom tools:\n" + tool_lines(tools) if tools else "")
    else:
        text = SYSTEM_PROMPT.format(tools=tool_lines(tools))
    if models and len(models) > 1:
        names = ", ".join(repr(m) for m in models)
        text = text.rstrip("\n") + (
            f"\n\nThe query functions also take model=NAME to choose a model: {names} "
            f"(default {models[0]!r})."
        )
    if confidence_instruction:
        text = text.rstrip("\n") + "\n\n" + confidence_instruction
    return text


def first_user_message(question: str, context_info: str, history_turns: int = 0) -> str:
    """The first user turn: where the data is, what it is, the question.

    Small models copy a bare description ("a str with 81,330 characters") into code as if
    it were the data; saying plainly that ``context`` already holds it stops that.
    """
    extra = (
        f"\n`history` holds {history_turns} earlier question/answer turns." if history_turns else ""
    )
    return (
        "The data is already loaded in the REPL; it is not shown here. Read it with code.\n"
        f"{context_info}{extra}\n\n"
        f"Question: {question}\n"
        "Start with a ```repl block that uses `context`."
    )


def step_feedback(
    outputs: list[str],
    question: str,
    iteration: int,
    remaining: int,
    note: str | None = None,
) -> str:
    """The user turn after code ran: outputs, and the question again (small models forget)."""
    shown = "\n\n".join(
        f"Output of block {i + 1}:\n{out}" if len(outputs) > 1 else f"Output:\n{out}"
        for i, out in enumerate(outputs)
    )
    value = _single_value(outputs)
    submit = f"FINAL({value})" if value is not None else "FINAL(value)"
    text = (
        f"{shown}\n\n(Step {iteration} done, {remaining} left. If this output answers the "
        f"question, submit it with {submit}.) Question: {question}"
    )
    return f"{text}\n{note}" if note else text


def lone_output(outputs: list[str]) -> str | None:
    """The text of a step that printed one short line (a value), else None."""
    if len(outputs) != 1:
        return None
    text = outputs[0].strip()
    if not text or "\n" in text or len(text) > 60 or text.startswith(("[lmrepl]", "(no ")):
        return None
    return text


def _single_value(outputs: list[str]) -> str | None:
    """A lone short output line as a FINAL argument (small models then do submit it)."""
    text = lone_output(outputs)
    if text is None or _NUMBER.fullmatch(text):
        return text
    return repr(text.strip("'\""))


_NUMBER = re.compile(r"-?\d+(\.\d+)?")

"""The root loop's conversation, kept within the model's window.

A trajectory's conversation grows by one reply and one feedback turn per step, and the
feedback carries the outputs of the step's code. ``Conversation.fitted`` renders it as
messages that fit a token budget, in this order of sacrifice:

1. outputs are cut (head and tail kept, with a note), the oldest first, each only as
   much as needed and never below ``MIN_KEEP_CHARS``;
2. then the oldest steps are compacted: replaced by one short digest of the code they
   ran (the REPL still holds their variables);
3. then whatever is left is cut by ``lmrepl.window.fit_request`` (the question, replies).

Cuts and compaction are sticky: a later request never shows more of an old output than
an earlier one did, so the request's prefix stays the same and servers that cache
prompt prefixes (llama.cpp does, per slot) do not have to read it again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from lmrepl.clients.base import Message
from lmrepl.parsing import find_code_blocks
from lmrepl.window import MIN_KEEP_CHARS, Count, cut_middle, fit_request, request_tokens

#: Renders a step's (possibly cut) outputs as the feedback turn's text.
Frame = Callable[[list[str]], str]

COMPACTED_NOTE = (
    "Summary of my earlier steps (their outputs were removed to fit the model's window; "
    "the variables they created are still in the REPL):\n{digest}"
)
CONTINUE_NOTE = "Continue from there. The REPL state is unchanged."
SUMMARY_NOTE = "Summary of my earlier steps:\n{summary}"
#: Lines of each dropped step's code kept in the digest.
DIGEST_LINES = 3


def _plain(outputs: list[str]) -> str:
    return "\n\n".join(outputs)


@dataclass
class _Step:
    reply: str
    outputs: list[str]
    frame: Frame
    #: Characters of each output shown (None: all of it); only ever lowered.
    keep: list[int | None] = field(default_factory=list)

    def shown(self, index: int) -> str:
        limit = self.keep[index]
        text = self.outputs[index]
        return text if limit is None else cut_middle(text, limit)

    def feedback(self) -> str:
        return self.frame([self.shown(i) for i in range(len(self.outputs))])

    def digest(self, number: int) -> str:
        code = "\n".join(find_code_blocks(self.reply)).strip().splitlines()
        if not code:
            return f"step {number}: (no code)"
        more = " …" if len(code) > DIGEST_LINES else ""
        return f"step {number}: " + " ⏎ ".join(line.strip() for line in code[:DIGEST_LINES]) + more


class Conversation:
    """System prompt, first user turn, then (reply, feedback) steps; see the module doc."""

    def __init__(self, system: str, first_user: str) -> None:
        self.system = system
        self.first_user = first_user
        self._steps: list[_Step] = []
        #: Digest lines of steps compacted away, and a model-written summary if any.
        self._digest: list[str] = []
        self._summary: str | None = None
        self._numbered = 0

    def add_step(self, reply: str, outputs: list[str], frame: Frame | None = None) -> None:
        """One step: the model's ``reply`` and the outputs it produced (``frame`` renders
        them as the feedback turn; by default they are joined as they are)."""
        self._numbered += 1
        self._steps.append(_Step(reply, list(outputs), frame or _plain, [None] * len(outputs)))

    def compact(self, summary: str) -> None:
        """Replace every step so far by ``summary`` (written by the model)."""
        self._summary = summary
        self._digest = []
        self._steps = []

    def messages(self) -> list[Message]:
        """The conversation as it stands (with the cuts made so far)."""
        out: list[Message] = [
            {"role": "system", "content": self.system},
            {"role": "user", "content": self.first_user},
        ]
        if self._summary is not None or self._digest:
            parts = [SUMMARY_NOTE.format(summary=self._summary)] if self._summary else []
            if self._digest:
                parts.append(COMPACTED_NOTE.format(digest="\n".join(self._digest)))
            out += [
                {"role": "assistant", "content": "\n\n".join(parts)},
                {"role": "user", "content": CONTINUE_NOTE},
            ]
        for step in self._steps:
            out += [
                {"role": "assistant", "content": step.reply},
                {"role": "user", "content": step.feedback()},
            ]
        return out

    def fitted(
        self, budget: int | None, count: Count, tail: list[Message] | None = None
    ) -> list[Message]:
        """The messages (plus ``tail``) cut to take at most ``budget`` tokens."""
        tail = tail or []
        if budget is None:
            return self.messages() + tail

        def over() -> int:
            return request_tokens(self.messages() + tail, count) - budget

        if over() <= 0:
            return self.messages() + tail
        self._cut_outputs(over, count)
        # Keep at least the newest step: it holds what the model has just done.
        while over() > 0 and len(self._steps) > 1:
            self._drop_oldest()
        return fit_request(self.messages() + tail, budget, count)

    def _cut_outputs(self, over: Callable[[], int], count: Count) -> None:
        for step in self._steps:
            for i in range(len(step.outputs)):
                excess = over()
                if excess <= 0:
                    return
                shown = step.shown(i)
                if len(shown) <= MIN_KEEP_CHARS:
                    continue
                tokens = max(count(shown), 1)
                # Characters per token of this output; slack for the note it gains.
                keep = int(len(shown) * (tokens - excess) / tokens * 0.9) - 80
                step.keep[i] = max(keep, MIN_KEEP_CHARS)

    def _drop_oldest(self) -> None:
        number = self._numbered - len(self._steps) + 1
        self._digest.append(self._steps.pop(0).digest(number))

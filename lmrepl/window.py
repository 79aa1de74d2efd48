"""Fitting requests into the model's window.

Every request the engine sends must fit the model's context window, with room left
for the reply. ``fit_request`` is the last step before any request goes out (root
turns, children's turns, sub-calls, compaction): it cuts the middle out of the
largest messages until the request fits. The root loop first shapes its own
conversation more carefully (``lmrepl.conversation``): outputs are cut before
anything else, older ones first.

Token counts come from the client (``ModelClient.count_tokens``: exact for the
embedded model, a conservative estimate elsewhere). Cuts keep the head and the tail
of a text and say how much was removed, so the model knows it did not see all.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from lmrepl.clients.base import Message
from lmrepl.errors import ConfigurationError

#: Tokens a chat template adds around each message (role markers, separators).
PER_MESSAGE_TOKENS = 8
#: Tokens the template adds once per request (the assistant turn's header).
PER_REQUEST_TOKENS = 16
#: A cut output keeps at least this many characters (head and tail together).
MIN_KEEP_CHARS = 240

Count = Callable[[str], int]

_CUT_NOTE = "\n[… {cut:,} of {total:,} characters cut here to fit the model's window …]\n"
_OVERFLOW = re.compile(
    r"exceeds the available context size|context_length_exceeded|maximum context length"
    r"|prompt is too long|too many tokens|context window",
    re.IGNORECASE,
)
_REPORTED = re.compile(r"request \((\d+) tokens\)|resulted in (\d+) tokens", re.IGNORECASE)


def cut_middle(text: str, keep: int) -> str:
    """``text`` with its middle replaced by a note, keeping ``keep`` characters (head 60 %,
    tail 40 %). Returned unchanged when it is no longer than ``keep``."""
    keep = max(0, keep)
    if len(text) <= keep:
        return text
    head = keep * 3 // 5
    tail = keep - head
    note = _CUT_NOTE.format(cut=len(text) - keep, total=len(text))
    return text[:head] + note + (text[-tail:] if tail else "")


def request_tokens(messages: list[Message], count: Count) -> int:
    """The tokens ``messages`` take as one request (contents plus template overhead)."""
    return PER_REQUEST_TOKENS + sum(count(m["content"]) + PER_MESSAGE_TOKENS for m in messages)


def is_overflow(error: BaseException) -> bool:
    """True when a backend refused a request for being longer than its window."""
    return bool(_OVERFLOW.search(str(error)))


def overflow_shrink(error: BaseException, counted: int) -> float:
    """How much smaller to make a refused request that we counted ``counted`` tokens.

    llama.cpp says how many tokens it counted ("request (10119 tokens) exceeds …"):
    the ratio of the two corrects our count; without a number, a quarter less.
    """
    found = _REPORTED.search(str(error))
    reported = int(found.group(1) or found.group(2)) if found else 0
    if reported <= 0 or counted <= 0:
        return 0.75
    return min(0.9, max(0.3, 0.95 * counted / reported))


def shrink_to(text: str, tokens: int, target_tokens: int) -> str:
    """``text`` (``tokens`` long) cut so that it takes about ``target_tokens``."""
    if tokens <= target_tokens:
        return text
    # Characters per token of this very text; 10 % slack for the note and uneven density.
    keep = int(len(text) * max(0, target_tokens) / max(tokens, 1) * 0.9) - 80
    return cut_middle(text, max(keep, 0))


def fit_request(messages: list[Message], budget: int, count: Count) -> list[Message]:
    """``messages`` cut until they take at most ``budget`` tokens.

    The largest message is cut first (its middle), the system prompt only when nothing
    else is left to cut. Returns the input itself when it already fits. Raises
    ``ContextError`` when even the cut request cannot fit (a window far too small).
    """
    if request_tokens(messages, count) <= budget:
        return messages
    out = [dict(m) for m in messages]
    for _ in range(4 * len(out) + 4):
        sizes = [count(m["content"]) for m in out]
        total = PER_REQUEST_TOKENS + sum(s + PER_MESSAGE_TOKENS for s in sizes)
        if total <= budget:
            return out
        excess = total - budget
        order = sorted(
            range(len(out)),
            key=lambda i: (out[i]["role"] != "system", sizes[i]),
            reverse=True,
        )
        # The largest non-system message that still has something to cut.
        target = next((i for i in order if len(out[i]["content"]) > MIN_KEEP_CHARS), None)
        if target is None:
            break
        text = out[target]["content"]
        goal = max(sizes[target] - excess, 0)
        cut = shrink_to(text, sizes[target], goal)
        if len(cut) >= len(text):  # the note would outweigh the cut: take it all but a stub
            cut = cut_middle(text, MIN_KEEP_CHARS // 2)
        if len(cut) >= len(text):
            break
        out[target]["content"] = cut
    if request_tokens(out, count) <= budget:
        return out
    raise ConfigurationError(
        f"a request cannot fit the model's window: {request_tokens(out, count):,} tokens "
        f"after cutting, {budget:,} available for the prompt (context_window too small?)"
    )

"""Kernel side: what keeps a kernel's messages to the host small (shipped as source).

Stdlib-only, like ``kernel_agent``: the host ships it as the module ``kernel_bounds`` of
``lmrepl_kernel``. ipykernel sends a cell's buffered output as one message, and the
shell sends tracebacks, displays and the execute reply as they are; these bounds keep
every one of them, and every request and result, under ``MAX_MESSAGE_BYTES`` (the host
drops anything bigger and replaces the kernel).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Any, cast

from . import kernel_protocol as protocol

# The host reads these many characters of a child's stream at most (head and tail kept).
STREAM_CAP = 1_000_000
#: The host drops any message from the kernel bigger than this (zmq ``MAXMSGSIZE``) and
#: then replaces the kernel; the agent keeps everything it sends below it.
MAX_MESSAGE_BYTES = 64 * 2**20
# What one request or result may take on the wire; the rest is room for the envelope.
SEND_LIMIT = MAX_MESSAGE_BYTES - 2**20
# A cell's printed output, head and tail together, is kept well inside one message even
# when every character needs a six-byte JSON escape.
OUTPUT_CAP_LIMIT = MAX_MESSAGE_BYTES // 16


def clip(text: str, limit: int = STREAM_CAP) -> str:
    """``text`` with its middle dropped past ``limit`` characters, and a note saying so."""
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]}\n... [{len(text) - 2 * half} characters dropped] ...\n{text[-half:]}"


def wire_size(text: str) -> int:
    """An upper bound of the bytes ASCII ``text`` (JSON from ``json.dumps``) takes once
    the kernel's session has JSON-encoded it again, after a repr at most."""
    return len(text) + 3 * (text.count("\\") + text.count('"') + text.count("'"))


class BoundedStream:
    """Bounds what a cell writes to one of ipykernel's output streams.

    ipykernel buffers a stream's writes and sends them as one message, so a 200 MB print
    would reach the host whole. This wraps the stream's ``write``: the first half of the
    cap passes at once, later text keeps only a rolling tail, which ``finish`` (at the
    end of the cell) sends after a note of how much was dropped.
    """

    def __init__(self, stream: Any, cap: int) -> None:
        cls = type(stream)
        self.stream = stream
        self._write = cls.write.__get__(stream, cls)
        self.lock = threading.Lock()
        self.cap = cap
        self.passed = 0
        self.tail: deque[str] = deque()
        self.tail_len = 0
        self.dropped = 0
        # A subclass, not an instance attribute, which IPython's tee (see ``boot``) would
        # reset after the cell that installs it.
        stream._lmrepl_bound = self
        stream.__class__ = type(cls.__name__, (cls,), {"write": _write_bounded})

    def write(self, text: str) -> int | None:
        """Pass the head through, keep the tail, count the rest."""
        if not isinstance(text, str):
            return cast("int | None", self._write(text))  # the stream raises TypeError
        n = len(text)
        with self.lock:
            half = self.cap // 2
            head = min(max(half - self.passed, 0), n)
            self.passed += head
            if head < n:
                keep = max(head, n - half)
                self.dropped += keep - head
                self.tail.append(text[keep:])
                self.tail_len += n - keep
                while self.tail_len > half:
                    first = self.tail.popleft()
                    cut = min(len(first), self.tail_len - half)
                    if cut < len(first):
                        self.tail.appendleft(first[cut:])
                    self.tail_len -= cut
                    self.dropped += cut
        if head:
            self._write(text if head == n else text[:head])
        return n

    def finish(self) -> None:
        """The cell ended: send the note and the kept tail, start afresh."""
        with self.lock:
            tail, dropped = "".join(self.tail), self.dropped
            self.tail.clear()
            self.passed = self.tail_len = self.dropped = 0
        if dropped:
            self._write(f"\n... [{dropped} characters dropped] ...\n")
        if tail:
            self._write(tail)


def _write_bounded(stream: Any, text: str) -> int | None:
    """``write`` of a bounded stream."""
    bound: BoundedStream = stream._lmrepl_bound
    return bound.write(text)


def too_big(text: str) -> str:
    """The error for a result too big for one message."""
    return (
        f"the result takes {wire_size(text):,} bytes, over the {SEND_LIMIT:,} one "
        "message to the host may carry"
    )


def bound_tracebacks(shell: Any, output_cap: Callable[[], int]) -> None:
    """Keep a main cell's error message (traceback and value) to the output cap."""
    show = shell._showtraceback

    def capped(etype: Any, evalue: Any, stb: Any) -> Any:
        limit = output_cap() // 2
        frames = [clip(str(f), limit) for f in stb] if isinstance(stb, list) else stb
        if isinstance(frames, list) and len(frames) > 200:
            frames = [*frames[:100], "... [frames dropped] ...\n", *frames[-100:]]
        try:
            # The shell only takes str(evalue), for the error message's ``evalue``.
            value: Any = clip(str(evalue), limit)
        except Exception:
            value = evalue
        return show(etype, value, frames)

    shell._showtraceback = capped


def bound_displays(shell: Any, output_cap: Callable[[], int]) -> None:
    """Keep a display's text (a cell's echo, ``display()``) to the output cap."""
    hook, pub = shell.displayhook, shell.display_pub
    write_format_data, publish = hook.write_format_data, pub.publish

    def bundle(data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        # Room for an echo the repr caps of ``_cap_reprs`` already shortened.
        limit = 2 * output_cap()
        out = {}
        for key, value in data.items():
            if key == "text/plain" and isinstance(value, str):
                value = clip(value, limit)
            elif key != protocol.POLL_MIME and isinstance(value, str) and len(value) > limit:
                continue  # the host reads text/plain only; too big to send whole
            out[key] = value
        return out

    def capped_format_data(format_dict: Any, *args: Any, **kwargs: Any) -> Any:
        return write_format_data(bundle(format_dict), *args, **kwargs)

    def capped_publish(*args: Any, **kwargs: Any) -> Any:
        if "data" in kwargs:
            kwargs["data"] = bundle(kwargs["data"])
        elif args:
            args = (bundle(args[0]), *args[1:])
        return publish(*args, **kwargs)

    hook.write_format_data = capped_format_data
    pub.publish = capped_publish


def cap_error(result: Any, output_cap: int) -> None:
    """The execute reply repeats the exception's text: cap it as the traceback is."""
    for name in ("error_before_exec", "error_in_exec"):
        err = getattr(result, name, None)
        if err is None:
            continue
        try:
            text = str(err)
        except Exception:
            continue
        if len(text) > output_cap // 2:
            # Same class name (the host reads ``ename``), capped text.
            stand_in = type(type(err).__name__, (Exception,), {})
            setattr(result, name, stand_in(clip(text, output_cap // 2)))

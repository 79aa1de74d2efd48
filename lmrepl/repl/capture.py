"""Per-thread capture of ``sys.stdout``/``sys.stderr`` for in-process REPLs.

Swapping the process-wide streams per cell makes parallel REPLs mix or lose output.
Instead, one router is installed once per stream; each write goes to the buffer of
the thread that is capturing, or to the original stream otherwise. A buffer keeps the
head and a rolling tail of what a cell prints, so a 200 MB print costs no 200 MB copy.
"""

from __future__ import annotations

import io
import sys
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

_local = threading.local()
_install_lock = threading.Lock()


class BoundedText(io.TextIOBase):
    """A text buffer that keeps the first and the last ``cap // 2`` characters written."""

    def __init__(self, cap: int | None = None) -> None:
        self.half = None if cap is None else max(cap, 2) // 2
        self.head: list[str] = []
        self.head_len = 0
        self.tail: deque[str] = deque()
        self.tail_len = 0
        self.dropped = 0

    def write(self, s: str) -> int:
        """Append ``s`` (its middle is dropped once the buffer is full)."""
        n = len(s)
        if self.half is None:
            self.head.append(s)
            return n
        room = min(max(self.half - self.head_len, 0), n)
        if room:
            self.head.append(s if room == n else s[:room])
            self.head_len += room
        if room < n:
            keep = max(room, n - self.half)
            self.dropped += keep - room
            self.tail.append(s[keep:])
            self.tail_len += n - keep
            while self.tail_len > self.half:
                first = self.tail.popleft()
                cut = min(len(first), self.tail_len - self.half)
                if cut < len(first):
                    self.tail.appendleft(first[cut:])
                self.tail_len -= cut
                self.dropped += cut
        return n

    def getvalue(self) -> str:
        """What was kept, with a note where characters were dropped."""
        note = f"\n... [{self.dropped} characters dropped] ...\n" if self.dropped else ""
        return "".join(self.head) + note + "".join(self.tail)

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False


class _Router(io.TextIOBase):
    """A text stream that forwards to the current thread's capture buffer."""

    def __init__(self, name: str, original: TextIO) -> None:
        self._name = name
        self.original = original

    def _target(self) -> TextIO | BoundedText:
        buf: BoundedText | None = getattr(_local, self._name, None)
        return buf if buf is not None else self.original

    def write(self, s: str) -> int:
        return self._target().write(s)

    def flush(self) -> None:
        self._target().flush()

    def isatty(self) -> bool:
        return self._target().isatty()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.original, "encoding", "utf-8") or "utf-8"

    def fileno(self) -> int:
        return self.original.fileno()

    def __getattr__(self, name: str) -> object:
        # Everything else belongs to the stream we wrap: inside a Jupyter kernel,
        # IPython calls ``sys.stdout.set_parent(...)`` before every cell.
        return getattr(self.original, name)


def _ensure_installed() -> None:
    with _install_lock:
        if not isinstance(sys.stdout, _Router):
            sys.stdout = _Router("stdout", sys.stdout)
        if not isinstance(sys.stderr, _Router):
            sys.stderr = _Router("stderr", sys.stderr)


@contextmanager
def capture_output(cap: int | None = None) -> Iterator[tuple[BoundedText, BoundedText]]:
    """Capture what this thread prints while the block runs (head and tail of ``cap``
    characters per stream; all of it when ``cap`` is None)."""
    _ensure_installed()
    out, err = BoundedText(cap), BoundedText(cap)
    prev_out = getattr(_local, "stdout", None)
    prev_err = getattr(_local, "stderr", None)
    _local.stdout, _local.stderr = out, err
    try:
        yield out, err
    finally:
        _local.stdout, _local.stderr = prev_out, prev_err

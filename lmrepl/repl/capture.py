"""Per-thread capture of ``sys.stdout``/``sys.stderr`` for in-process REPLs.

Swapping the process-wide streams per cell makes parallel REPLs mix or lose output.
Instead, one router is installed once per stream; each write goes to the buffer of
the thread that is capturing, or to the original stream otherwise.
"""

from __future__ import annotations

import io
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

_local = threading.local()
_install_lock = threading.Lock()


class _Router(io.TextIOBase):
    """A text stream that forwards to the current thread's capture buffer."""

    def __init__(self, name: str, original: TextIO) -> None:
        self._name = name
        self.original = original

    def _target(self) -> TextIO:
        buf: io.StringIO | None = getattr(_local, self._name, None)
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
def capture_output() -> Iterator[tuple[io.StringIO, io.StringIO]]:
    """Capture what this thread prints while the block runs."""
    _ensure_installed()
    out, err = io.StringIO(), io.StringIO()
    prev_out = getattr(_local, "stdout", None)
    prev_err = getattr(_local, "stderr", None)
    _local.stdout, _local.stderr = out, err
    try:
        yield out, err
    finally:
        _local.stdout, _local.stderr = prev_out, prev_err

"""Plain helpers of the kernel protocol: messages, bounded streams, host-call workers."""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import zmq

from lmrepl.repl.base import clean_text
from lmrepl.repl.kernel_channels import Kernel, link_of
from lmrepl.repl.kernel_validate import BadMessage, recv

__all__ = [
    "TICK_MS",
    "WORKERS",
    "BadMessage",
    "Drive",
    "Faults",
    "KernelGone",
    "Stream",
    "clean_traceback",
    "recv",
    "run_silent",
]

_INTERNAL = ("site-packages/ipykernel", "site-packages/IPython", "<lmrepl-")
#: Liveness checks while waiting, in milliseconds.
TICK_MS = 50


class Workers:
    """Reused threads for host calls, never bounded: a call may block on nested calls
    (``rlm_query`` children), so a fixed-size pool could deadlock. Starting a thread
    per call costs ~1-2 ms on a busy 2-core machine; handing to an idle one does not."""

    def __init__(self, idle_s: float = 30.0) -> None:
        self._jobs: queue.SimpleQueue[tuple[Callable[..., None], tuple[Any, ...]]] = (
            queue.SimpleQueue()
        )
        self._lock = threading.Lock()
        self._idle = 0
        self._idle_s = idle_s

    def submit(self, fn: Callable[..., None], *args: Any) -> None:
        """Run ``fn(*args)`` on an idle worker or a new one."""
        with self._lock:
            self._jobs.put((fn, args))
            if self._idle:
                self._idle -= 1
                return
        threading.Thread(target=self._run, name="lmrepl-host-call", daemon=True).start()

    def _run(self) -> None:
        while True:
            try:
                fn, args = self._jobs.get(timeout=self._idle_s)
            except queue.Empty:
                with self._lock:
                    if self._jobs.empty() and self._idle:
                        self._idle -= 1
                        return
                continue
            fn(*args)
            with self._lock:
                self._idle += 1


#: The process-wide host-call workers.
WORKERS = Workers()


class KernelGone(Exception):
    """The kernel died or stopped answering; ``outcome`` is "died" or "killed"."""

    def __init__(self, outcome: str) -> None:
        super().__init__(f"kernel {outcome}")
        self.outcome = outcome


def clean_traceback(frames: list[str]) -> str:
    """A kernel traceback as plain text without ipykernel/IPython/lmrepl frames."""
    cleaned = [clean_text(str(f)) for f in frames]
    kept = [f for f in cleaned if not any(m in f for m in _INTERNAL)]
    return "".join(f if f.endswith("\n") else f + "\n" for f in kept).rstrip("\n")


class Stream:
    """Collected stream text, bounded: keeps a head and a rolling tail past ``cap``."""

    def __init__(self, cap: int) -> None:
        self.cap = max(cap, 1000)
        self.head: list[str] = []
        self.head_len = 0
        self.tail: deque[str] = deque()
        self.tail_len = 0
        self.dropped = 0

    def add(self, text: str) -> None:
        """Append ``text``."""
        room = self.cap // 2 - self.head_len
        if room > 0:
            self.head.append(text[:room])
            self.head_len += min(room, len(text))
            text = text[room:]
        if not text:
            return
        self.tail.append(text)
        self.tail_len += len(text)
        while self.tail_len > self.cap // 2 and len(self.tail) > 1:
            self.tail_len -= len(first := self.tail.popleft())
            self.dropped += len(first)
        if self.tail_len > self.cap // 2:
            cut = self.tail_len - self.cap // 2
            self.tail[0] = self.tail[0][cut:]
            self.tail_len -= cut
            self.dropped += cut

    def text(self) -> str:
        """Everything kept, with a marker where text was dropped."""
        mid = f"\n... [{self.dropped} characters dropped] ...\n" if self.dropped else ""
        return "".join(self.head) + mid + "".join(self.tail)


@dataclass
class Drive:
    """What one execute request produced."""

    outcome: str = "ok"  # ok | error | timeout | killed | died
    reply: dict[str, Any] = field(default_factory=dict)
    stdout: str = ""
    stderr: str = ""
    display: str | None = None
    error: str | None = None
    ename: str | None = None
    poll: dict[str, Any] | None = None
    #: What was wrong with messages the kernel sent during the request (see ``Faults``).
    faults: list[str] = field(default_factory=list)


class Faults:
    """Problems with a cell's messages (sentences), told to the model: the first few, then
    a count."""

    KEEP = 5

    def __init__(self, into: list[str]) -> None:
        self.items = into
        self.more = 0

    def add(self, what: str) -> None:
        """Record one problem."""
        if len(self.items) < self.KEEP:
            self.items.append(what)
        else:
            self.more += 1

    def text(self) -> str:
        """The notice lines (empty when there was no problem)."""
        lines = [f"[lmrepl] {f}" for f in self.items]
        if self.more:
            lines.append(f"[lmrepl] ... and {self.more} more problems with its messages")
        return "\n".join(lines)


def run_silent(
    handle: Kernel, code: str, user_expressions: dict[str, str], timeout: float
) -> dict[str, Any]:
    """A silent execute with no host calls (bootstrap); returns the reply content."""
    link = link_of(handle)
    content = {
        "code": code,
        "silent": True,
        "store_history": False,
        "user_expressions": user_expressions,
        "allow_stdin": True,
        "stop_on_error": True,
    }
    msg_id = link.execute(content, {}, None)
    # Replies come in the first source (a local kernel's shell channel).
    source = link.sources()[0]
    deadline = time.monotonic() + timeout
    while True:
        if not handle.alive():
            raise KernelGone("died")
        if time.monotonic() > deadline:
            raise TimeoutError(f"kernel did not answer within {timeout:.1f} s")
        if not zmq.select([source.pollable], [], [], TICK_MS / 1000)[0]:
            continue
        for _ in range(500):
            try:
                msg = source.recv()
            except BadMessage:
                continue  # not ours: the bootstrap's reply is checked below
            if msg is None:
                break
            if _is_reply(msg, msg_id):
                reply: dict[str, Any] = msg["content"]
                if reply.get("status") != "ok":
                    raise RuntimeError(clean_traceback(list(reply.get("traceback") or [])))
                return reply


def _is_reply(msg: dict[str, Any], msg_id: str) -> bool:
    """True for the ``execute_reply`` to ``msg_id`` (its fields of the right types)."""
    header, parent, content = msg.get("header"), msg.get("parent_header"), msg.get("content")
    return (
        isinstance(header, dict)
        and isinstance(parent, dict)
        and isinstance(content, dict)
        and parent.get("msg_id") == msg_id
        and header.get("msg_type") == "execute_reply"
    )

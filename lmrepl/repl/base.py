"""The REPL interface every environment implements (local exec, ipykernel)."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Literal, Protocol

# Defined with their payloads in the kernel protocol; re-exported here for callers.
from lmrepl.repl.kernel_protocol import HOST_FUNCTIONS as HOST_FUNCTIONS

CellStatus = Literal["ok", "error", "timeout", "restarted", "died", "cancelled"]


class HostBridge(Protocol):
    """What a REPL calls when model code needs the host (model calls, host-side tools).

    ``fn`` is one of ``HOST_FUNCTIONS``; ``payload`` and the return value are JSON
    data, so the same bridge serves an in-process REPL and a kernel elsewhere.
    Raising an exception makes the call fail inside model code with its message.
    """

    def call(self, fn: str, payload: dict[str, Any]) -> Any:
        """Run host function ``fn`` with ``payload`` and return its JSON result."""
        ...


@dataclass
class CellResult:
    """What one code block produced."""

    stdout: str = ""
    stderr: str = ""
    #: The value of the cell's last bare expression (its repr), as a notebook shows it.
    display: str | None = None
    #: Trimmed traceback text without ANSI codes, when the cell raised.
    error: str | None = None
    status: CellStatus = "ok"
    duration: float = 0.0
    #: True when the cell submitted an answer (``answer["ready"]``, FINAL, FINAL_VAR).
    submitted: bool = False
    answer: str | None = None
    #: The draft in ``answer["content"]`` after the cell (partial answer when a limit hits).
    draft: str | None = None
    #: A message for the model from the REPL itself (timeout, restart, lost variables).
    notice: str | None = None

    def text(self, max_chars: int) -> str:
        """The output as the model sees it: control characters removed, truncated to
        ``max_chars``."""
        parts = [p for p in (self.stdout, self.stderr) if p]
        if self.display is not None:
            parts.append(self.display)
        if self.error:
            parts.append(self.error)
        if self.notice:
            parts.append(f"[lmrepl] {self.notice}")
        # The one place cell output becomes model-visible text, for every REPL.
        body = "\n".join(clean_text(p).rstrip("\n") for p in parts) if parts else "(no output)"
        return truncate(body, max_chars)


# Terminal escape sequences: CSI (colours, cursor moves, screen clears), OSC (titles,
# hyperlinks, clipboard) and DCS/SOS/PM/APC strings, in 7-bit and 8-bit forms, then any
# other ESC sequence. String bodies are bounded so an unterminated one costs little.
_ESCAPES = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]"
    r"|(?:\x1b\]|\x9d)[^\x07\x1b\x9c]{0,4096}(?:\x07|\x1b\\|\x9c)"
    r"|(?:\x1b[PX^_]|[\x90\x98\x9e\x9f])[^\x1b\x9c]{0,4096}(?:\x1b\\|\x9c)"
    r"|\x1b[ -/]*[0-~]"
)
# C0 and C1 controls and DEL, except tab and newline (carriage returns are handled first).
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def clean_text(text: str) -> str:
    """``text`` without terminal escape sequences or control characters, for the model.

    Cell output is untrusted (a prompt injection can print anything): escape sequences
    could hide or rewrite text where a person reads the transcript, and control bytes
    have no meaning in a prompt. ``\\r\\n`` and a lone ``\\r`` become ``\\n``; tab and
    newline stay.
    """
    if _CONTROLS.search(text) is None:
        return text
    text = _ESCAPES.sub("", text.replace("\r\n", "\n"))
    return _CONTROLS.sub("", text.replace("\r", "\n"))


def truncate(text: str, max_chars: int) -> str:
    """Keep the head and tail of ``text`` so it fits ``max_chars``; say how much was cut."""
    if max_chars <= 0 or len(text) <= max_chars:
        return text
    marker = f"\n... [{len(text) - max_chars} characters truncated] ...\n"
    keep = max(max_chars - len(marker), 0)
    head = keep * 2 // 3
    tail = keep - head
    return text[:head] + marker + (text[-tail:] if tail else "")


class REPL(ABC):
    """A place where model code runs, with the names of SPEC §4 defined.

    Lifecycle: ``start(bridge)`` → ``add_context``/``set_tools``/``set_history`` →
    ``execute`` many times → ``close()``. Implementations must make ``close`` safe
    to call twice and from ``__exit__``.
    """

    #: Environment name as users write it (``"local"``, ``"kernel"``).
    name: str = "repl"

    @abstractmethod
    def start(self, bridge: HostBridge) -> None:
        """Make the REPL ready; model calls from code go to ``bridge``.

        Calling it again on a started REPL (the next turn of a persistent session)
        only replaces the bridge; contexts and variables stay.
        """

    @abstractmethod
    def add_context(self, value: Any) -> int:
        """Load one context; returns its index (``context_<index>``; 0 is also ``context``).

        Raises ``lmrepl.errors.ContextError`` when the value cannot be shipped.
        """

    @abstractmethod
    def set_tools(self, tools: dict[str, Any]) -> None:
        """Define custom tools: callables are proxied to the host, values shipped once."""

    @abstractmethod
    def set_history(self, history: list[dict[str, Any]]) -> None:
        """Bind ``history`` (earlier turns of a persistent session)."""

    @abstractmethod
    def execute(self, code: str, timeout: float | None = None) -> CellResult:
        """Run ``code`` with a per-cell ``timeout`` (seconds; None = no limit)."""

    @abstractmethod
    def reset_submission(self) -> None:
        """Clear a submitted answer so the next turn starts unsubmitted."""

    @abstractmethod
    def user_variables(self) -> dict[str, str]:
        """Names the model created, with their type names."""

    def draft(self) -> str | None:
        """The draft in ``answer["content"]`` now (used when a run is interrupted)."""
        return None

    def interrupt(self) -> None:
        """Ask the running cell to stop (best effort; used when a run is cancelled)."""

    def make_child(self) -> REPL | None:
        """A REPL for a child RLM sharing this one's resources, or None for a fresh one.

        The kernel REPL returns a private namespace inside its own kernel, driven while
        the parent's cell waits in ``rlm_query``; the default asks for a new REPL.
        """
        return None

    @abstractmethod
    def close(self) -> None:
        """Release every resource (threads, processes, files)."""

    def __enter__(self) -> REPL:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

"""The ``replay`` backend: scripted or recorded replies, for tests and offline demos."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from lmrepl.clients.base import CallOptions, Completion, Message, ModelClient, estimate_tokens
from lmrepl.errors import BackendError

#: What ``usage`` may be: "estimate"/None, tokens per call for input and output, or a dict.
UsageSetting = str | int | dict[str, int] | None
Responder = Callable[[list[Message]], str]


def load_recording(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The records of a JSONL file written by :class:`RecordingClient`."""
    records: list[dict[str, Any]] = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{lineno}: not a JSON line ({exc})") from exc
            if not isinstance(rec, dict) or not isinstance(rec.get("reply"), str):
                raise ValueError(f"{path}:{lineno}: a record needs a string 'reply'")
            records.append(rec)
    return records


class ReplayClient(ModelClient):
    """Serves replies without a model: a list in order, a ``responder``, or a recording.

    ``replies`` may also hold exception instances, which are raised in their turn (to
    script failures). A recording (``path``) is matched by messages first — so parallel
    calls that arrive out of their recorded order still get their own replies — and
    otherwise served in recorded order.
    """

    backend = "replay"

    def __init__(
        self,
        replies: Sequence[str | BaseException] | None = None,
        *,
        responder: Responder | None = None,
        path: str | os.PathLike[str] | None = None,
        model_name: str = "replay",
        delay: float = 0.0,
        usage: UsageSetting = None,
    ) -> None:
        super().__init__(model_name)
        self._replies = list(replies) if replies is not None else None
        self._responder = responder
        self._records = load_recording(path) if path is not None else None
        self._used = [False] * len(self._records or [])
        self.delay = float(delay)
        self.usage = usage
        self._lock = threading.Lock()
        self._next = 0
        #: Number of calls served so far.
        self.calls = 0

    def complete(self, messages: list[Message], options: CallOptions | None = None) -> Completion:
        """The next scripted reply; ``BackendError`` when the script has run out."""
        opts = options or CallOptions()
        if self.delay > 0:
            if opts.timeout is not None and opts.timeout < self.delay:
                time.sleep(max(0.0, opts.timeout))
                raise BackendError(
                    f"replay backend, model {self.model_name!r}: timeout "
                    f"(delay {self.delay}s > timeout {opts.timeout}s)",
                    backend=self.backend,
                    model=self.model_name,
                )
            time.sleep(self.delay)
        recorded: dict[str, Any] | None = None
        if self._responder is not None:
            text = self._responder(messages)
            with self._lock:
                self.calls += 1
        else:
            item, recorded = self._take(messages)
            if isinstance(item, BaseException):
                raise item
            text = item
        return self._completion(messages, text, recorded)

    def _take(self, messages: list[Message]) -> tuple[str | BaseException, dict[str, Any] | None]:
        """Claim the next reply (thread-safe)."""
        with self._lock:
            if self._replies is not None:
                if self._next >= len(self._replies):
                    raise self._exhausted(len(self._replies))
                item = self._replies[self._next]
                self._next += 1
                self.calls += 1
                return item, None
            records = self._records or []
            index = next(
                (
                    i
                    for i, r in enumerate(records)
                    if not self._used[i] and r.get("messages") == messages
                ),
                None,
            )
            if index is None:
                index = next((i for i, used in enumerate(self._used) if not used), None)
            if index is None:
                raise self._exhausted(len(records))
            self._used[index] = True
            self.calls += 1
            rec = records[index]
            return str(rec["reply"]), rec

    def _exhausted(self, n: int) -> BackendError:
        return BackendError(
            f"replay backend, model {self.model_name!r}: all {n} scripted replies were used; "
            f"call {n + 1} has no reply (add more replies or use a responder)",
            backend=self.backend,
            model=self.model_name,
        )

    def _completion(
        self, messages: list[Message], text: str, recorded: dict[str, Any] | None
    ) -> Completion:
        """Attach usage: recorded, fixed, or estimated."""
        if recorded is not None and isinstance(recorded.get("usage"), dict) and self.usage is None:
            u = recorded["usage"]
            return Completion(
                text=text,
                model=self.model_name,
                input_tokens=int(u.get("input_tokens", 0)),
                output_tokens=int(u.get("output_tokens", 0)),
                cost=u.get("cost"),
                usage_reported=bool(u.get("usage_reported", True)),
            )
        if isinstance(self.usage, int):
            return Completion(text, self.model_name, self.usage, self.usage)
        if isinstance(self.usage, dict):
            return Completion(
                text,
                self.model_name,
                int(self.usage.get("input_tokens", 0)),
                int(self.usage.get("output_tokens", 0)),
            )
        prompt = estimate_tokens("\n".join(m.get("content", "") for m in messages))
        return Completion(
            text, self.model_name, prompt, estimate_tokens(text), usage_reported=False
        )


class RecordingClient(ModelClient):
    """Wraps any client and appends each successful call to a JSONL file for later replay."""

    def __init__(self, inner: ModelClient, path: str | os.PathLike[str]) -> None:
        super().__init__(inner.model_name)
        self.inner = inner
        self.backend = inner.backend
        self.path = Path(path)
        self._lock = threading.Lock()

    def complete(self, messages: list[Message], options: CallOptions | None = None) -> Completion:
        """Call the wrapped client and record messages, reply, model and usage."""
        result = self.inner.complete(messages, options)
        record = {
            "messages": [dict(m) for m in messages],
            "reply": result.text,
            "model": result.model,
            "usage": {
                "input_tokens": result.input_tokens,
                "output_tokens": result.output_tokens,
                "cost": result.cost,
                "usage_reported": result.usage_reported,
            },
        }
        line = json.dumps(record, ensure_ascii=False) + "\n"
        with self._lock, self.path.open("a", encoding="utf-8") as fh:
            fh.write(line)
        return result

    @property
    def context_window(self) -> int | None:
        """The wrapped client's window (unless one is set here)."""
        return self._context_window or self.inner.context_window

    @context_window.setter
    def context_window(self, tokens: int | None) -> None:
        self._context_window = tokens

    def count_tokens(self, text: str) -> int:
        """Counted by the wrapped client."""
        return self.inner.count_tokens(text)

    def check(self) -> None:
        """Delegates to the wrapped client."""
        self.inner.check()

    def close(self) -> None:
        """Closes the wrapped client."""
        self.inner.close()

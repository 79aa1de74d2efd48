"""One execute request while the kernel driver serves it (see ``kernel_session``).

``Run`` holds what the driver knows about the request: the output so far, the reply, the
request the kernel waits on, instructions handed out, and the host calls (``Calls``: at
most one running per namespace). Every message it handles was read bounded by the
kernel's link (``kernel_channels``) and is checked against ``kernel_validate``'s models
first: a malformed one is a fault of this request, reported to the model, never an
exception out of the driver.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections import deque
from typing import Any, Protocol

from lmrepl.repl import kernel_protocol as protocol
from lmrepl.repl import kernel_validate as validate
from lmrepl.repl.base import HostBridge
from lmrepl.repl.kernel_channels import Link, Source, disconnected
from lmrepl.repl.kernel_messages import (
    WORKERS,
    BadMessage,
    Drive,
    Faults,
    Stream,
    clean_traceback,
)

__all__ = ["PARENT_ENDED", "Calls", "Instruction", "Run", "Session", "disconnected"]

#: The result of an instruction still pending when the request it rode on ended.
PARENT_ENDED = protocol.OpResult(ok=False, error="the parent cell ended first")


class Instruction:
    """An operation for a busy kernel, handed over as the reply to a pending request."""

    def __init__(self, op: protocol.Op, data: bytes | memoryview | None = None) -> None:
        self.op = op
        if data is not None:
            self.op = {**op, "data": base64.b64encode(data).decode("ascii")}
        self.id = f"e{id(self)}-{time.monotonic_ns()}"
        self.sent = False
        self.done = False
        self.result: protocol.OpResult | None = None


class Calls:
    """The host calls of one request: one running per namespace, results by call id.

    The worker clears its namespace before it stores the result, so the kernel's next
    call (sent only after that result went back) never finds the namespace busy.
    """

    LIMIT = 256

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: dict[int, str] = {}
        self._results: dict[str, protocol.CallResult] = {}

    def start(self, ns: int, cid: str) -> bool:
        """Claim namespace ``ns`` for call ``cid``; False when a call of it still runs."""
        with self._lock:
            if ns in self._running:
                return False
            self._running[ns] = cid
            # A result stored under this id earlier (a refused raw call) is not this one's.
            self._results.pop(cid, None)
            return True

    def finish(self, ns: int, result: protocol.CallResult) -> None:
        """A call of namespace ``ns`` returned ``result``."""
        with self._lock:
            if self._running.get(ns) == result["id"]:
                del self._running[ns]
            self._store(result)

    def release(self, ns: int) -> None:
        """Namespace ``ns`` no longer waits for its call (its cell ended: a child's
        timeout interrupts a pending call), so the next one may run."""
        with self._lock:
            self._running.pop(ns, None)

    def refuse(self, cid: str, error: str) -> None:
        """Call ``cid`` does not run: its result is ``error``."""
        with self._lock:
            self._store(protocol.CallResult(id=cid, ok=False, error=error))

    def take(self, cid: str) -> protocol.CallResult | None:
        """The result of call ``cid`` if it is there (removed)."""
        with self._lock:
            return self._results.pop(cid, None)

    def _store(self, result: protocol.CallResult) -> None:
        self._results[result["id"]] = result
        # Refusals the kernel never asks for (a flood of raw calls) must not pile up.
        while len(self._results) > self.LIMIT:
            self._results.pop(next(iter(self._results)))


class Session(Protocol):
    """What a ``Run`` uses of its ``KernelSession`` (the driver)."""

    link: Link
    stream_cap: int
    bridges: dict[int, HostBridge]
    _cond: threading.Condition
    _queue: deque[Instruction]

    def _wake(self) -> None: ...


class Run:
    """The state of one execute request while the driver serves it."""

    #: Messages read from one channel before the driver looks at the clock again.
    BATCH = 500

    def __init__(self, session: Session, msg_id: str, *, idle: bool) -> None:
        self.session = session
        self.link = session.link
        self.msg_id = msg_id
        self.drive = Drive()
        self.faults = Faults(self.drive.faults)
        self.out, self.err = Stream(session.stream_cap), Stream(session.stream_cap)
        self.calls = Calls()
        self.pending: dict[str, Instruction] = {}
        self.waiting: str | None = None
        self.reply: dict[str, Any] | None = None
        self.idle = idle

    def finished(self) -> bool:
        """The reply and (for a cell) the idle status arrived."""
        return self.reply is not None and self.idle

    def answer(
        self, value: protocol.ExecInstruction | protocol.CallResult | protocol.AbortReply
    ) -> None:
        """Reply to the kernel's pending request."""
        self.link.input(json.dumps(value))
        self.waiting = None

    def serve(self, *, interrupted: bool) -> None:
        """Answer the pending request: abort, a finished call's result, or an instruction."""
        if self.waiting is None:
            return
        if interrupted:
            self.answer(protocol.AbortReply(id=self.waiting, abort=True))
            return
        result = self.calls.take(self.waiting)
        if result is not None:
            self.answer(result)
            return
        session = self.session
        with session._cond:
            instr = session._queue.popleft() if session._queue else None
            if instr is not None:
                instr.sent = True
        if instr is not None:
            self.pending[instr.id] = instr
            self.answer(protocol.ExecInstruction(t=protocol.REPLY_EXEC, id=instr.id, op=instr.op))

    def read(self, source: Source) -> None:
        """Handle the messages waiting in ``source`` (a bounded batch)."""
        for _ in range(self.BATCH):
            try:
                msg = source.recv()
                if msg is None:
                    return
                kind, parent, content = validate.envelope(msg)
                if parent == self.msg_id:
                    self.on_message(kind, content)
            except BadMessage as exc:
                self.faults.add(f"the kernel sent a malformed message ({exc}); it was ignored")

    def on_message(self, kind: str, content: dict[str, Any]) -> None:
        """One message of this request (already known to be ours)."""
        drive = self.drive
        if kind == "execute_reply":
            try:
                validate.content(kind, content)
            except BadMessage:
                # The request did end; without a usable reply it counts as failed.
                self.reply = {"status": "error"}
                raise
            self.reply = content
        elif kind == "status":
            state = validate.content(kind, content).execution_state
            self.idle = self.idle or state == "idle"
        elif kind == "stream":
            stream = validate.content(kind, content)
            (self.err if stream.name == "stderr" else self.out).add(stream.text)
        elif kind in ("execute_result", "display_data"):
            data = validate.content(kind, content).data
            text = data.get("text/plain")
            if text is not None and not isinstance(text, str):
                raise BadMessage(f"{kind}: text/plain must be a string")
            if kind == "execute_result":
                drive.display = text
            elif protocol.POLL_MIME in data:
                drive.poll = validate.poll(data[protocol.POLL_MIME])
            elif text is not None:
                self.out.add(text + "\n")
        elif kind == "error":
            error = validate.content(kind, content)
            drive.ename = error.ename
            drive.error = clean_traceback(error.traceback)
        elif kind == "input_request":
            try:
                prompt = validate.content(kind, content).prompt
            except BadMessage:
                self.link.input("")  # whoever waits on stdin must not hang
                self.waiting = None
                raise
            self.on_request(prompt)

    def on_request(self, prompt: str) -> None:
        """A request on the stdin channel: a host call, an instruction's result, a wait."""
        if not prompt.startswith(protocol.MARKER):
            # Plain input() from model code: nobody can type; answer with an empty line.
            self.link.input("")
            self.waiting = None
            return
        try:
            req = validate.request(prompt)
        except BadMessage as exc:
            # Whoever waits on stdin gets an answer, one the agent never takes for the
            # result of the call it waits for (no such id).
            error = f"the host refused a malformed request: {exc}"
            self.answer(protocol.CallResult(id="", ok=False, error=error))
            raise
        if isinstance(req, validate.CallRequest):
            self.start_call(req)
        elif isinstance(req, validate.DoneRequest):
            instr = self.pending.pop(req.id, None)
            if instr is not None:
                if instr.op.get("op") == protocol.OP_CELL:
                    self.calls.release(int(instr.op.get("ns", 0)))
                with self.session._cond:
                    instr.result = req.op_result()
                    instr.done = True
                    self.session._cond.notify_all()
        self.waiting = req.wait

    def start_call(self, req: validate.CallRequest) -> None:
        """Run a host call on a worker, unless its namespace is unknown or busy."""
        bridge = self.session.bridges.get(req.ns)
        if bridge is None:
            error = f"there is no namespace {req.ns}"
        elif not self.calls.start(req.ns, req.id):
            # A legitimate agent sends one call at a time per namespace.
            error = f"namespace {req.ns} already has a host call running (one at a time)"
        else:
            WORKERS.submit(self._call, bridge, req)
            return
        self.calls.refuse(req.id, error)
        self.faults.add(f"a host call was refused: {error}")

    def _call(self, bridge: HostBridge, req: validate.CallRequest) -> None:
        """On a worker: run the call, hand its result to the driver."""
        try:
            value = bridge.call(req.fn, dict(req.payload))
            json.dumps(value)
            result = protocol.CallResult(id=req.id, ok=True, value=value)
        except Exception as exc:
            result = protocol.CallResult(id=req.id, ok=False, error=str(exc) or type(exc).__name__)
        self.calls.finish(req.ns, result)
        self.session._wake()

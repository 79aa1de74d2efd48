"""The host side of the kernel protocol: one driver loop per kernel over its channels.

Everything a kernel sends is untrusted input (SPEC §8): model code can reach the
kernel's session and sockets and send any message. The driver reads messages bounded and
checks them (``kernel_validate``); what is wrong with them is told to the model as a
fault of the cell (``kernel_run``); host calls run at most one at a time per namespace;
and a connection libzmq dropped for an oversized message ends the kernel, which the
REPL replaces.

One thread at a time *drives* a kernel: it sends an execute request and serves the
shell, IOPub and stdin channels until the reply (and, for cells, the idle status)
arrives. Host calls from the kernel (stdin ``input_request``) run ``bridge.call`` on a
worker thread, so the driver keeps enforcing the deadline and watching the process.
Other threads that need the kernel while it is busy (child REPLs, context loads for a
child) put an *instruction* on one queue; the driver hands it to the kernel as the
reply to a pending host call, and the kernel reports the result in its next request.
The host never unpickles anything the kernel sent: replies are JSON. The messages are
defined in ``kernel_protocol``. The driver reaches the kernel only through its link
(``kernel_channels``): zmq sockets for a local kernel, a websocket for one behind a
Jupyter gateway (``gateway_channels``).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import uuid
from collections import deque
from typing import Any

import zmq

from lmrepl.repl import kernel_protocol as protocol
from lmrepl.repl import kernel_validate as validate
from lmrepl.repl.base import HostBridge
from lmrepl.repl.kernel_channels import Kernel, Link, link_of
from lmrepl.repl.kernel_messages import TICK_MS, BadMessage, Drive, KernelGone, run_silent
from lmrepl.repl.kernel_run import PARENT_ENDED, Instruction, Run

__all__ = ["Drive", "KernelGone", "KernelSession", "run_silent"]


class KernelSession:
    """Drives one kernel; shared by a KernelREPL and its namespace children."""

    def __init__(self, handle: Kernel, max_output_chars: int) -> None:
        self.handle = handle
        #: How the driver reaches ``handle`` (replaced with it).
        self.link: Link = link_of(handle)
        self.generation = 0
        self.stream_cap = max(4 * max_output_chars, 100_000)
        self.bridges: dict[int, HostBridge] = {}
        self.next_ns = 1
        self._cond = threading.Condition()
        self._busy = False
        self._queue: deque[Instruction] = deque()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self.closed = False

    # -- public --------------------------------------------------------------------
    def replace(self, handle: Kernel) -> None:
        """Use a fresh kernel; namespaces of the old one are gone."""
        old, self.handle = self.handle, handle
        old.kill()
        self.link.close()
        self.link = link_of(handle)
        self.generation += 1
        self.bridges = {k: v for k, v in self.bridges.items() if k == 0}

    def new_namespace(self, bridge: HostBridge) -> int:
        """Reserve a namespace id for a child, with the bridge its host calls go to."""
        with self._cond:
            ns = self.next_ns
            self.next_ns += 1
            self.bridges[ns] = bridge
        return ns

    def op(
        self, op: protocol.Op, timeout: float | None, data: bytes | memoryview | None = None
    ) -> Any:
        """Run an agent operation; through the running cell when the kernel is busy.

        ``data`` travels as a binary message buffer over the shell channel, or base64
        inside the instruction when the kernel is busy (stdin replies are text only).
        """
        instr = Instruction(op, data)
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            if self._busy:
                self._queue.append(instr)
                self._wake()
            while self._busy and not instr.done:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    if not instr.sent:
                        self._queue.remove(instr)
                    raise TimeoutError(f"the kernel did not run {op.get('op')!r} in time")
                self._cond.wait(0.05 if left is None else min(left, 0.05))
            if not instr.done:
                if instr.sent:
                    raise RuntimeError("the parent cell ended before this operation finished")
                with contextlib.suppress(ValueError):
                    self._queue.remove(instr)
                self._busy = True
        if not instr.done:
            # The kernel this operation runs on: a replacement made meanwhile (another
            # thread's cell recovering) must not be the one ended below.
            handle = self.handle
            try:
                # The operation rides in the request's metadata, not in the code: IPython
                # tokenizes code, which is slow for megabytes of base64.
                drive = self._drive(
                    protocol.META_OP_CODE,
                    silent=True,
                    deadline=deadline,
                    grace=1.0,
                    expressions={"r": protocol.OP_RESULT_EXPRESSION},
                    metadata={protocol.OP_METADATA_KEY: {**op, "buffer": data is not None}},
                    buffers=None if data is None else [data],
                )
            finally:
                self._release()
            if drive.outcome in ("killed", "died"):
                # A stuck kernel is useless: end it, so the next cell sees "died" and the
                # REPL recovers with a fresh one.
                handle.kill()
                raise KernelGone(drive.outcome)
            if drive.outcome == "timeout":
                raise TimeoutError(f"the kernel did not run {op.get('op')!r} in time")
            try:
                instr.result = validate.op_result(drive.reply, "r")
            except BadMessage as exc:
                raise RuntimeError(f"the kernel sent a malformed message: {exc}") from None
        # An empty or null result (the agent never stored one) counts as a failure.
        result = instr.result or protocol.OpResult(ok=False, error="no result")
        if not result.get("ok"):
            raise RuntimeError(str(result.get("error")))
        try:
            return validate.op_value(str(op.get("op")), result.get("value"))
        except BadMessage as exc:
            raise RuntimeError(f"the kernel sent a malformed message: {exc}") from None

    def run_cell(self, code: str, deadline: float | None, grace: float) -> Drive:
        """Run a main-namespace cell with host calls served; never waits past the grace."""
        with self._cond:
            while self._busy:
                self._cond.wait(0.05)
            self._busy = True
        try:
            return self._drive(code, silent=False, deadline=deadline, grace=grace)
        except KeyboardInterrupt:
            # The user interrupted the host: stop the cell too, so the kernel is free.
            self.handle.interrupt()
            raise
        finally:
            self._release()

    def close(self) -> None:
        """Kill the kernel and release the wake pipe."""
        if self.closed:
            return
        self.closed = True
        self.handle.kill()
        with self._cond:
            if not self._busy:  # a running driver still polls them
                self.link.close()
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    # -- internals ---------------------------------------------------------------
    def _wake(self) -> None:
        if self.closed:  # the pipe's descriptors may belong to someone else by now
            return
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")

    def _release(self) -> None:
        with self._cond:
            self._busy = False
            for instr in self._queue:
                if instr.sent and not instr.done:
                    instr.done = True
                    instr.result = PARENT_ENDED
            self._queue = deque(i for i in self._queue if not i.sent)
            self._cond.notify_all()

    def _drive(
        self,
        code: str,
        *,
        silent: bool,
        deadline: float | None,
        grace: float,
        expressions: dict[str, str] | None = None,
        metadata: dict[str, Any] | None = None,
        buffers: list[bytes | memoryview] | None = None,
    ) -> Drive:
        handle, link = self.handle, self.link
        content = {
            "code": code,
            "silent": silent,
            "store_history": not silent,
            "user_expressions": expressions or {},
            "allow_stdin": True,
            "stop_on_error": False,
        }
        # A connection lost before this request (model code's thread sent an oversized
        # message between cells) is as fatal as one lost during it.
        lost = link.lost(None)
        msg_id = link.execute(content, metadata or {}, buffers) if lost is None else ""
        run = Run(self, msg_id or uuid.uuid4().hex, idle=silent)
        drive = run.drive
        interrupted_at: float | None = None
        poller = zmq.Poller()
        sources = {source.pollable: source for source in link.sources()}
        for pollable in (*sources, *link.watchers()):
            poller.register(pollable, zmq.POLLIN)
        poller.register(self._wake_r, zmq.POLLIN)

        while True:
            now = time.monotonic()
            if lost is not None:
                # Nothing more can be heard from the kernel (the reply, the idle status,
                # a host call): it is replaced. A kernel that died loses its connection
                # too; one that sent an oversized message is told why.
                if lost.fault:
                    run.faults.add(lost.fault)
                handle.kill()
                drive.outcome = "died"
                break
            if run.finished():
                break
            if deadline is not None and now >= deadline and interrupted_at is None:
                interrupted_at = now
                handle.interrupt()
            if interrupted_at is not None and now >= interrupted_at + grace:
                drive.outcome = "killed"
                break
            if not handle.alive():
                drive.outcome = "died"
                break
            run.serve(interrupted=interrupted_at is not None)
            timeout_ms = TICK_MS
            if deadline is not None and interrupted_at is None:
                timeout_ms = max(0, min(timeout_ms, int((deadline - now) * 1000) + 1))
            ready = dict(poller.poll(timeout_ms))
            if self._wake_r in ready:
                with contextlib.suppress(BlockingIOError):
                    os.read(self._wake_r, 4096)
            for pollable, source in sources.items():
                if pollable in ready:
                    run.read(source)
            # After the reads: what the kernel sent before the connection was lost counts.
            lost = link.lost(ready)
        drive.reply = run.reply or {}
        if run.faults.items:
            run.err.add(("\n" if run.err.head_len else "") + run.faults.text() + "\n")
        drive.stdout, drive.stderr = run.out.text(), run.err.text()
        if drive.outcome == "ok":
            if interrupted_at is not None:
                drive.outcome = "timeout"
            elif drive.reply.get("status") == "error":
                drive.outcome = "error"
        for instr in run.pending.values():
            instr.done = True
            instr.result = PARENT_ENDED
        return drive

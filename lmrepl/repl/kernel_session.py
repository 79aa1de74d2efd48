"""The host side of the kernel protocol: one driver loop per kernel over its channels.

One thread at a time *drives* a kernel: it sends an execute request and serves the
shell, IOPub and stdin channels until the reply (and, for cells, the idle status)
arrives. Host calls from the kernel (stdin ``input_request``) run ``bridge.call`` on a
worker thread, so the driver keeps enforcing the deadline and watching the process.
Other threads that need the kernel while it is busy (child REPLs, context loads for a
child) put an *instruction* on one queue; the driver hands it to the kernel as the
reply to a pending host call, and the kernel reports the result in its next request.
The host never unpickles anything the kernel sent: replies are JSON. The messages are
defined in ``kernel_protocol``.
"""

from __future__ import annotations

import ast
import base64
import contextlib
import json
import os
import threading
import time
from collections import deque
from typing import Any

import zmq

from lmrepl.repl import kernel_protocol as protocol
from lmrepl.repl.base import HostBridge
from lmrepl.repl.kernel_launch import KernelHandle
from lmrepl.repl.kernel_messages import (
    TICK_MS,
    WORKERS,
    Drive,
    KernelGone,
    Stream,
    clean_traceback,
    recv,
    run_silent,
)

__all__ = ["Drive", "KernelGone", "KernelSession", "run_silent"]

_PARENT_ENDED = protocol.OpResult(ok=False, error="the parent cell ended first")


class _Instruction:
    def __init__(self, op: protocol.Op, data: bytes | memoryview | None = None) -> None:
        self.op = op
        if data is not None:
            self.op = {**op, "data": base64.b64encode(data).decode("ascii")}
        self.id = f"e{id(self)}-{time.monotonic_ns()}"
        self.sent = False
        self.done = False
        self.result: protocol.OpResult | None = None


class KernelSession:
    """Drives one kernel; shared by a KernelREPL and its namespace children."""

    def __init__(self, handle: KernelHandle, max_output_chars: int) -> None:
        self.handle = handle
        self.generation = 0
        self.stream_cap = max(4 * max_output_chars, 100_000)
        self.bridges: dict[int, HostBridge] = {}
        self.next_ns = 1
        self._cond = threading.Condition()
        self._busy = False
        self._queue: deque[_Instruction] = deque()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self.closed = False

    # -- public --------------------------------------------------------------------
    def replace(self, handle: KernelHandle) -> None:
        """Use a fresh kernel; namespaces of the old one are gone."""
        old, self.handle = self.handle, handle
        old.kill()
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
        instr = _Instruction(op, data)
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
                self.handle.kill()
                raise KernelGone(drive.outcome)
            if drive.outcome == "timeout":
                raise TimeoutError(f"the kernel did not run {op.get('op')!r} in time")
            shown = drive.reply.get("user_expressions", {}).get("r", {}).get("data", {})
            instr.result = json.loads(ast.literal_eval(shown.get("text/plain", "'null'")))
        # An empty or null result (the agent never stored one) counts as a failure.
        result = instr.result or protocol.OpResult(ok=False, error="no result")
        if not result.get("ok"):
            raise RuntimeError(str(result.get("error")))
        return result.get("value")

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
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    # -- internals ---------------------------------------------------------------
    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")

    def _release(self) -> None:
        with self._cond:
            self._busy = False
            for instr in self._queue:
                if instr.sent and not instr.done:
                    instr.done = True
                    instr.result = _PARENT_ENDED
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
        handle = self.handle
        kc = handle.kc
        content = {
            "code": code,
            "silent": silent,
            "store_history": not silent,
            "user_expressions": expressions or {},
            "allow_stdin": True,
            "stop_on_error": False,
        }
        request = kc.session.msg("execute_request", content, metadata=metadata or {})
        if buffers:
            request["buffers"] = buffers
        kc.shell_channel.send(request)
        msg_id = request["header"]["msg_id"]
        out, err = Stream(self.stream_cap), Stream(self.stream_cap)
        drive = Drive()
        results: dict[str, protocol.CallResult] = {}
        pending: dict[str, _Instruction] = {}
        waiting: str | None = None
        reply: dict[str, Any] | None = None
        idle = silent
        interrupted_at: float | None = None
        poller = zmq.Poller()
        sockets = {
            kc.shell_channel.socket: kc.shell_channel,
            kc.iopub_channel.socket: kc.iopub_channel,
            kc.stdin_channel.socket: kc.stdin_channel,
        }
        for sock in sockets:
            poller.register(sock, zmq.POLLIN)
        poller.register(self._wake_r, zmq.POLLIN)

        def answer(
            value: protocol.ExecInstruction | protocol.CallResult | protocol.AbortReply,
        ) -> None:
            nonlocal waiting
            kc.input(json.dumps(value))
            waiting = None

        while reply is None or not idle:
            now = time.monotonic()
            if deadline is not None and now >= deadline and interrupted_at is None:
                interrupted_at = now
                handle.interrupt()
            if interrupted_at is not None and now >= interrupted_at + grace:
                drive.outcome = "killed"
                break
            if not handle.alive():
                drive.outcome = "died"
                break
            if waiting is not None:
                if interrupted_at is not None:
                    answer(protocol.AbortReply(id=waiting, abort=True))
                elif waiting in results:
                    answer(results.pop(waiting))
                else:
                    with self._cond:
                        instr = self._queue.popleft() if self._queue else None
                        if instr is not None:
                            instr.sent = True
                    if instr is not None:
                        pending[instr.id] = instr
                        answer(
                            protocol.ExecInstruction(
                                t=protocol.REPLY_EXEC, id=instr.id, op=instr.op
                            )
                        )
            timeout_ms = TICK_MS
            if deadline is not None and interrupted_at is None:
                timeout_ms = max(0, min(timeout_ms, int((deadline - now) * 1000) + 1))
            ready = dict(poller.poll(timeout_ms))
            if self._wake_r in ready:
                with contextlib.suppress(BlockingIOError):
                    os.read(self._wake_r, 4096)
            for sock, channel in sockets.items():
                if sock not in ready:
                    continue
                while (msg := recv(channel)) is not None:
                    if msg.get("parent_header", {}).get("msg_id") != msg_id:
                        continue
                    kind = msg["msg_type"]
                    content = msg["content"]
                    if kind == "execute_reply":
                        reply = content
                    elif kind == "status":
                        idle = idle or content.get("execution_state") == "idle"
                    elif kind == "stream":
                        (err if content.get("name") == "stderr" else out).add(content["text"])
                    elif kind == "execute_result":
                        drive.display = content.get("data", {}).get("text/plain")
                    elif kind == "display_data":
                        data = content.get("data", {})
                        if protocol.POLL_MIME in data:
                            drive.poll = data[protocol.POLL_MIME]
                        elif "text/plain" in data:
                            out.add(data["text/plain"] + "\n")
                    elif kind == "error":
                        drive.ename = content.get("ename")
                        drive.error = clean_traceback(content.get("traceback", []))
                    elif kind == "input_request":
                        waiting = self._on_request(content, msg_id, results, pending, answer)
        drive.reply = reply or {}
        drive.stdout, drive.stderr = out.text(), err.text()
        if drive.outcome == "ok":
            if interrupted_at is not None:
                drive.outcome = "timeout"
            elif drive.reply.get("status") == "error":
                drive.outcome = "error"
        for instr in pending.values():
            instr.done = True
            instr.result = _PARENT_ENDED
        return drive

    def _on_request(
        self,
        content: dict[str, Any],
        msg_id: str,
        results: dict[str, protocol.CallResult],
        pending: dict[str, _Instruction],
        answer: Any,
    ) -> str | None:
        prompt = str(content.get("prompt", ""))
        if not prompt.startswith(protocol.MARKER):
            # Plain input() from model code: nobody can type; answer with an empty line.
            kc_answer = self.handle.kc.input
            kc_answer("")
            return None
        # One of CallRequest, DoneRequest or a plain (wait) Request (kernel_protocol).
        req: dict[str, Any] = json.loads(prompt[len(protocol.MARKER) :])
        kind = req.get("t")
        if kind == protocol.REQ_CALL:
            bridge = self.bridges.get(int(req.get("ns", 0)))
            WORKERS.submit(self._call, bridge, req, results)
        elif kind == protocol.REQ_DONE:
            instr = pending.pop(str(req.get("id")), None)
            if instr is not None:
                with self._cond:
                    instr.result = req.get("result")
                    instr.done = True
                    self._cond.notify_all()
        return str(req.get("wait"))

    def _call(
        self,
        bridge: HostBridge | None,
        req: dict[str, Any],
        results: dict[str, protocol.CallResult],
    ) -> None:
        cid = str(req.get("id"))
        try:
            if bridge is None:
                raise RuntimeError("this namespace has no host bridge")
            value = bridge.call(str(req.get("fn")), dict(req.get("payload") or {}))
            json.dumps(value)
            result = protocol.CallResult(id=cid, ok=True, value=value)
        except Exception as exc:
            result = protocol.CallResult(id=cid, ok=False, error=str(exc) or type(exc).__name__)
        results[cid] = result
        self._wake()

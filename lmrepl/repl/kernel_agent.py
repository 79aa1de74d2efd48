"""The kernel-side half of the kernel REPL, shipped to the kernel as source text.

Stdlib-only, like ``runtime.py``: the host sends this file's text with
``kernel_protocol``'s, ``kernel_strings``' and ``kernel_bounds``' in one execute request
(there they become modules of the package ``lmrepl_kernel``, so the relative imports
below work on both sides) and calls ``boot(runtime_source)``. ``Agent`` runs the
host's operations and sends model code's host calls; ``kernel_protocol`` describes the
messages and how instructions ride on a pending host call while a cell is blocked.

The agent keeps what an honest cell sends the host small: a cell's printed output, its
traceback and its displays keep their head and tail up to the host's cap, and requests
and results stay under ``MAX_MESSAGE_BYTES`` (or fail with a clear error); the bounds
themselves are in ``kernel_bounds``. These bounds
are for honest code only: model code can undo them, so the host enforces its own.
"""

from __future__ import annotations

import ast
import base64
import builtins
import contextlib
import io
import json
import linecache
import os
import pickle
import signal
import sys
import threading
import traceback
import types
from typing import Any, Literal, cast

from . import kernel_bounds as bounds
from . import kernel_protocol as protocol
from . import kernel_strings


class _Capture(io.StringIO):
    """A stream for a child cell's stdout/stderr."""

    def isatty(self) -> bool:
        return False


def _child_traceback(exc: BaseException) -> str:
    """The traceback of a child cell without the agent's own frames."""
    frames = [
        f
        for f in traceback.extract_tb(exc.__traceback__)
        if f.filename not in (protocol.AGENT_FILE, protocol.RUNTIME_FILE)
    ]
    lines = ["Traceback (most recent call last):\n"] if frames else []
    lines += traceback.format_list(frames)
    lines += traceback.format_exception_only(type(exc), exc)
    return "".join(lines)


class Agent:
    """Owns the namespaces of one kernel and talks to the host."""

    def __init__(self, shell: Any, runtime: types.ModuleType) -> None:
        self.shell = shell
        self.kernel = shell.kernel
        self.runtime = runtime
        self.lock = threading.RLock()
        self.seq = 0
        self.cell = ""
        self.result = "null"
        self.exec_stack: list[str] = []
        self.chunks: dict[str, bytearray] = {}
        self.runtimes: dict[int, Any] = {0: runtime.install(shell.user_ns, self._host_call(0))}
        # Names IPython itself put in the user namespace are not the model's variables.
        self.baseline = {k: id(v) for k, v in shell.user_ns.items()}
        self.cells = 0
        self.output_cap = bounds.STREAM_CAP
        self.streams = [
            bounds.BoundedStream(s, self.output_cap)
            for s in (sys.stdout, sys.stderr)
            if hasattr(s, "pub_thread")  # ipykernel's OutStream (not a test's capture)
        ]
        bounds.bound_tracebacks(shell, lambda: self.output_cap)
        bounds.bound_displays(shell, lambda: self.output_cap)
        shell.events.register("pre_run_cell", self._pre_run_cell)
        shell.events.register("post_run_cell", self._post_run_cell)

    # -- talking to the host ------------------------------------------------------
    def _host_call(self, ns: int) -> Any:
        def host_call(fn: str, payload: dict[str, Any]) -> Any:
            return self.request(ns, fn, payload)

        return host_call

    def request(self, ns: int, fn: str, payload: dict[str, Any]) -> Any:
        """Call host function ``fn`` and wait for its result, running instructions meanwhile."""
        with self.lock:
            self.seq += 1
            wait = f"c{self.seq}"
            call = protocol.CallRequest(
                t=protocol.REQ_CALL,
                id=wait,
                wait=wait,
                cell=self.cell,
                ns=ns,
                fn=fn,
                payload=payload,
            )
            try:
                out = json.dumps(call)
            except (TypeError, ValueError) as exc:
                raise TypeError(f"host call arguments must be JSON data: {exc}") from None
            size = bounds.wire_size(out)
            if size > bounds.SEND_LIMIT:
                raise ValueError(
                    f"{fn}: the request takes {size:,} bytes; one host call may send at "
                    f"most {bounds.SEND_LIMIT:,}. Send less at once (split a batch)."
                )
            while True:
                # One of ExecInstruction, CallResult, AbortReply (kernel_protocol).
                reply: dict[str, Any] = json.loads(self.kernel.raw_input(protocol.MARKER + out))
                if reply.get("t") == protocol.REPLY_EXEC:
                    result = self.run_op(reply.get("op", {}))
                    done = protocol.DoneRequest(
                        t=protocol.REQ_DONE,
                        id=str(reply.get("id")),
                        wait=wait,
                        result=result,
                        cell=self.cell,
                    )
                    out = json.dumps(done)
                    if bounds.wire_size(out) > bounds.SEND_LIMIT:
                        done["result"] = protocol.OpResult(ok=False, error=bounds.too_big(out))
                        out = json.dumps(done)
                    continue
                if reply.get("id") != wait:
                    out = json.dumps(
                        protocol.Request(t=protocol.REQ_WAIT, wait=wait, cell=self.cell)
                    )
                    continue
                if reply.get("abort"):
                    raise KeyboardInterrupt("the host interrupted this cell")
                if reply.get("ok"):
                    return reply.get("value")
                raise RuntimeError(str(reply.get("error", "host call failed")))

    # -- the main namespace's cells ----------------------------------------------
    def _pre_run_cell(self, info: Any) -> None:
        for bound in self.streams:
            # The bootstrap cell's tee left the unbounded ``write`` on the instance.
            vars(bound.stream).pop("write", None)
        parent = self.kernel.get_parent("shell") or {}
        self.cell = str(parent.get("header", {}).get("msg_id", ""))
        self.runtimes[0].restore()

    def _post_run_cell(self, result: Any) -> None:
        for stream in self.streams:
            stream.finish()
        bounds.cap_error(result, self.output_cap)
        self.shell.display_pub.publish(
            data={protocol.POLL_MIME: self.runtimes[0].poll()}, metadata={}
        )

    # -- operations (from the shell channel or from instructions) ---------------------
    def meta_op(self) -> None:
        """Run the operation in the current request's metadata; the reply is ``result``."""
        parent = self.kernel.get_parent("shell") or {}
        op = (parent.get("metadata") or {}).get(protocol.OP_METADATA_KEY) or {}
        result = json.dumps(self.run_op(cast(protocol.Op, op)))
        if bounds.wire_size(result) > bounds.SEND_LIMIT:
            result = json.dumps(protocol.OpResult(ok=False, error=bounds.too_big(result)))
        self.result = result

    def run_op(self, op: protocol.Op) -> protocol.OpResult:
        """Run one operation (``Agent.op_<name>``); never raises (errors go back as text)."""
        try:
            handler = getattr(self, "op_" + str(op.get("op")), None)
            if handler is None:
                return protocol.OpResult(ok=False, error=f"unknown operation {op.get('op')!r}")
            return protocol.OpResult(ok=True, value=handler(op))
        except KeyboardInterrupt:
            raise
        except BaseException as exc:
            return protocol.OpResult(ok=False, error=f"{type(exc).__name__}: {exc}")

    def _rt(self, op: protocol.Op) -> Any:
        ns = int(op.get("ns", 0))
        if ns not in self.runtimes:
            raise KeyError(f"no namespace {ns} in this kernel")
        return self.runtimes[ns]

    def op_config(self, op: protocol.ConfigOp) -> protocol.ConfigResult:
        os.environ.update({str(k): str(v) for k, v in (op.get("env") or {}).items()})
        if op.get("display_cap"):
            self._cap_reprs(int(op["display_cap"]))
        if op.get("max_prompt_chars"):
            self.runtime.set_max_prompt_chars(int(op["max_prompt_chars"]))
        limit = op.get("memory_limit_mb")
        if limit is not None:
            import resource

            vsize = _vsize()
            want = int(limit) * 1024 * 1024
            if vsize is not None and want <= vsize:
                raise ValueError(
                    f"memory_limit_mb={limit} is below the kernel's own virtual size "
                    f"({vsize // 2**20} MB); RLIMIT_AS caps all virtual memory"
                )
            _, hard = resource.getrlimit(resource.RLIMIT_AS)
            if hard != resource.RLIM_INFINITY:
                want = min(want, hard)
            # Soft = hard: model code cannot lift the limit again.
            resource.setrlimit(resource.RLIMIT_AS, (want, want))
        return protocol.ConfigResult(pid=os.getpid())

    def _cap_reprs(self, cap: int) -> None:
        """Echo of a huge str/bytes shows its head and tail, not megabytes of text."""
        # The host's cap also bounds what one cell prints (less a margin for the note).
        self.output_cap = min(max(cap - 200, 1000), bounds.OUTPUT_CAP_LIMIT)
        for stream in self.streams:
            stream.cap = self.output_cap
        formatter = self.shell.display_formatter.formatters["text/plain"]

        def short(obj: Any, p: Any, cycle: bool) -> None:
            if len(obj) <= cap:
                p.text(repr(obj))
                return
            half = cap // 2
            hidden = len(obj) - 2 * half
            p.text(f"{obj[:half]!r} ... [{hidden} more characters] ... {obj[-half:]!r}")

        for kind in (str, bytes):
            formatter.for_type(kind, short)

    def op_new_ns(self, op: protocol.Op) -> int:
        ns_id = int(op["ns"])
        ns: dict[str, Any] = {"__name__": f"__lmrepl_child_{ns_id}__", "__builtins__": builtins}
        self.runtimes[ns_id] = self.runtime.install(ns, self._host_call(ns_id))
        return ns_id

    def op_drop_ns(self, op: protocol.Op) -> None:
        if int(op["ns"]) != 0:
            self.runtimes.pop(int(op["ns"]), None)

    def op_ctx_file(self, op: protocol.CtxFileOp) -> int:
        path, kind, size = str(op["path"]), str(op["kind"]), int(op["size"])
        try:
            value: Any = None
            if kind == protocol.CTX_ASCII and size >= 65536:
                value = kernel_strings.read_ascii(path, size)
            if value is None:
                with open(path, "rb") as f:
                    data = f.read()
                value = _decode(data, kind)
                del data
        finally:
            with contextlib.suppress(OSError):
                os.unlink(path)
        return int(self._rt(op).add_context(value))

    def op_ctx_chunk(self, op: protocol.CtxChunkOp) -> None:
        buf = self.chunks.setdefault(str(op["key"]), bytearray())
        if op.get("buffer"):
            buf.extend((self.kernel.get_parent("shell") or {}).get("buffers", [b""])[0])
        else:
            buf.extend(base64.b64decode(op["data"]))

    def op_ctx_end(self, op: protocol.CtxEndOp) -> int:
        data = self.chunks.pop(str(op["key"]), bytearray())
        value = _decode(data, str(op["kind"]))
        del data
        return int(self._rt(op).add_context(value))

    def op_tools(self, op: protocol.ToolsOp) -> None:
        blob = op.get("values")
        values = pickle.loads(base64.b64decode(blob)) if blob else {}
        self._rt(op).set_tools(values, list(op.get("proxied", [])))

    def op_history(self, op: protocol.HistoryOp) -> None:
        self._rt(op).set_history(list(op.get("history", [])))

    def op_reset(self, op: protocol.Op) -> None:
        self._rt(op).reset_submission()

    def op_vars(self, op: protocol.Op) -> dict[str, str]:
        found = dict(self._rt(op).user_variables())
        if int(op.get("ns", 0)) == 0:
            ns = self.shell.user_ns
            found = {k: t for k, t in found.items() if self.baseline.get(k) != id(ns.get(k))}
        return found

    def op_poll(self, op: protocol.Op) -> protocol.Poll:
        poll: protocol.Poll = self._rt(op).poll()
        return poll

    def op_cell(self, op: protocol.CellOp) -> protocol.CellOutcome:
        """Run a child namespace's cell: output captured, last expression echoed."""
        rt = self._rt(op)
        self.cells += 1
        filename = f"<child {int(op.get('ns', 0))} cell {self.cells}>"
        code = str(op.get("code", ""))
        linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
        rt.restore()
        out, err = _Capture(), _Capture()
        saved = sys.stdout, sys.stderr
        status: Literal["ok", "error", "timeout"] = "ok"
        display, error = None, None
        timer = _Timer(self, filename, op.get("timeout"))
        self.exec_stack.append(filename)
        sys.stdout, sys.stderr = out, err
        try:
            timer.start()
            tree = ast.parse(code, filename)
            last = None
            if tree.body and isinstance(tree.body[-1], ast.Expr):
                tail = tree.body.pop()
                assert isinstance(tail, ast.Expr)
                last = ast.Expression(tail.value)
            exec(compile(tree, filename, "exec"), rt.ns)
            if last is not None:
                value = eval(compile(last, filename, "eval"), rt.ns)
                if value is not None:
                    display = repr(value)
        except KeyboardInterrupt as exc:
            if not timer.fired:
                raise
            status, error = "timeout", _child_traceback(exc)
        except BaseException as exc:
            status, error = "error", _child_traceback(exc)
        finally:
            timer.cancel()
            self.exec_stack.pop()
            sys.stdout, sys.stderr = saved
        poll: protocol.Poll = rt.poll()
        return protocol.CellOutcome(
            stdout=bounds.clip(out.getvalue()),
            stderr=bounds.clip(err.getvalue()),
            display=None if display is None else bounds.clip(display),
            error=None if error is None else bounds.clip(error),
            status=status,
            submitted=poll["submitted"],
            answer=poll["answer"],
            draft=poll["draft"],
        )


class _Timer:
    """A child cell's timeout: SIGINT to the main thread while that cell is innermost.

    A nested child (one running inside this cell's host call) is never interrupted for
    this cell's timeout; the signal waits until the nested one has returned.
    """

    def __init__(self, agent: Agent, name: str, timeout: Any) -> None:
        self.agent, self.name, self.fired = agent, name, False
        self.timeout = float(timeout) if timeout is not None else None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        if self.timeout is not None:
            self.thread.start()

    def _run(self) -> None:
        if self.timeout is None or self.stop.wait(self.timeout):
            return
        while not self.stop.is_set():
            stack = self.agent.exec_stack
            if stack and stack[-1] == self.name:
                self.fired = True
                signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)
                if self.stop.wait(1.0):
                    return
            elif self.stop.wait(0.05):
                return

    def cancel(self) -> None:
        self.stop.set()


def _decode(data: bytes | bytearray, kind: str) -> Any:
    if kind in (protocol.CTX_ASCII, protocol.CTX_UTF8):
        return data.decode("utf-8")
    if kind == protocol.CTX_BYTES:
        return bytes(data)
    return pickle.loads(data)


def _vsize() -> int | None:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return None


def boot(runtime_source: str) -> Agent:
    """Install the runtime into the user namespace and register the agent module."""
    shell = get_ipython()  # type: ignore[name-defined]  # noqa: F821 - an IPython builtin
    shell.run_line_magic("xmode", "Plain")
    # IPython 9 tees every cell's output into its history (kept in memory even with the
    # history database off) by swapping the streams' ``write`` around each cell, which
    # would also bypass the output bounds: no tee.
    shell._tee = lambda channel: contextlib.nullcontext()
    with contextlib.suppress(Exception):  # the host strips ANSI codes anyway
        shell.colors = "nocolor"
    runtime = types.ModuleType(protocol.RUNTIME_MODULE)
    sys.modules[protocol.RUNTIME_MODULE] = runtime
    exec(compile(runtime_source, protocol.RUNTIME_FILE, "exec"), runtime.__dict__)
    agent = Agent(shell, runtime)
    module = sys.modules[__name__]
    module.agent = agent  # type: ignore[attr-defined]
    return agent

"""The in-process REPL: ``exec`` with notebook semantics and soft timeouts.

Fast and dependency-free, for tests and trusted code only: it is **no boundary**.
Model code runs in the host process, so it can read the host's secrets (``os.environ``,
API keys in client objects, the user's files), change or lift the run's limits, and
signal or kill the host. A timeout can only ask the cell's thread to stop (an
asynchronous exception at the next bytecode): a C-level loop that holds the GIL
freezes the whole host, timeouts and Ctrl-C included, until it returns. Use the
(sandboxed) kernel REPL for anything that reads untrusted text.
"""

from __future__ import annotations

import ast
import builtins
import ctypes
import pickle
import threading
import time
from typing import Any

from lmrepl import checks
from lmrepl.errors import ContextError
from lmrepl.repl import settings
from lmrepl.repl.base import REPL, CellResult, HostBridge
from lmrepl.repl.capture import capture_output
from lmrepl.repl.runtime import DEFAULT_MAX_PROMPT_CHARS, Runtime, install
from lmrepl.repl.tracebacks import CELL_FILENAME, format_cell_exception


class CellTimeout(BaseException):
    """Raised inside a cell's thread when its time is up (BaseException: not swallowed by
    a bare ``except Exception`` in model code)."""


def _raise_in_thread(thread: threading.Thread, exc_type: type[BaseException]) -> None:
    ident = thread.ident
    if ident is not None:
        ctypes.pythonapi.PyThreadState_SetAsyncExc(
            ctypes.c_ulong(ident), ctypes.py_object(exc_type)
        )


def ship_context(value: Any) -> Any:
    """A private copy of ``value`` for one REPL (immutable values are shared as they are)."""
    if isinstance(value, (str, bytes, int, float, bool, type(None))):
        return value
    try:
        return pickle.loads(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))
    except Exception as exc:
        raise ContextError(
            f"context of type {type(value).__name__} cannot be serialised for the REPL: {exc}"
        ) from exc


class LocalREPL(REPL):
    """Runs model code with ``exec`` in this process, one namespace per REPL."""

    name = "local"

    def __init__(
        self,
        cell_timeout: float | None = 60.0,
        max_output_chars: int = 20_000,
        max_prompt_chars: int = DEFAULT_MAX_PROMPT_CHARS,
    ):
        checks.check_settings(
            "environment_kwargs",
            {
                "cell_timeout": cell_timeout,
                "max_output_chars": max_output_chars,
                "max_prompt_chars": max_prompt_chars,
            },
            settings.LOCAL,
        )
        self.cell_timeout = cell_timeout
        self.max_output_chars = max_output_chars
        #: The longest prompt one sub-call may send (checked again by the host's bridge).
        self.max_prompt_chars = max_prompt_chars
        self.ns: dict[str, Any] = {"__builtins__": builtins, "__name__": "__lmrepl__"}
        self._runtime: Runtime | None = None
        self._counter = 0
        self._closed = False
        self._cell_thread: threading.Thread | None = None

    @property
    def runtime(self) -> Runtime:
        """The runtime that owns the protected names (after ``start``)."""
        if self._runtime is None:
            raise RuntimeError("the REPL was not started")
        return self._runtime

    def start(self, bridge: HostBridge) -> None:
        """Install the REPL names; host calls go straight to ``bridge``.

        On a started REPL (a persistent session's next turn) only the bridge changes.
        """
        if self._runtime is not None:
            self._runtime.host_call = bridge.call
            return
        self._runtime = install(self.ns, bridge.call, self.max_prompt_chars)

    def add_context(self, value: Any) -> int:
        """Load a private copy of ``value`` as the next ``context_N``."""
        return self.runtime.add_context(ship_context(value))

    def set_tools(self, tools: dict[str, Any]) -> None:
        """Bind custom tools (callables run in-process, as they are)."""
        self.runtime.set_tools(dict(tools), [])

    def set_history(self, history: list[dict[str, Any]]) -> None:
        """Bind ``history``."""
        self.runtime.set_history(history)

    def reset_submission(self) -> None:
        """Clear a submitted answer."""
        self.runtime.reset_submission()

    def user_variables(self) -> dict[str, str]:
        """The variables model code created."""
        return self.runtime.user_variables()

    def draft(self) -> str | None:
        """The draft answer, read from the runtime's dict (no code runs)."""
        if self._runtime is None:
            return None
        content = self._runtime.answer.get("content")
        return str(content) if content not in (None, "") else None

    def interrupt(self) -> None:
        """Raise ``KeyboardInterrupt`` in the running cell's thread."""
        thread = self._cell_thread
        if thread is not None and thread.is_alive():
            _raise_in_thread(thread, KeyboardInterrupt)

    def make_child(self) -> REPL | None:
        """Children get a fresh in-process REPL (cheap)."""
        return None

    def execute(self, code: str, timeout: float | None = None) -> CellResult:
        """Run ``code``; ``timeout`` (or ``cell_timeout``) is soft, see the module doc."""
        if self._closed:
            raise RuntimeError("the REPL is closed")
        limit = timeout if timeout is not None else self.cell_timeout
        self.runtime.restore()
        self._counter += 1
        box: dict[str, Any] = {}
        thread = threading.Thread(
            target=self._run_cell,
            args=(code, box),
            name=f"lmrepl-cell-{self._counter}",
            daemon=True,
        )
        started = time.perf_counter()
        self._cell_thread = thread
        try:
            thread.start()
            thread.join(limit)
        except KeyboardInterrupt:
            # The user interrupted the host: stop the cell too, as the kernel REPL does.
            _raise_in_thread(thread, KeyboardInterrupt)
            thread.join(1.0)
            raise
        finally:
            self._cell_thread = None
        notice = None
        status = None
        if thread.is_alive():
            _raise_in_thread(thread, CellTimeout)
            thread.join(1.0)
            status = "timeout"
            if thread.is_alive():
                notice = (
                    f"The cell exceeded its {limit:g} s time limit and could not be stopped; it "
                    "keeps running in the background (the local REPL has soft timeouts only)."
                )
            else:
                notice = f"The cell was stopped after its {limit:g} s time limit."
        result: CellResult = box.get("result") or CellResult()
        if status is not None:
            result.status = "timeout"
            result.notice = notice
            result.error = None if result.error and "CellTimeout" in result.error else result.error
        result.duration = time.perf_counter() - started
        polled = self.runtime.poll()
        result.submitted = bool(polled["submitted"])
        result.answer = polled["answer"]
        result.draft = polled["draft"]
        return result

    def _run_cell(self, code: str, box: dict[str, Any]) -> None:
        result = CellResult()
        box["result"] = result
        # Head and tail of what the cell prints, as the kernel REPL keeps them.
        with capture_output(max(4 * self.max_output_chars, 100_000)) as (out, err):
            try:
                display = self._exec(code)
                if display is not None:
                    result.display = display
            except CellTimeout:
                result.status = "timeout"
            except BaseException as exc:
                result.status = "error"
                result.error = format_cell_exception(exc, code)
            finally:
                result.stdout = out.getvalue()
                result.stderr = err.getvalue()

    def _exec(self, code: str) -> str | None:
        tree = ast.parse(code, filename=CELL_FILENAME, mode="exec")
        last: ast.expr | None = None
        if tree.body and isinstance(tree.body[-1], ast.Expr):
            last = tree.body[-1].value
            tree.body.pop()
        if tree.body:
            exec(compile(tree, CELL_FILENAME, "exec"), self.ns)
        if last is None:
            return None
        value = eval(compile(ast.Expression(last), CELL_FILENAME, "eval"), self.ns)
        if value is None:
            return None
        self.ns["_"] = value
        return repr(value)

    def close(self) -> None:
        """Drop the namespace."""
        self._closed = True
        self.ns.clear()

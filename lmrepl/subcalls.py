"""The host side of ``llm_query``/``rlm_query`` and custom tools (the REPL's bridge).

A ``SubcallBridge`` belongs to one trajectory. Model code reaches it through
``HostBridge.call``. Batched calls run with real concurrency bounded by
``max_concurrent_subcalls`` and keep input order; one failed prompt becomes an
error string in its slot. Calls made by a cell that has since ended (timed out)
are not started any more: their results could only land in a later cell.

Model code is untrusted and may reach the bridge without the REPL runtime (raw
kernel messages), so ``call`` checks every payload itself: a malformed one is a
``BadHostCall`` (a ``ValueError``) with a clear message, and a prompt longer than
``max_prompt_chars`` is refused before anything is sent (in a batch, in its slot).
Every model request of a sub-call passes the run's gate and reservations in
``ModelCaller``; custom tools are host functions, not model requests, and are not
gated (they spend no tokens, and a tool that waited for a slot held by the cell that
called it could deadlock).

The bridge gets the few things it needs from its trajectory as callables (make a
model call, start a child RLM, publish, record) and never sees the trajectory.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from lmrepl.admission import CellAbandoned
from lmrepl.calls import CallModel, Publish
from lmrepl.clients.base import ModelClient
from lmrepl.errors import LimitExceeded, LMReplError, RunCancelled
from lmrepl.events import SubcallFinished, SubcallStarted
from lmrepl.limits import LimitGuard
from lmrepl.records import SubcallRecord
from lmrepl.repl.runtime import DEFAULT_MAX_PROMPT_CHARS, prompt_too_long

PREVIEW = 200

#: Starts a child RLM on ``prompt`` with ``client`` under ``guard``; returns
#: (answer, child run id).
RunChild = Callable[[str, ModelClient, LimitGuard], tuple[str, str]]


def _preview(text: str, n: int = PREVIEW) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


__all__ = ["BadHostCall", "CellAbandoned", "RunChild", "SubcallBridge"]


class BadHostCall(LMReplError, ValueError):
    """A host call whose function or payload is malformed (model code sent it raw)."""


def _text(payload: dict[str, Any], key: str, fn: str) -> str:
    value = payload.get(key)
    if not isinstance(value, str):
        raise BadHostCall(f"{fn}: {key!r} must be a string, got {type(value).__name__}")
    return value


def _model(payload: dict[str, Any], fn: str) -> str | None:
    model = payload.get("model")
    if model is not None and not isinstance(model, str):
        raise BadHostCall(f"{fn}: 'model' must be a string or None, got {type(model).__name__}")
    return model


class SubcallBridge:
    """Dispatches host calls from one trajectory's REPL."""

    def __init__(
        self,
        *,
        call_model: CallModel,
        run_child: RunChild | None,
        choose_client: Callable[[str | None], ModelClient],
        publish: Publish,
        record: Callable[[SubcallRecord], None],
        guard: LimitGuard,
        max_concurrent: int,
        depth: int,
        tools: dict[str, Callable[..., Any]],
        max_prompt_chars: int = DEFAULT_MAX_PROMPT_CHARS,
    ) -> None:
        self.call_model = call_model
        # None: this trajectory is at max depth, so rlm_query is a plain model call.
        self.run_child = run_child
        self.choose_client = choose_client
        self.publish = publish
        self.record = record
        self.guard = guard
        self.max_concurrent = max_concurrent
        self.depth = depth
        self.tools = tools
        #: The longest prompt one sub-call may send (``max_prompt_chars``).
        self.max_prompt_chars = max_prompt_chars
        self._cell_alive = threading.Event()
        self._cell_alive.set()
        self._cell_guards: list[LimitGuard] = []
        self._lock = threading.Lock()

    # -- cell scope -------------------------------------------------------------------
    def begin_cell(self) -> None:
        """A new cell starts: calls from now on belong to it."""
        with self._lock:
            self._cell_alive = threading.Event()
            self._cell_alive.set()
            self._cell_guards = []

    def end_cell(self) -> None:
        """The cell ended: calls it left behind stop before their next model request,
        and child RLMs it started (still running after a timeout) are cancelled."""
        with self._lock:
            self._cell_alive.clear()
            guards, self._cell_guards = self._cell_guards, []
        for guard in guards:
            guard.cancel()

    def child_guard(self) -> LimitGuard:
        """A guard for a child RLM of the current cell (cancelled when the cell ends)."""
        guard = self.guard.derive()
        with self._lock:
            self._cell_guards.append(guard)
        return guard

    def _scope(self) -> threading.Event:
        with self._lock:
            return self._cell_alive

    # -- HostBridge ---------------------------------------------------------------------
    def call(self, fn: str, payload: dict[str, Any]) -> Any:
        """Run host function ``fn`` (see ``lmrepl.repl.base.HOST_FUNCTIONS``).

        Raises ``BadHostCall`` for a malformed call, whatever model code sent.
        """
        if not isinstance(payload, dict):
            kind = type(payload).__name__
            raise BadHostCall(f"host call {fn!r}: the payload must be a JSON object, got {kind}")
        scope = self._scope()
        if fn in ("llm_query", "rlm_query"):
            prompt = _text(payload, "prompt", fn)
            return self._one(fn, prompt, _model(payload, fn), scope)
        if fn in ("llm_query_batched", "rlm_query_batched"):
            prompts = payload.get("prompts")
            if not isinstance(prompts, list) or not all(isinstance(p, str) for p in prompts):
                raise BadHostCall(f"{fn}: 'prompts' must be a list of strings")
            return self._batch(fn, prompts, _model(payload, fn), scope)
        if fn == "tool":
            return self._tool(payload)
        raise BadHostCall(f"unknown host function {fn!r}")

    def _tool(self, payload: dict[str, Any]) -> Any:
        name = _text(payload, "name", "tool")
        args = payload.get("args", [])
        kwargs = payload.get("kwargs", {})
        if not isinstance(args, list):
            raise BadHostCall(f"tool {name!r}: 'args' must be a list")
        if not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
            raise BadHostCall(f"tool {name!r}: 'kwargs' must be an object with string keys")
        if name not in self.tools:
            raise KeyError(f"no custom tool named {name!r}")
        return self.tools[name](*args, **kwargs)

    def _one(self, function: str, prompt: str, model: str | None, scope: threading.Event) -> str:
        result, error = self._run(function, prompt, model, scope, None)
        if error is not None:
            raise RuntimeError(error)
        return result

    def _batch(
        self, function: str, prompts: list[str], model: str | None, scope: threading.Event
    ) -> list[str]:
        if not prompts:
            return []
        single = "llm_query" if function == "llm_query_batched" else "rlm_query"
        workers = min(len(prompts), self.max_concurrent)

        def slot(i: int) -> str:
            text, error = self._run(single, prompts[i], model, scope, i, batch=function)
            return text if error is None else f"Error: {error}"

        if workers <= 1:
            return [slot(i) for i in range(len(prompts))]
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="lmrepl-sub") as pool:
            return list(pool.map(slot, range(len(prompts))))

    def _run(
        self,
        function: str,
        prompt: str,
        model: str | None,
        scope: threading.Event,
        batch_index: int | None,
        batch: str | None = None,
    ) -> tuple[str, str | None]:
        """One sub-call with its events and record; returns (text, error)."""
        name = batch or function
        sub_id = uuid.uuid4().hex[:12]
        try:
            client = self.choose_client(model)
        except ValueError as exc:
            return "", str(exc)
        self.publish(
            SubcallStarted,
            subcall_id=sub_id,
            function=name,
            model=client.model_name,
            prompt_preview=_preview(prompt),
            batch_index=batch_index,
        )
        started = time.perf_counter()
        child_run_id: str | None = None
        text, error = "", None
        try:
            if not scope.is_set():
                raise CellAbandoned("the cell that made this call already ended")
            too_long = prompt_too_long(function, prompt, self.max_prompt_chars)
            if too_long is not None:
                raise BadHostCall(too_long)
            if function == "rlm_query" and self.run_child is not None:
                text, child_run_id = self.run_child(prompt, client, self.child_guard())
            else:
                messages = [{"role": "user", "content": prompt}]
                reply = self.call_model(messages, purpose="subcall", client=client, alive=scope)
                text = reply.text
        except (LimitExceeded, RunCancelled, BadHostCall) as exc:
            error = str(exc)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
        record = SubcallRecord(
            function=name,
            model=client.model_name,
            prompt=_preview(prompt, 2000),
            response=_preview(text, 2000),
            duration=time.perf_counter() - started,
            error=error,
            child_run_id=child_run_id,
            batch_index=batch_index,
            depth=self.depth,
        )
        self.record(record)
        self.publish(SubcallFinished, subcall_id=sub_id, subcall=record)
        return text, error

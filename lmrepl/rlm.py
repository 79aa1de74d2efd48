"""``RLM``: the public entry point for one recursive-language-model trajectory."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Literal

from lmrepl import checks, config
from lmrepl.callbacks import Callbacks
from lmrepl.clients import make_client
from lmrepl.clients.base import ModelClient
from lmrepl.engine import DEFAULT_CONTEXT_WINDOW, Engine, EngineSettings
from lmrepl.errors import ConfigurationError, RunStopped
from lmrepl.events import Event, EventBus
from lmrepl.limits import LimitGuard
from lmrepl.prompts import describe_context
from lmrepl.records import CandidateRecord, RunRecord, SearchRecord
from lmrepl.repl import sandbox_label, sandbox_of
from lmrepl.repl.base import REPL
from lmrepl.runner import Trajectory
from lmrepl.stops import close_rlm_record, interrupted
from lmrepl.types import RLMChatCompletion
from lmrepl.usage import UsageTracker

DEFAULT_QUESTION = "Answer the request or question contained in the context."
#: Fields of a candidate that are the search's view of it, not part of a trajectory.
CANDIDATE_ONLY_FIELDS = set(CandidateRecord.model_fields) - set(RunRecord.model_fields)


def question_text(root_prompt: str | None) -> str:
    """The question of a ``completion()`` call: lm-repl's default when none is given and
    the context is a str holding the request (``config.before_completion`` checks that)."""
    question = root_prompt if root_prompt is not None else DEFAULT_QUESTION
    checks.check("root_prompt (the question)", question, config.QUESTION)
    return question


class RLM:
    """A Recursive Language Model: ``completion(context, question)`` instead of a prompt.

    The arguments keep lm-repl 0.2.0's names and meanings (SPEC §3); every one is
    checked here, so a bad value fails now rather than in the middle of a run.
    ``hold_unseen_final`` (ours) holds a constant FINAL written before its block's output
    was read, for one turn (docs/selection.md, "Submission hygiene").
    """

    @config.checked()
    def __init__(
        self,
        backend: str | None = None,
        backend_kwargs: dict[str, Any] | None = None,
        environment: str = "kernel",
        environment_kwargs: dict[str, Any] | None = None,
        depth: int = 0,
        max_depth: int = 1,
        max_iterations: int = 30,
        max_budget: float | None = None,
        max_timeout: float | None = None,
        max_tokens: int | None = None,
        max_errors: int | None = None,
        custom_system_prompt: str | None = None,
        other_backends: list[str] | None = None,
        other_backend_kwargs: list[dict[str, Any]] | None = None,
        logger: Callable[[Event], None] | None = None,
        verbose: bool = False,
        persistent: bool = False,
        custom_tools: dict[str, Any] | None = None,
        custom_sub_tools: dict[str, Any] | None = None,
        compaction: bool = False,
        compaction_threshold_pct: float = 0.85,
        max_concurrent_subcalls: int = 8,
        on_subcall_start: Callable[[int, str, str], None] | None = None,
        on_subcall_complete: Callable[[int, str, float, str | None], None] | None = None,
        on_iteration_start: Callable[[int, int], None] | None = None,
        on_iteration_complete: Callable[[int, int, float], None] | None = None,
        child_max_iterations: int | None = None,
        child_system_prompt: str | None = None,
        hold_unseen_final: bool = True,
    ) -> None:
        callbacks: dict[str, Callable[..., None] | None] = {
            "on_subcall_start": on_subcall_start,
            "on_subcall_complete": on_subcall_complete,
            "on_iteration_start": on_iteration_start,
            "on_iteration_complete": on_iteration_complete,
        }
        config.check_arguments(
            {
                "depth": depth,
                "max_depth": max_depth,
                "max_iterations": max_iterations,
                "max_budget": max_budget,
                "max_timeout": max_timeout,
                "max_tokens": max_tokens,
                "max_errors": max_errors,
                "custom_system_prompt": custom_system_prompt,
                "child_system_prompt": child_system_prompt,
                "child_max_iterations": child_max_iterations,
                "max_concurrent_subcalls": max_concurrent_subcalls,
                "compaction_threshold_pct": compaction_threshold_pct,
                "verbose": verbose,
                "persistent": persistent,
                "compaction": compaction,
                "hold_unseen_final": hold_unseen_final,
                "logger": logger,
                **callbacks,
            }
        )
        if depth >= max(max_depth, 1):
            raise ConfigurationError(
                f"depth must be below max_depth ({max_depth}), got {depth}: RLMs run at "
                "depths 0 to max_depth - 1 (max_depth=1 allows the root alone)"
            )
        self._set_backend(backend, backend_kwargs)
        self.environment = config.check_environment(environment, environment_kwargs)
        self.environment_kwargs = dict(environment_kwargs or {})
        #: The kernels' sandbox (None for ``environment="local"``), chosen once here.
        self.sandbox = sandbox_of(self.environment, self.environment_kwargs)
        self.other_backends = config.check_other_backends(other_backends, other_backend_kwargs)
        self.tools, self.tool_descriptions = config.split_tools("custom_tools", custom_tools)
        if custom_sub_tools is None:
            self.sub_tools, self.sub_tool_descriptions = self.tools, self.tool_descriptions
        else:
            self.sub_tools, self.sub_tool_descriptions = config.split_tools(
                "custom_sub_tools", custom_sub_tools
            )
        self.depth = depth
        self.max_depth = max_depth
        self.max_iterations = max_iterations
        self.max_budget = max_budget
        self.max_timeout = max_timeout
        self.max_tokens = max_tokens
        self.max_errors = max_errors
        self.custom_system_prompt = custom_system_prompt
        self.child_system_prompt = child_system_prompt
        self.child_max_iterations = child_max_iterations
        self.max_concurrent_subcalls = max_concurrent_subcalls
        self.compaction = compaction
        self.compaction_threshold_pct = float(compaction_threshold_pct)
        self.hold_unseen_final = hold_unseen_final
        self.logger = logger
        self.verbose = verbose
        self.persistent = persistent
        self._callbacks = Callbacks(**callbacks)
        self.bus = EventBus()
        self._guard: LimitGuard | None = None
        self._guard_lock = threading.Lock()
        # Persistent sessions keep one REPL, the contexts and the turns across calls.
        self._repl: REPL | None = None
        self._contexts: list[Any] = []
        self._history: list[dict[str, Any]] = []
        self._client_cache: tuple[ModelClient, list[ModelClient]] | None = None
        #: The partial result of the last run that was interrupted or stopped.
        self.last_partial: RLMChatCompletion | None = None

    def _set_backend(self, backend: str | None, backend_kwargs: dict[str, Any] | None) -> None:
        why = None
        if backend is None:
            backend, why = config.default_backend()
        self.backend = backend
        checks.check("backend_kwargs", backend_kwargs, checks.mapping())
        self.backend_kwargs = dict(backend_kwargs or {})
        try:
            config.check_backend(self.backend, self.backend_kwargs)
        except ConfigurationError as exc:
            if why is None:
                raise
            raise ConfigurationError(f"{exc} (backend {backend!r} was {why})") from None

    # -- public API ---------------------------------------------------------------------
    def subscribe(self, fn: Callable[[Event], None]) -> Callable[[], None]:
        """Receive every event of every later run; returns an unsubscribe function."""
        return self.bus.subscribe(fn)

    def cancel(self) -> None:
        """Cancel the running ``completion()`` (from another thread)."""
        with self._guard_lock:
            if self._guard is not None:
                self._guard.cancel()

    def close(self) -> None:
        """End a persistent session's REPL and close the model clients."""
        if self._repl is not None:
            self._repl.close()
            self._repl = None
        with self._guard_lock:
            cache, self._client_cache = self._client_cache, None
        if cache is not None:
            for client in (cache[0], *cache[1]):
                client.close()

    def __enter__(self) -> RLM:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def completion(self, prompt: Any, root_prompt: str | None = None) -> RLMChatCompletion:
        """Answer ``root_prompt`` (the question) about ``prompt`` (the context).

        The lm-repl call shape is kept: ``prompt`` is the context (str, bytes, list,
        dict or any picklable object) and ``root_prompt`` the question.
        """
        config.before_completion(self, prompt, root_prompt)
        question = question_text(root_prompt)
        started = time.perf_counter()
        engine = self._make_engine(temperature=None, confidence_instruction=None)
        usage = UsageTracker()
        guard = self._new_guard(usage)
        unsubscribe = self._attach_consumers()
        contexts = [*self._contexts, prompt] if self.persistent else [prompt]
        record = self._new_record("rlm", question, contexts)
        run = record.candidate(0)
        trajectory = Trajectory(
            engine, guard=guard, usage=usage, depth=self.depth, repl=self._repl, record=run
        )
        try:
            trajectory.run(
                contexts,
                question,
                history=self._history if self.persistent else None,
                own_repl=not self.persistent,
                new_context_start=len(self._contexts) if self.persistent else 0,
            )
        except RunStopped as exc:
            self.last_partial = self._rlm_result(record, usage, started, exc.partial_answer)
            exc.metadata, exc.record = self.last_partial.metadata, record
            raise
        except KeyboardInterrupt as exc:
            guard.cancel()
            self.last_partial = self._rlm_result(record, usage, started, trajectory.partial())
            raise interrupted(exc, self.last_partial) from exc
        finally:
            unsubscribe()
            with self._guard_lock:
                self._guard = None
            if self.persistent:
                self._repl = trajectory.repl
        if self.persistent:
            self._contexts = contexts
            self._history.append({"question": question, "answer": run.answer})
        return self._rlm_result(record, usage, started, run.answer)

    # -- the result (shared with SRLM) --------------------------------------------------
    def _new_record(
        self,
        kind: Literal["rlm", "srlm"],
        question: str,
        contexts: list[Any],
        n_candidates: int = 1,
        candidate_parallel: int = 1,
    ) -> SearchRecord:
        """The run's record with its header filled in; the run fills the rest."""
        return SearchRecord(
            kind=kind,
            mode="rlm",
            question=question,
            context_info=describe_context(contexts),
            status="running",
            backend=self.backend,
            model=self._root_model_name(),
            environment=self.environment,
            sandbox=sandbox_label(self.sandbox),
            n_candidates=n_candidates,
            candidate_parallel=candidate_parallel,
            started_at=time.time(),
        )

    def _rlm_result(
        self, record: SearchRecord, usage: UsageTracker, started: float, answer: str | None
    ) -> RLMChatCompletion:
        """A single trajectory's result: its record is candidate 0 and the only vote."""
        run = record.candidates[0]
        close_rlm_record(record)
        metadata = {
            "mode": "rlm",
            "context_info": record.context_info,
            "sandbox": record.sandbox,
            **run.model_dump(exclude=CANDIDATE_ONLY_FIELDS),
        }
        return self._result(record, metadata, usage, started, answer or "")

    def _result(
        self,
        record: SearchRecord,
        metadata: dict[str, Any] | None,
        usage: UsageTracker,
        started: float,
        response: str,
    ) -> RLMChatCompletion:
        """Close the record (time, totals) and wrap it as the caller's result.

        ``metadata`` None: the record's own JSON form (an SRLM's metadata).
        """
        summary = usage.summary()
        record.execution_time = time.perf_counter() - started
        record.finished_at = time.time()
        record.set_usage(summary.to_dict())
        return RLMChatCompletion(
            root_model=self._root_model_name(),
            prompt=record.question,
            response=response,
            usage_summary=summary,
            execution_time=record.execution_time,
            metadata=record.model_dump() if metadata is None else metadata,
            record=record,
        )

    def _root_model_name(self) -> str:
        return str(self.backend_kwargs.get("model_name", self.backend))

    def _new_guard(self, usage: UsageTracker) -> LimitGuard:
        """The guard of one ``completion()``: its limits, reservations and the one
        sub-call gate that all its trajectories share (``lmrepl.limits``)."""
        guard = LimitGuard(
            usage,
            max_budget=self.max_budget,
            max_tokens=self.max_tokens,
            max_timeout=self.max_timeout,
            max_concurrent=self.max_concurrent_subcalls,
        )
        with self._guard_lock:
            self._guard = guard
        return guard

    def _clients(self) -> tuple[ModelClient, list[ModelClient]]:
        """The model clients, made once per RLM (they are thread-safe) and reused."""
        with self._guard_lock:
            if self._client_cache is None:
                root = make_client(self.backend, self.backend_kwargs)
                others = [make_client(b, kw) for b, kw in self.other_backends]
                self._client_cache = (root, others)
            return self._client_cache

    def _make_engine(
        self,
        *,
        temperature: float | None,
        confidence_instruction: str | None,
    ) -> Engine:
        root, others = self._clients()
        # Missing keys and unreachable servers fail here, before any REPL starts.
        for client in (root, *others):
            client.check()
        settings = EngineSettings(
            environment=self.environment,
            environment_kwargs=self.environment_kwargs,
            sandbox=sandbox_label(self.sandbox),
            max_depth=self.max_depth,
            max_iterations=self.max_iterations,
            child_max_iterations=self.child_max_iterations,
            max_errors=self.max_errors,
            max_output_chars=int(self.environment_kwargs.get("max_output_chars", 20_000)),
            max_concurrent_subcalls=self.max_concurrent_subcalls,
            custom_system_prompt=self.custom_system_prompt,
            child_system_prompt=self.child_system_prompt,
            tools=self.tools,
            tool_descriptions=self.tool_descriptions,
            sub_tools=self.sub_tools,
            sub_tool_descriptions=self.sub_tool_descriptions,
            compaction=self.compaction,
            compaction_threshold_pct=self.compaction_threshold_pct,
            # Compaction's threshold is a share of the root model's window.
            context_window_tokens=root.context_window or DEFAULT_CONTEXT_WINDOW,
            confidence_instruction=confidence_instruction,
            temperature=temperature,
            hold_unseen_final=self.hold_unseen_final,
        )
        return Engine(settings, root, others, self.bus, self.backend)

    def _attach_consumers(self) -> Callable[[], None]:
        """Logger, terminal progress and callbacks for one run; returns the detacher."""
        detach: list[Callable[[], None]] = []
        if self.logger is not None:
            detach.append(self.bus.subscribe(self.logger))
        if self.verbose:
            from lmrepl.progress import TerminalProgress

            progress = TerminalProgress()
            detach.append(self.bus.subscribe(progress))
            detach.append(progress.close)
        if self._callbacks:
            detach.append(self.bus.subscribe(self._callbacks))

        def undo() -> None:
            for fn in detach:
                fn()

        return undo

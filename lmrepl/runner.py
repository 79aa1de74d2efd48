"""One trajectory: the loop of model reply → code in the REPL → output → reply.

Used for the root run, for every child RLM (``rlm_query``) and for each SRLM
candidate. Everything it does is published as events on the engine's bus.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from lmrepl.clients.base import CallOptions, Completion, Message, ModelClient
from lmrepl.compaction import compact_messages, needs_compaction
from lmrepl.confidence import strip_confidence
from lmrepl.engine import Engine
from lmrepl.errors import BackendError, ErrorLimitExceeded, LimitExceeded, RunCancelled, RunStopped
from lmrepl.events import (
    Event,
    IterationStarted,
    ModelCallFinished,
    ModelCallStarted,
    RunFinished,
    RunStarted,
)
from lmrepl.limits import LimitGuard
from lmrepl.parsing import strip_fences
from lmrepl.prompts import (
    FINAL_REQUEST,
    NO_CODE_NUDGE,
    REPEATED_CODE_NOTE,
    build_system_prompt,
    describe_context,
    first_user_message,
    step_feedback,
)
from lmrepl.repl.base import REPL
from lmrepl.steps import StepActions
from lmrepl.subcalls import SubcallBridge
from lmrepl.usage import UsageTracker


@dataclass
class TrajectoryResult:
    """What one trajectory produced."""

    run_id: str
    status: str  # done | no_answer | failed | cancelled | stopped
    answer: str | None
    steps: list[dict[str, Any]] = field(default_factory=list)
    subcalls: list[dict[str, Any]] = field(default_factory=list)
    children: list[dict[str, Any]] = field(default_factory=list)
    iterations: int = 0
    execution_time: float = 0.0
    error: str | None = None
    draft: str | None = None
    output_tokens: int = 0

    def metadata(self) -> dict[str, Any]:
        """The trajectory as plain data."""
        return {
            "run_id": self.run_id,
            "status": self.status,
            "answer": self.answer,
            "steps": self.steps,
            "subcalls": self.subcalls,
            "children": self.children,
            "iterations": self.iterations,
            "execution_time": self.execution_time,
            "error": self.error,
            "length": self.output_tokens,
        }


def _model_names(engine: Engine) -> list[str]:
    """Model names for sub-calls, the default first."""
    default = engine.subcall_client(None)
    return [default.model_name] + [c.model_name for c in engine.all_clients() if c is not default]


class Trajectory(StepActions):
    """Runs one RLM trajectory against a REPL."""

    def __init__(
        self,
        engine: Engine,
        *,
        guard: LimitGuard,
        usage: UsageTracker,
        depth: int = 0,
        candidate: int | None = None,
        parent_run_id: str | None = None,
        repl: REPL | None = None,
        client: ModelClient | None = None,
        run_id: str | None = None,
    ) -> None:
        self.engine = engine
        self.guard = guard
        self.usage = usage
        self.depth = depth
        self.candidate = candidate
        self.parent_run_id = parent_run_id
        self.repl = repl
        self.client = client or engine.root_client
        self.run_id = run_id or uuid.uuid4().hex[:12]
        self.steps: list[dict[str, Any]] = []
        self.subcalls: list[dict[str, Any]] = []
        #: Trajectories of the child RLMs this one started (their own steps and sub-calls).
        self.children: list[dict[str, Any]] = []
        s = engine.settings
        self.is_child = depth > 0 and parent_run_id is not None
        self.tools = s.sub_tools if self.is_child else s.tools
        descriptions = s.sub_tool_descriptions if self.is_child else s.tool_descriptions
        custom = s.child_system_prompt if self.is_child else s.custom_system_prompt
        self.system_prompt = build_system_prompt(
            custom,
            descriptions,
            child=self.is_child,
            confidence_instruction=s.confidence_instruction,
            models=_model_names(engine),
        )
        self.max_iterations = (
            (s.child_max_iterations or s.max_iterations) if self.is_child else s.max_iterations
        )

    # -- plumbing used by the bridge ---------------------------------------------------
    def publish(self, cls: type[Event], **fields: Any) -> None:
        """Publish an event of this trajectory."""
        self.engine.bus.publish(
            cls(run_id=self.run_id, depth=self.depth, candidate=self.candidate, **fields)
        )

    def record_subcall(self, record: dict[str, Any]) -> None:
        """Keep a sub-call in the trajectory (list.append is atomic)."""
        self.subcalls.append(record)

    def model_call(
        self, messages: list[Message], *, purpose: str, client: ModelClient | None = None
    ) -> Completion:
        """One model request under the run's limits, with events and usage."""
        client = client or self.client
        self.guard.check()
        call_id = uuid.uuid4().hex[:12]
        self.publish(
            ModelCallStarted,
            call_id=call_id,
            model=client.model_name,
            purpose=purpose,
            n_messages=len(messages),
        )
        s = self.engine.settings
        options = CallOptions(
            temperature=s.temperature, max_tokens=s.max_reply_tokens, timeout=self.guard.clamp(None)
        )
        started = time.perf_counter()
        try:
            completion = self.guard.wait_for(lambda: client.complete(messages, options))
        except BaseException as exc:
            self.publish(
                ModelCallFinished,
                call_id=call_id,
                model=client.model_name,
                purpose=purpose,
                duration=time.perf_counter() - started,
                error=f"{type(exc).__name__}: {exc}",
            )
            # A request cut short by the run's own deadline is that limit, not a backend fault.
            limit = self.guard.exceeded() if isinstance(exc, BackendError) else None
            if limit is not None:
                raise limit from exc
            raise
        self.usage.record(completion)
        self.publish(
            ModelCallFinished,
            call_id=call_id,
            model=client.model_name,
            purpose=purpose,
            input_tokens=completion.input_tokens,
            output_tokens=completion.output_tokens,
            cost=completion.cost or 0.0,
            duration=time.perf_counter() - started,
        )
        return completion

    def run_child(
        self, prompt: str, client: ModelClient, guard: LimitGuard | None = None
    ) -> tuple[str, str]:
        """A child RLM on ``prompt`` (its own REPL or a namespace of ours)."""
        child_repl = self.repl.make_child() if self.repl is not None else None
        child = Trajectory(
            self.engine,
            guard=guard or self.guard,
            usage=self.usage.child(),
            depth=self.depth + 1,
            candidate=self.candidate,
            parent_run_id=self.run_id,
            repl=child_repl,
            client=client,
        )
        result = child.run([prompt], prompt, own_repl=True)
        self.children.append(result.metadata())
        if result.answer is None:
            raise RuntimeError(f"the child RLM ended without an answer ({result.status})")
        return result.answer, child.run_id

    # -- the loop ---------------------------------------------------------------------
    def run(
        self,
        contexts: list[Any],
        question: str,
        *,
        history: list[dict[str, Any]] | None = None,
        own_repl: bool = True,
        new_context_start: int = 0,
    ) -> TrajectoryResult:
        """Run the loop to an answer; raises ``RunStopped`` subclasses with the partial."""
        started = time.perf_counter()
        result = TrajectoryResult(run_id=self.run_id, status="failed", answer=None)
        created_repl = self.repl is None
        bridge = SubcallBridge(self, {k: v for k, v in self.tools.items() if callable(v)})
        info = describe_context(contexts)
        self.publish(
            RunStarted,
            question=question,
            context_info=info,
            backend=self.engine.backend,
            model=self.client.model_name,
            environment=self.engine.settings.environment,
            parent_run_id=self.parent_run_id,
        )
        try:
            self._prepare_repl(bridge, contexts, history, new_context_start)
            result.answer, result.status = self._loop(bridge, question, info, len(history or []))
        except (LimitExceeded, RunCancelled) as exc:
            result.status = "cancelled" if isinstance(exc, RunCancelled) else "stopped"
            result.error = str(exc)
            self._finish(result, started)
            exc.partial_answer = self._partial()
            exc.usage = self.usage.summary()
            exc.metadata = result.metadata()
            raise
        except KeyboardInterrupt:
            # Stop the running cell and calls in flight, keep what the model drafted.
            self.guard.cancel()
            self._draft = self._current_draft() or self._draft
            result.status, result.error = "cancelled", "interrupted (KeyboardInterrupt)"
            self._finish(result, started)
            raise
        except BaseException as exc:
            result.status = "failed"
            result.error = f"{type(exc).__name__}: {exc}"
            self._finish(result, started)
            raise
        finally:
            if created_repl and own_repl and self.repl is not None:
                self.repl.close()
        self._finish(result, started)
        return result

    def _prepare_repl(
        self,
        bridge: SubcallBridge,
        contexts: list[Any],
        history: list[dict[str, Any]] | None,
        new_context_start: int,
    ) -> None:
        reused = self.repl is not None and new_context_start > 0
        if self.repl is None:
            self.repl = self.engine.new_repl()
        self.repl.start(bridge)
        for ctx in contexts[new_context_start:]:
            self.repl.add_context(ctx)
        if self.tools:
            self.repl.set_tools(self.tools)
        if history is not None:
            self.repl.set_history(history)
        if reused:  # a persistent session's REPL still holds the last turn's submission
            self.repl.reset_submission()

    def _finish(self, result: TrajectoryResult, started: float) -> None:
        result.steps = self.steps
        result.subcalls = self.subcalls
        result.children = self.children
        result.iterations = len(self.steps)
        result.execution_time = time.perf_counter() - started
        result.output_tokens = self.usage.output_tokens
        result.draft = self._draft
        inp, out, cost = self.usage.totals()
        self.publish(
            RunFinished,
            status=result.status if result.status != "no_answer" else "done",
            answer=result.answer,
            error=result.error,
            execution_time=result.execution_time,
            iterations=result.iterations,
            input_tokens=inp,
            output_tokens=out,
            cost=cost,
        )

    def _current_draft(self) -> str | None:
        if self.repl is None:
            return None
        try:
            return self.repl.draft()
        except Exception:
            return None

    def _partial(self) -> str | None:
        return self._draft or self._last_prose

    def _loop(
        self, bridge: SubcallBridge, question: str, info: str, history_turns: int
    ) -> tuple[str | None, str]:
        messages: list[Message] = [
            {"role": "system", "content": self.system_prompt},
            {"role": "user", "content": first_user_message(question, info, history_turns)},
        ]
        errors_in_row = 0
        previous_code: list[str] | None = None
        s = self.engine.settings
        for iteration in range(1, self.max_iterations + 1):
            self.guard.check()
            self.publish(IterationStarted, iteration=iteration)
            t0 = time.perf_counter()
            reply = self.model_call(messages, purpose="root").text
            answer, outputs, cells, blocks, failed = self._act(bridge, reply, iteration)
            errors_in_row = errors_in_row + 1 if failed else 0
            self._record_step(iteration, reply, blocks, outputs, cells, answer, t0)
            if answer is not None:
                return answer, "done"
            if s.max_errors is not None and errors_in_row >= s.max_errors:
                raise ErrorLimitExceeded(f"max_errors: {errors_in_row} failing steps in a row")
            feedback = (
                step_feedback(outputs, question, iteration, self.max_iterations - iteration)
                if blocks
                else (outputs[0] if outputs else NO_CODE_NUDGE)
            )
            if blocks and blocks == previous_code:
                feedback += "\n" + REPEATED_CODE_NOTE
            previous_code = blocks or previous_code
            messages += [
                {"role": "assistant", "content": reply},
                {"role": "user", "content": feedback},
            ]
            if s.compaction and needs_compaction(
                messages, s.context_window_tokens, s.compaction_threshold_pct
            ):
                messages = compact_messages(self, messages)
        return self._final_request(bridge, messages)

    def _final_request(
        self, bridge: SubcallBridge, messages: list[Message]
    ) -> tuple[str | None, str]:
        """Out of iterations: ask once for the answer, run its code once, else take its text."""
        self.guard.check()
        iteration = len(self.steps) + 1
        self.publish(IterationStarted, iteration=iteration)
        t0 = time.perf_counter()
        msgs = [*messages, {"role": "user", "content": FINAL_REQUEST}]
        reply = self.model_call(msgs, purpose="final").text
        answer, outputs, cells, blocks, _ = self._act(bridge, reply, iteration)
        if answer is None and not blocks:
            text = strip_confidence(strip_fences(reply)).strip()
            answer = text or (self._draft.strip() if self._draft else None) or None
        self._record_step(iteration, reply, blocks, outputs, cells, answer, t0)
        return (answer, "done") if answer else (None, "no_answer")


__all__ = ["BackendError", "RunStopped", "Trajectory", "TrajectoryResult"]

"""One trajectory: the loop of model reply → code in the REPL → output → reply.

Used for the root run, for every child RLM (``rlm_query``) and for each SRLM
candidate. Everything it does is published as events on the engine's bus, and
everything it produced is in its ``RunRecord``, filled as it goes.

The parts it composes each get only what they need: ``StepRunner`` (a reply's cells),
``SubcallBridge`` (host calls from model code), ``ModelCaller`` and ``Publisher``.
"""

from __future__ import annotations

import re
import time
import uuid
from functools import partial
from typing import Any

from lmrepl.calls import ModelCaller, Publisher
from lmrepl.clients.base import Message, ModelClient
from lmrepl.compaction import needs_compaction, summarize
from lmrepl.confidence import CONFIDENCE_REMINDER
from lmrepl.conversation import Conversation
from lmrepl.engine import Engine
from lmrepl.errors import ErrorLimitExceeded, LimitExceeded, RunCancelled
from lmrepl.events import IterationFinished, IterationStarted, RunFinished, RunStarted
from lmrepl.limits import LimitGuard
from lmrepl.prompts import (
    NO_CODE_NUDGE,
    REPEATED_CODE_NOTE,
    build_system_prompt,
    describe_context,
    final_request,
    first_user_message,
    step_feedback,
)
from lmrepl.records import RunRecord, RunStatus, StepRecord, StopReason
from lmrepl.repl.base import REPL
from lmrepl.repl.runtime import DEFAULT_MAX_PROMPT_CHARS
from lmrepl.steps import StepRunner, step_record
from lmrepl.subcalls import SubcallBridge
from lmrepl.usage import UsageTracker

_CELL_NUMBER = re.compile(r"\b(Cell In|In|Out)\s*\[\d+\]")


def same_outputs(a: list[str], b: list[str]) -> bool:
    """True when two steps' outputs are the same but for IPython's cell numbers."""
    return len(a) == len(b) and all(
        _CELL_NUMBER.sub("", x) == _CELL_NUMBER.sub("", y) for x, y in zip(a, b, strict=True)
    )


def _join_notes(*notes: str | None) -> str | None:
    """The notes that apply, one per line; None when none does."""
    return "\n".join(n for n in notes if n) or None


def _model_names(engine: Engine) -> list[str]:
    """Model names for sub-calls, the default first."""
    default = engine.subcall_client(None)
    return [default.model_name] + [c.model_name for c in engine.all_clients() if c is not default]


class Trajectory:
    """Runs one RLM trajectory against a REPL and fills its ``record``."""

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
        record: RunRecord | None = None,
    ) -> None:
        self.engine = engine
        self.guard = guard
        self.usage = usage
        self.depth = depth
        self.candidate = candidate
        self.repl = repl
        self.client = client or engine.root_client
        self.run_id = run_id or uuid.uuid4().hex[:12]
        #: Everything this trajectory produced (an SRLM passes its candidate's record).
        self.record = record if record is not None else RunRecord()
        self.record.run_id, self.record.depth = self.run_id, depth
        self.record.parent_run_id = parent_run_id
        s = engine.settings
        self.publish = Publisher(engine.bus, self.run_id, depth, candidate)
        self.call_model = ModelCaller(
            self.client,
            guard=guard,
            usage=usage,
            publish=self.publish,
            temperature=s.temperature,
            max_reply_tokens=s.max_reply_tokens,
            # A child RLM's every request is a sub-call of the run: it takes a gate slot.
            gated=depth > 0 and parent_run_id is not None,
        )
        self.is_child = depth > 0 and parent_run_id is not None
        self.tools = s.sub_tools if self.is_child else s.tools
        descriptions = s.sub_tool_descriptions if self.is_child else s.tool_descriptions
        self.system_prompt = build_system_prompt(
            s.child_system_prompt if self.is_child else s.custom_system_prompt,
            descriptions,
            child=self.is_child,
            confidence_instruction=s.confidence_instruction,
            models=_model_names(engine),
        )
        self.max_iterations = (
            (s.child_max_iterations or s.max_iterations) if self.is_child else s.max_iterations
        )
        self._steps: StepRunner | None = None

    def partial(self) -> str | None:
        """The best partial answer so far: the model's draft, else its last prose."""
        if self._steps is None:
            return None
        return self._steps.draft or self._steps.last_prose

    # -- the run --------------------------------------------------------------------
    def run(
        self,
        contexts: list[Any],
        question: str,
        *,
        history: list[dict[str, Any]] | None = None,
        own_repl: bool = True,
        new_context_start: int = 0,
    ) -> RunRecord:
        """Run the loop to an answer; raises ``RunStopped`` subclasses with the partial."""
        started = time.perf_counter()
        rec = self.record
        rec.question, rec.status, rec.started_at = question, "running", time.time()
        created_repl = self.repl is None
        s = self.engine.settings
        bridge = SubcallBridge(
            call_model=self.call_model,
            # As in lm-repl and rlms: a child RLM starts only when its depth (this one's
            # + 1) stays below max_depth; otherwise rlm_query is a plain model call.
            run_child=self._run_child if self.depth + 1 < s.max_depth else None,
            choose_client=self.engine.subcall_client,
            publish=self.publish,
            record=rec.subcalls.append,
            guard=self.guard,
            max_concurrent=s.max_concurrent_subcalls,
            depth=self.depth,
            tools={k: v for k, v in self.tools.items() if callable(v)},
            max_prompt_chars=int(
                s.environment_kwargs.get("max_prompt_chars", DEFAULT_MAX_PROMPT_CHARS)
            ),
        )
        info = describe_context(contexts)
        self.publish(
            RunStarted,
            question=question,
            context_info=info,
            backend=self.engine.backend,
            model=self.client.model_name,
            environment=s.environment,
            sandbox=s.sandbox,
            parent_run_id=rec.parent_run_id,
        )
        try:
            repl = self._prepare_repl(bridge, contexts, history, new_context_start)
            steps = self._steps = StepRunner(
                repl,
                scope=bridge,
                guard=self.guard,
                publish=self.publish,
                cell_timeout=s.environment_kwargs.get("cell_timeout", 60.0),
                max_output_chars=s.max_output_chars,
                question=question,
                description=info,
                hold_unseen_final=s.hold_unseen_final,
            )
            intro = first_user_message(question, info, len(history or []))
            rec.answer, rec.status, rec.stop_reason = self._loop(steps, question, intro)
        except (LimitExceeded, RunCancelled) as exc:
            cancelled = isinstance(exc, RunCancelled)
            rec.status = "cancelled" if cancelled else "stopped"
            rec.stop_reason = "cancelled" if cancelled else "limit"
            rec.error = str(exc)
            self._finish(started)
            exc.partial_answer = self.partial()
            exc.usage = self.usage.summary()
            exc.metadata = rec.model_dump()
            raise
        except KeyboardInterrupt:
            # Stop the running cell and calls in flight, keep what the model drafted.
            self.guard.cancel()
            if self._steps is not None:
                self._steps.draft = self._steps.current_draft()
            rec.status, rec.error = "cancelled", "interrupted (KeyboardInterrupt)"
            rec.stop_reason = "cancelled"
            self._finish(started)
            raise
        except BaseException as exc:
            rec.status, rec.error = "failed", f"{type(exc).__name__}: {exc}"
            rec.stop_reason = "failed"
            self._finish(started)
            raise
        finally:
            if created_repl and own_repl and self.repl is not None:
                self.repl.close()
        self._finish(started)
        return rec

    def _run_child(self, prompt: str, client: ModelClient, guard: LimitGuard) -> tuple[str, str]:
        """A child RLM on ``prompt`` (its own REPL or a namespace of ours)."""
        child = Trajectory(
            self.engine,
            guard=guard,
            usage=self.usage.child(),
            depth=self.depth + 1,
            candidate=self.candidate,
            parent_run_id=self.run_id,
            repl=self.repl.make_child() if self.repl is not None else None,
            client=client,
        )
        try:
            record = child.run([prompt], prompt, own_repl=True)
        finally:
            self.record.children.append(child.record)
        if record.answer is None:
            raise RuntimeError(f"the child RLM ended without an answer ({record.status})")
        return record.answer, child.run_id

    def _prepare_repl(
        self,
        bridge: SubcallBridge,
        contexts: list[Any],
        history: list[dict[str, Any]] | None,
        new_context_start: int,
    ) -> REPL:
        reused = self.repl is not None and new_context_start > 0
        repl = self.repl = self.repl or self.engine.new_repl()
        repl.start(bridge)
        for ctx in contexts[new_context_start:]:
            repl.add_context(ctx)
        if self.tools:
            repl.set_tools(self.tools)
        if history is not None:
            repl.set_history(history)
        if reused:  # a persistent session's REPL still holds the last turn's submission
            repl.reset_submission()
        return repl

    def _finish(self, started: float) -> None:
        rec = self.record
        summary = self.usage.summary()
        rec.iterations = len(rec.steps)
        rec.execution_time = time.perf_counter() - started
        rec.finished_at = time.time()
        rec.length = summary.total_output_tokens
        rec.set_usage(summary.to_dict())
        self.publish(
            RunFinished,
            status="done" if rec.status == "no_answer" else rec.status,
            answer=rec.answer,
            error=rec.error,
            execution_time=rec.execution_time,
            iterations=rec.iterations,
            input_tokens=rec.input_tokens,
            output_tokens=rec.output_tokens,
            cost=rec.cost,
            grounded=rec.grounded,
            stop_reason=rec.stop_reason,
        )

    def _add_step(self, step: StepRecord) -> None:
        self.record.steps.append(step)
        self.publish(IterationFinished, step=step)

    def _loop(
        self, steps: StepRunner, question: str, intro: str
    ) -> tuple[str | None, RunStatus, StopReason]:
        """The turns of the run; ``max_iterations`` counts every one of them.

        Turns 1 to ``max_iterations - 1`` are free. The last turn is the forced one: the
        model is asked for its answer (``final_request``), its code runs once, and
        without a submission its text or draft is taken. An answer from that turn has
        ``stop_reason="max_iterations"``. Code repeated with the same output moves the
        forced turn earlier (``stop_reason="stuck"``).
        """
        conversation = Conversation(self.system_prompt, intro)
        errors_in_row = 0
        previous_code: list[str] | None = None
        last_outputs: list[str] = []
        s = self.engine.settings
        for iteration in range(1, self.max_iterations):
            self.guard.check()
            self.publish(IterationStarted, iteration=iteration)
            t0 = time.perf_counter()
            reply = self.call_model(self._fitted(conversation), purpose="root").text
            out = steps.act(reply, iteration)
            errors_in_row = errors_in_row + 1 if out.failed else 0
            self._add_step(step_record(iteration, reply, out, t0))
            if out.answer is not None:
                self.record.grounded = out.grounded
                return out.answer, "done", "answered"
            if s.max_errors is not None and errors_in_row >= s.max_errors:
                raise ErrorLimitExceeded(f"max_errors: {errors_in_row} failing steps in a row")
            repeated = bool(out.blocks) and out.blocks == previous_code
            # The same code with the same output: another step would not differ.
            stuck = repeated and not out.failed and same_outputs(out.outputs, last_outputs)
            previous_code = out.blocks or previous_code
            last_outputs = out.outputs or last_outputs
            if out.blocks:
                frame = partial(
                    step_feedback,
                    question=question,
                    iteration=iteration,
                    remaining=self.max_iterations - iteration,
                    note=_join_notes(
                        REPEATED_CODE_NOTE if repeated else None,
                        CONFIDENCE_REMINDER if s.confidence_instruction else None,
                    ),
                )
                conversation.add_step(reply, out.outputs, frame)
            else:
                conversation.add_step(reply, out.outputs[:1] or [NO_CODE_NUDGE])
            if s.compaction and needs_compaction(
                conversation.messages(), s.context_window_tokens, s.compaction_threshold_pct
            ):
                conversation.compact(summarize(self.call_model, self._fitted(conversation)))
            if stuck:
                request = final_request(last_outputs, repeated=True)
                return self._final_request(steps, conversation, request, "stuck")
        request = final_request(last_outputs)
        return self._final_request(steps, conversation, request, "max_iterations")

    def _fitted(
        self, conversation: Conversation, tail: list[Message] | None = None
    ) -> list[Message]:
        """The conversation (plus ``tail``) as messages that fit the root model's window."""
        return conversation.fitted(self.call_model.prompt_budget(), self.client.count_tokens, tail)

    def _final_request(
        self, steps: StepRunner, conversation: Conversation, request: str, reason: StopReason
    ) -> tuple[str | None, RunStatus, StopReason]:
        """The forced last turn: ask for the answer, run its code once, else take its text."""
        self.guard.check()
        iteration = len(self.record.steps) + 1
        self.publish(IterationStarted, iteration=iteration)
        t0 = time.perf_counter()
        msgs = self._fitted(conversation, [{"role": "user", "content": request}])
        reply = self.call_model(msgs, purpose="final").text
        # The last chance: not held, and without an answer its text, the draft or the
        # answer held earlier is taken rather than nothing.
        out = steps.act(reply, iteration, final=True)
        if out.answer is None:
            out.answer, out.grounded = steps.last_resort(
                reply, ran_code=bool(out.blocks), outputs=out.outputs
            )
        step = step_record(iteration, reply, out, t0)
        step.notices.append(
            f"Forced final answer ({reason}): the model was asked for its answer "
            + ("after repeating the same code." if reason == "stuck" else "on its last turn.")
        )
        self._add_step(step)
        self.record.grounded = out.grounded
        return (out.answer, "done", reason) if out.answer else (None, "no_answer", reason)

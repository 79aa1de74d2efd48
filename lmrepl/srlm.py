"""``SRLM``: K candidate trajectories, self-consistency, and VC·Len selection (SPEC §6)."""

from __future__ import annotations

import contextlib
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from lmrepl import config
from lmrepl.calls import ModelCaller, Publisher
from lmrepl.confidence import CONFIDENCE_INSTRUCTION
from lmrepl.engine import Engine
from lmrepl.errors import AllCandidatesFailed, ConfigurationError, RunCancelled, RunStopped
from lmrepl.events import CandidateFinished, CandidateQueued, SearchFinished, SearchStarted
from lmrepl.limits import LimitGuard
from lmrepl.records import CandidateRecord, Cluster, SearchRecord
from lmrepl.repl.sandbox import Sandbox
from lmrepl.rlm import RLM, question_text
from lmrepl.runner import Trajectory
from lmrepl.scoring import search_warnings, select_winner, vc_score
from lmrepl.selection import cluster_answers
from lmrepl.srlm_direct import context_length, direct_answer
from lmrepl.stops import close_search_record, interrupted
from lmrepl.types import RLMChatCompletion
from lmrepl.usage import UsageTracker


@dataclass
class _CandidateRun:
    """A candidate's record plus what only its run needs: its guard and usage."""

    record: CandidateRecord
    guard: LimitGuard
    usage: UsageTracker
    #: The draft or last prose of a candidate that was cancelled (the search's partial
    #: answer when no candidate finished).
    partial: str | None = None

    @property
    def index(self) -> int:
        """The candidate's number."""
        return self.record.index

    @property
    def status(self) -> str:
        """Its record's status."""
        return self.record.status

    @property
    def answer(self) -> str | None:
        """Its record's answer."""
        return self.record.answer

    def run_id(self, search_id: str) -> str:
        """The run id of its trajectory."""
        return f"{search_id}-c{self.index}"


class SRLM(RLM):
    """Self-reflective program search over K RLM trajectories.

    ``direct_threshold``: contexts shorter than this many characters get one direct
    model call. ``n_candidates`` trajectories run, ``candidate_parallel`` at a time,
    each with its own REPL, sampled at ``candidate_temperature``. With
    ``confidence_elicitation`` every step reports ``{"confidence": N}``, which feeds VC.
    ``early_stop`` cancels the remaining candidates once a majority cannot be overturned.
    """

    @config.checked(extends=RLM.__init__)
    def __init__(
        self,
        direct_threshold: int = 0,
        n_candidates: int = 1,
        candidate_parallel: int = 1,
        candidate_temperature: float | None = None,
        confidence_elicitation: bool = False,
        early_stop: bool = False,
        **rlm_kwargs: Any,
    ) -> None:
        super().__init__(**rlm_kwargs)
        config.check_arguments(
            {
                "direct_threshold": direct_threshold,
                "n_candidates": n_candidates,
                "candidate_parallel": candidate_parallel,
                "candidate_temperature": candidate_temperature,
                "confidence_elicitation": confidence_elicitation,
                "early_stop": early_stop,
            }
        )
        if self.persistent:
            raise ConfigurationError(
                "persistent must be False for an SRLM (its candidates are independent), got True"
            )
        self.direct_threshold = direct_threshold
        self.n_candidates = n_candidates
        self.candidate_parallel = candidate_parallel
        self.candidate_temperature = (
            float(candidate_temperature) if candidate_temperature is not None else None
        )
        self.confidence_elicitation = confidence_elicitation
        self.early_stop = early_stop
        # Kernels start in the background now, while the caller prepares the question.
        _prewarm(self._pooled(), min(n_candidates, candidate_parallel))

    def _pooled(self) -> Sandbox | None:
        """The sandbox whose warm pool the candidates take kernels from (None: no pool).

        Kernels behind a Jupyter gateway come from the gateway, never from a local pool.
        """
        if self.sandbox is None or self.sandbox.kind == "gateway":
            return None
        return self.sandbox if self.environment_kwargs.get("use_pool", True) else None

    def completion(self, prompt: Any, root_prompt: str | None = None) -> RLMChatCompletion:
        """Search K trajectories for the answer to ``root_prompt`` about ``prompt``."""
        config.before_completion(self, prompt, root_prompt)
        question = question_text(root_prompt)
        started = time.perf_counter()
        instruction = CONFIDENCE_INSTRUCTION if self.confidence_elicitation else None
        engine = self._make_engine(
            temperature=self.candidate_temperature, confidence_instruction=instruction
        )
        usage = UsageTracker()
        guard = self._new_guard(usage)
        unsubscribe = self._attach_consumers()
        try:
            if context_length(prompt) < self.direct_threshold:
                return self._direct(engine, guard, usage, prompt, question, started)
            return self._search(engine, guard, usage, prompt, question, started)
        finally:
            unsubscribe()
            with self._guard_lock:
                self._guard = None

    # -- direct mode --------------------------------------------------------------------
    def _direct(
        self,
        engine: Engine,
        guard: LimitGuard,
        usage: UsageTracker,
        prompt: Any,
        question: str,
        started: float,
    ) -> RLMChatCompletion:
        run_id = "direct"
        record = self._new_record("srlm", question, [prompt])
        record.mode = "direct"
        engine.bus.publish(
            SearchStarted(
                run_id=run_id,
                mode="direct",
                n_candidates=1,
                candidate_parallel=1,
                question=question,
            )
        )
        publish = Publisher(engine.bus, run_id, 0, 0)
        call_model = ModelCaller(
            engine.root_client,
            guard=guard,
            usage=usage,
            publish=publish,
            temperature=engine.settings.temperature,
        )
        cand = record.candidate(0)
        cand.run_id, cand.question, cand.started_at = run_id, question, time.time()
        try:
            answer = direct_answer(call_model, prompt, question)
        except (KeyboardInterrupt, RunCancelled) as exc:
            cand.status = record.status = "cancelled"
            cand.stop_reason = record.stop_reason = "cancelled"
            cand.error = record.error = "cancelled before the direct answer came"
            self.last_partial = self._result(record, None, usage, started, "")
            if isinstance(exc, RunCancelled):
                exc.metadata, exc.record = self.last_partial.metadata, record
                raise
            raise interrupted(exc, self.last_partial) from exc
        cand.status, cand.answer, cand.cluster = "done", answer, 0
        cand.stop_reason = record.stop_reason = "answered"
        cand.set_usage(usage.summary().to_dict())
        cand.length, cand.finished_at = cand.output_tokens, time.time()
        cand.execution_time = cand.finished_at - cand.started_at
        record.clusters = [Cluster(answer=answer, members=[0], votes=1)]
        record.winner, record.survivors, record.selection_reason = 0, [0], "only"
        record.answer, record.status = answer, "done"
        result = self._result(record, None, usage, started, answer)
        engine.bus.publish(SearchFinished(run_id=run_id, record=record))
        return result

    # -- the search ---------------------------------------------------------------------
    def _search(
        self,
        engine: Engine,
        guard: LimitGuard,
        usage: UsageTracker,
        prompt: Any,
        question: str,
        started: float,
    ) -> RLMChatCompletion:
        k = self.n_candidates
        search_id = f"search-{int(time.time() * 1000) % 10**9}"
        record = self._new_record("srlm", question, [prompt], k, self.candidate_parallel)
        bus = engine.bus
        bus.publish(
            SearchStarted(
                run_id=search_id,
                mode="rlm",
                n_candidates=k,
                candidate_parallel=self.candidate_parallel,
                question=question,
            )
        )
        _prewarm(self._pooled(), min(k, self.candidate_parallel))
        cands = [
            _CandidateRun(record.candidate(i), guard.derive(), usage.child()) for i in range(k)
        ]
        for c in cands:
            bus.publish(CandidateQueued(run_id=c.run_id(search_id), candidate=c.index))
        lock = threading.Lock()

        def run(c: _CandidateRun) -> None:
            if c.guard.cancelled:
                c.record.status = "cancelled"
                c.record.error = "cancelled before it started"
            else:
                self._run_candidate(engine, c, prompt, question, search_id)
            # A copy: selection still sets the candidate's cluster and score.
            snapshot = c.record.model_copy(deep=True)
            bus.publish(
                CandidateFinished(run_id=c.run_id(search_id), candidate=c.index, record=snapshot)
            )
            if self.early_stop:
                with lock:
                    _maybe_stop_early(cands)

        pool = ThreadPoolExecutor(
            max_workers=self.candidate_parallel, thread_name_prefix="lmrepl-cand"
        )
        futures: list[Future[None]] = [pool.submit(run, c) for c in cands]
        try:
            with _refill_held(self._pooled(), k, self.candidate_parallel):
                for f in futures:
                    f.result()
        except BaseException as exc:
            guard.cancel()
            pool.shutdown(wait=True, cancel_futures=True)
            stopped_by_user = isinstance(exc, KeyboardInterrupt | RunCancelled)
            self.last_partial = self._finish(
                engine, usage, record, started, search_id, stopped_by_user
            )
            if isinstance(exc, KeyboardInterrupt) and not isinstance(exc, RunStopped):
                raise interrupted(exc, self.last_partial, _partial(record, cands)) from exc
            raise
        pool.shutdown(wait=True)
        cancelled = guard.cancelled
        result = self._finish(engine, usage, record, started, search_id, cancelled)
        if cancelled:
            self.last_partial = result
            raise RunCancelled(
                "the search was cancelled",
                partial_answer=_partial(record, cands),
                usage=result.usage_summary,
                metadata=result.metadata,
                record=record,
            )
        if record.winner is None:
            errors = [f"candidate {c.index}: {c.error or c.status}" for c in record.candidates]
            raise AllCandidatesFailed(
                "every SRLM candidate failed:\n" + "\n".join(errors),
                errors=errors,
                usage=usage.summary(),
                metadata=result.metadata,
                record=record,
            )
        return result

    def _run_candidate(
        self, engine: Engine, c: _CandidateRun, prompt: Any, question: str, search_id: str
    ) -> None:
        rec = c.record
        trajectory = Trajectory(
            engine,
            guard=c.guard,
            usage=c.usage,
            depth=self.depth,
            candidate=c.index,
            run_id=c.run_id(search_id),
            record=rec,
        )
        try:
            trajectory.run([prompt], question)
            if rec.answer:
                rec.status = "done"
            else:
                rec.status, rec.error = "failed", "the trajectory ended without an answer"
        except RunCancelled as exc:
            c.partial = exc.partial_answer
            rec.status, rec.error, rec.answer = "cancelled", str(exc), None
            rec.grounded = None
        except Exception as exc:
            rec.status, rec.error = "failed", f"{type(exc).__name__}: {exc}"
        if self.confidence_elicitation:
            rec.vc = vc_score([s.confidence for s in rec.steps])

    def _finish(
        self,
        engine: Engine,
        usage: UsageTracker,
        record: SearchRecord,
        started: float,
        search_id: str,
        cancelled: bool = False,
    ) -> RLMChatCompletion:
        """Select the winner, close the record and publish it; ``cancelled``: the whole
        search was cancelled (its best answer so far is the partial answer)."""
        for c in record.candidates:
            if c.status in ("queued", "running"):
                c.status, c.error = "cancelled", c.error or "the search was interrupted"
        selection = select_winner(record.candidates, use_confidence=self.confidence_elicitation)
        for c in record.candidates:
            c.cluster = selection.cluster_of(c.index)
            c.score = selection.scores.get(c.index)
        winner = selection.winner
        record.clusters = list(selection.clusters)
        record.winner, record.survivors = winner, list(selection.survivors)
        record.selection_reason = selection.reason
        record.warnings += search_warnings(record, self.confidence_elicitation)
        record.answer = record.candidates[winner].answer if winner is not None else None
        record.status = "done" if winner is not None else "failed"
        record.error = None if winner is not None else "every candidate failed"
        close_search_record(record, cancelled=cancelled)
        result = self._result(record, None, usage, started, record.answer or "")
        engine.bus.publish(SearchFinished(run_id=search_id, record=record))
        return result


def _partial(record: SearchRecord, cands: list[_CandidateRun]) -> str | None:
    """A stopped search's best answer: its winner so far, else a cancelled one's draft."""
    return record.answer or next((c.partial for c in cands if c.partial), None)


def _maybe_stop_early(cands: list[_CandidateRun]) -> None:
    """Cancel the unfinished candidates once the leading cluster cannot be overturned."""
    done = [c for c in cands if c.status == "done" and c.answer]
    unfinished = [c for c in cands if c.status in ("queued", "running")]
    if not done or not unfinished:
        return
    votes = sorted((cl.votes for cl in cluster_answers([c.answer for c in done])), reverse=True)
    second = votes[1] if len(votes) > 1 else 0
    if votes[0] > second + len(unfinished):
        for c in unfinished:
            c.guard.cancel()
            c.record.error = "early stop: a majority was reached"


def _refill_held(
    sandbox: Sandbox | None, takes: int, parallel: int
) -> contextlib.AbstractContextManager[None]:
    """While candidates run, the kernel pool starts only the kernels they still need."""
    if sandbox is None:
        return contextlib.nullcontext()
    from lmrepl.repl.kernel_pool import default_pool

    return default_pool(sandbox).refill_held(takes, parallel)


def _prewarm(sandbox: Sandbox | None, n: int) -> None:
    """Start kernels ahead so parallel candidates do not each pay a cold start.

    ``sandbox`` is None for the in-process REPL, which has no kernels.
    """
    if sandbox is None:
        return
    from lmrepl.repl.kernel_pool import default_pool

    default_pool(sandbox).prewarm(n)

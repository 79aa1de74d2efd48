"""``SRLM``: K candidate trajectories, self-consistency, and VC·Len selection (SPEC §6)."""

from __future__ import annotations

import contextlib
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from lmrepl import config
from lmrepl.confidence import CONFIDENCE_INSTRUCTION
from lmrepl.engine import Engine
from lmrepl.errors import AllCandidatesFailed, RunCancelled, RunStopped
from lmrepl.events import CandidateFinished, CandidateQueued, SearchFinished, SearchStarted
from lmrepl.limits import LimitGuard
from lmrepl.rlm import DEFAULT_QUESTION, RLM
from lmrepl.runner import Trajectory
from lmrepl.scoring import (
    CandidateScore,
    candidate_record,
    clusters_record,
    select_winner,
    step_record,
    vc_score,
)
from lmrepl.selection import cluster_answers
from lmrepl.srlm_direct import context_length, direct_answer
from lmrepl.types import RLMChatCompletion
from lmrepl.usage import UsageTracker


@dataclass
class _Candidate:
    index: int
    guard: LimitGuard
    usage: UsageTracker
    status: str = "queued"
    answer: str | None = None
    error: str | None = None
    steps: list[dict[str, Any]] = field(default_factory=list)
    vc: float | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


class SRLM(RLM):
    """Self-reflective program search over K RLM trajectories.

    ``direct_threshold``: contexts shorter than this many characters get one direct
    model call. ``n_candidates`` trajectories run, ``candidate_parallel`` at a time,
    each with its own REPL, sampled at ``candidate_temperature``. With
    ``confidence_elicitation`` every step reports ``{"confidence": N}``, which feeds VC.
    ``early_stop`` cancels the remaining candidates once a majority cannot be overturned.
    """

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
        config.require_int("direct_threshold", direct_threshold, 0)
        config.require_int("n_candidates", n_candidates, 1)
        config.require_int("candidate_parallel", candidate_parallel, 1)
        if candidate_temperature is not None and (
            not isinstance(candidate_temperature, (int, float))
            or isinstance(candidate_temperature, bool)
            or candidate_temperature < 0
        ):
            raise ValueError(
                f"candidate_temperature must be >= 0 or None, got {candidate_temperature!r}"
            )
        for flag, value in (
            ("confidence_elicitation", confidence_elicitation),
            ("early_stop", early_stop),
        ):
            if not isinstance(value, bool):
                raise TypeError(f"{flag} must be True or False, got {value!r}")
        if self.persistent:
            raise ValueError("SRLM does not support persistent=True (candidates are independent)")
        self.direct_threshold = direct_threshold
        self.n_candidates = n_candidates
        self.candidate_parallel = candidate_parallel
        self.candidate_temperature = (
            float(candidate_temperature) if candidate_temperature is not None else None
        )
        self.confidence_elicitation = confidence_elicitation
        self.early_stop = early_stop
        # Kernels start in the background now, while the caller prepares the question.
        _prewarm(self.environment, min(n_candidates, candidate_parallel))

    def completion(self, prompt: Any, root_prompt: str | None = None) -> RLMChatCompletion:
        """Search K trajectories for the answer to ``root_prompt`` about ``prompt``."""
        question = root_prompt if root_prompt is not None else DEFAULT_QUESTION
        if not isinstance(question, str) or not question.strip():
            raise ValueError("the question (root_prompt) must be a non-empty string")
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
        engine.bus.publish(
            SearchStarted(
                run_id=run_id,
                mode="direct",
                n_candidates=1,
                candidate_parallel=1,
                question=question,
            )
        )
        trajectory = Trajectory(engine, guard=guard, usage=usage, candidate=0, run_id=run_id)
        answer = direct_answer(trajectory, prompt, question)
        record = {
            "index": 0,
            "status": "done",
            "answer": answer,
            "cluster": 0,
            "vc": None,
            "length": usage.output_tokens,
            "score": None,
            "usage": usage.summary().to_dict(),
            "error": None,
            "steps": [],
        }
        clusters = [{"answer": answer, "members": [0], "votes": 1}]
        meta = {
            "mode": "direct",
            "answer": answer,
            "candidates": [record],
            "clusters": clusters,
            "winner": 0,
        }
        engine.bus.publish(
            SearchFinished(
                run_id=run_id,
                answer=answer,
                winner=0,
                clusters=clusters,
                candidates=[record],
                execution_time=time.perf_counter() - started,
            )
        )
        return self._completion(question, answer, usage, started, meta, [prompt])

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
        _prewarm(self.environment, min(k, self.candidate_parallel))
        cands = [_Candidate(i, guard.derive(), usage.child()) for i in range(k)]
        for c in cands:
            bus.publish(CandidateQueued(run_id=f"{search_id}-c{c.index}", candidate=c.index))
        lock = threading.Lock()

        def run(c: _Candidate) -> None:
            if c.guard.cancelled:
                c.status = "cancelled"
                c.error = "cancelled before it started"
            else:
                c.status = "running"
                self._run_candidate(engine, c, prompt, question, search_id)
            bus.publish(
                CandidateFinished(
                    run_id=f"{search_id}-c{c.index}",
                    candidate=c.index,
                    status=c.status,
                    answer=c.answer,
                    error=c.error,
                    vc=c.vc,
                    length=c.usage.output_tokens,
                )
            )
            if self.early_stop:
                with lock:
                    _maybe_stop_early(cands)

        pool = ThreadPoolExecutor(
            max_workers=self.candidate_parallel, thread_name_prefix="lmrepl-cand"
        )
        futures: list[Future[None]] = [pool.submit(run, c) for c in cands]
        try:
            with _refill_held(self.environment, k, self.candidate_parallel):
                for f in futures:
                    f.result()
        except BaseException:
            guard.cancel()
            pool.shutdown(wait=True, cancel_futures=True)
            self.last_partial = self._finish(
                engine, usage, cands, question, started, search_id, prompt
            )
            raise
        pool.shutdown(wait=True)
        result = self._finish(engine, usage, cands, question, started, search_id, prompt)
        if result.metadata["winner"] is None:
            errors = [f"candidate {c.index}: {c.error or c.status}" for c in cands]
            raise AllCandidatesFailed(
                "every SRLM candidate failed:\n" + "\n".join(errors),
                errors=errors,
                usage=usage.summary(),
                metadata=result.metadata,
            )
        return result

    def _run_candidate(
        self, engine: Engine, c: _Candidate, prompt: Any, question: str, search_id: str
    ) -> None:
        trajectory = Trajectory(
            engine,
            guard=c.guard,
            usage=c.usage,
            depth=self.depth,
            candidate=c.index,
            run_id=f"{search_id}-c{c.index}",
        )
        try:
            res = trajectory.run([prompt], question)
            c.metadata = res.metadata()
            if res.answer:
                c.status, c.answer = "done", res.answer
            else:
                c.status, c.error = "failed", "the trajectory ended without an answer"
        except RunCancelled as exc:
            c.status, c.error = "cancelled", str(exc)
            c.answer = None
            c.metadata = exc.metadata
        except RunStopped as exc:
            c.status, c.error = "failed", f"{type(exc).__name__}: {exc}"
            c.metadata = exc.metadata
        except Exception as exc:
            c.status, c.error = "failed", f"{type(exc).__name__}: {exc}"
        c.steps = [step_record(s["code"], s["output"], s["confidence"]) for s in trajectory.steps]
        if self.confidence_elicitation:
            c.vc = vc_score([s["confidence"] for s in trajectory.steps])

    def _finish(
        self,
        engine: Engine,
        usage: UsageTracker,
        cands: list[_Candidate],
        question: str,
        started: float,
        search_id: str,
        prompt: Any,
    ) -> RLMChatCompletion:
        for c in cands:
            if c.status in ("queued", "running"):
                c.status, c.error = "cancelled", c.error or "the search was interrupted"
        scores = [
            CandidateScore(
                index=c.index,
                answer=c.answer,
                vc=c.vc,
                length=c.usage.output_tokens,
                status=c.status,
            )
            for c in cands
        ]
        selection = select_winner(scores, use_confidence=self.confidence_elicitation)
        records = [
            candidate_record(
                s, selection, usage=c.usage.summary().to_dict(), error=c.error, steps=c.steps
            )
            for s, c in zip(scores, cands, strict=True)
        ]
        clusters = clusters_record(selection)
        winner = selection.winner
        answer = cands[winner].answer if winner is not None else None
        meta = {
            "mode": "rlm",
            "answer": answer,
            "candidates": records,
            "clusters": clusters,
            "winner": winner,
            "survivors": selection.survivors,
            "selection_reason": selection.reason,
            "trajectories": [c.metadata for c in cands],
        }
        engine.bus.publish(
            SearchFinished(
                run_id=search_id,
                answer=answer,
                winner=winner,
                clusters=clusters,
                candidates=records,
                execution_time=time.perf_counter() - started,
                error=None if winner is not None else "every candidate failed",
            )
        )
        return self._completion(question, answer or "", usage, started, meta, [prompt])


def _maybe_stop_early(cands: list[_Candidate]) -> None:
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
            c.error = "early stop: a majority was reached"


def _refill_held(
    environment: str, takes: int, parallel: int
) -> contextlib.AbstractContextManager[None]:
    """While candidates run, the kernel pool starts only the kernels they still need."""
    if environment != "kernel":
        return contextlib.nullcontext()
    from lmrepl.repl.kernel_pool import default_pool

    return default_pool().refill_held(takes, parallel)


def _prewarm(environment: str, n: int) -> None:
    """Start kernels ahead so parallel candidates do not each pay a cold start."""
    if environment != "kernel":
        return
    from lmrepl.repl.kernel_pool import default_pool

    default_pool().prewarm(n)

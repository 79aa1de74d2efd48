"""Pure event -> state reducer behind the panel, the terminal view and the result.

``PanelState.apply(event)`` folds one engine event into a ``TrajectoryRecord`` plus a
little transient state (which cell is running right now). It does no I/O and touches
no widget, so it can be fed recorded event sequences in tests, and it is only ever
called from one thread (the magic's), which is what makes the widgets safe.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from lmrepl.events import (
    CandidateFinished,
    CandidateQueued,
    CellFinished,
    CellStarted,
    Event,
    IterationFinished,
    IterationStarted,
    ModelCallFinished,
    ModelCallStarted,
    RunFinished,
    RunStarted,
    SearchFinished,
    SearchStarted,
    SubcallStarted,
)
from lmrepl_jupyter.record import (
    CandidateRecord,
    ClusterRecord,
    StepRecord,
    TrajectoryRecord,
    to_plain,
)

HEADER = "header"
CLUSTERS = "clusters"
_FINISHED = frozenset({"done", "failed", "cancelled", "stopped"})


def _join(parts: Iterable[str]) -> str:
    return "\n\n".join(p for p in parts if p)


def _step_from_meta(step: dict[str, Any]) -> StepRecord:
    # Engines may give code/output per block (lists); the record keeps one text each.
    data = to_plain(step)
    for key in ("code", "output"):
        if isinstance(data.get(key), list):
            data[key] = _join(str(x) for x in data[key])
        elif data.get(key) is None:
            data[key] = ""
    return StepRecord.model_validate(data)


class PanelState:
    """The displayed state of one ``%%srlm`` / ``%%rlm`` run, built from events."""

    def __init__(self, kind: str = "srlm", question: str = "", n_candidates: int = 1) -> None:
        self.record = TrajectoryRecord(
            kind="rlm" if kind == "rlm" else "srlm",
            question=question,
            n_candidates=n_candidates,
        )
        # Code of the cell each candidate is running now (None when between cells).
        self.running_code: dict[int, str | None] = {}
        self.iteration: dict[int, int] = {}
        self.calls_in_flight = 0
        self._notices: dict[int, list[str]] = {}
        self._dirty: set[str | int] = {HEADER, CLUSTERS}
        for i in range(n_candidates):
            self.record.candidate(i)
            self._dirty.add(i)

    # -- bookkeeping -------------------------------------------------------------------

    def take_dirty(self) -> set[str | int]:
        """Parts changed since the last call: HEADER, CLUSTERS or candidate indices."""
        dirty, self._dirty = self._dirty, set()
        return dirty

    @property
    def finished(self) -> bool:
        """True once the run reached a final status."""
        return self.record.status in _FINISHED

    def elapsed(self, now: float | None = None) -> float:
        """Seconds since the run started (until it finished)."""
        rec = self.record
        if rec.started_at is None:
            return 0.0
        end = rec.finished_at if rec.finished_at is not None else (now or time.time())
        return max(0.0, end - rec.started_at)

    def activity(self, index: int) -> str | None:
        """What candidate ``index`` is doing now, for display (None when idle or done)."""
        if index >= len(self.record.candidates):
            return None
        cand = self.record.candidates[index]
        if cand.status != "running":
            return None
        step = self.iteration.get(index, 0)
        if self.running_code.get(index) is not None:
            return f"step {step}: running code…"
        if step > len(cand.steps):
            return f"step {step}: waiting for the model…"
        return None

    def _index(self, event: Event) -> int | None:
        # A plain RLM has no candidate index: its whole run is column 0. In a search,
        # events without a candidate belong to the search itself (e.g. direct mode).
        if event.candidate is not None:
            return event.candidate
        return 0 if self.record.kind == "rlm" else None

    def _cand(self, index: int) -> CandidateRecord:
        if index >= len(self.record.candidates):
            self._dirty.update(range(len(self.record.candidates), index + 1))
        self._dirty.add(index)
        return self.record.candidate(index)

    def _start(self, t: float) -> None:
        if self.record.started_at is None:
            self.record.started_at = t

    # -- the reducer -------------------------------------------------------------------

    def apply(self, event: Event) -> None:
        """Fold ``event`` into the state."""
        self._start(event.time)
        self._dirty.add(HEADER)
        idx = self._index(event)
        if isinstance(event, SearchStarted):
            self._search_started(event)
        elif isinstance(event, SearchFinished):
            self._search_finished(event)
        elif isinstance(event, ModelCallStarted):
            self.calls_in_flight += 1
        elif isinstance(event, ModelCallFinished):
            self._model_call(event, idx)
        elif idx is None:
            return
        elif isinstance(event, CandidateQueued):
            self._cand(idx).status = "queued"
        elif isinstance(event, RunStarted):
            self._run_started(event, idx)
        elif isinstance(event, RunFinished):
            self._run_finished(event, idx)
        elif isinstance(event, CandidateFinished):
            self._candidate_finished(event, idx)
        elif isinstance(event, SubcallStarted):
            self._cand(idx).subcalls += 1
        elif event.depth > 0:
            return  # a child RLM's steps are counted as sub-calls, not shown as steps
        elif isinstance(event, IterationStarted):
            self._cand(idx)
            self.iteration[idx] = event.iteration
        elif isinstance(event, CellStarted):
            self._cand(idx)
            self.running_code[idx] = event.code
        elif isinstance(event, CellFinished):
            self._cand(idx)
            self.running_code[idx] = None
            if event.notice:
                self._notices.setdefault(idx, []).append(event.notice)
            elif event.status not in ("ok", "error"):
                self._notices.setdefault(idx, []).append(f"cell {event.status}")
        elif isinstance(event, IterationFinished):
            self._iteration_finished(event, idx)

    def apply_all(self, events: Iterable[Event]) -> None:
        """Apply each of ``events`` in order."""
        for ev in events:
            self.apply(ev)

    def _search_started(self, ev: SearchStarted) -> None:
        rec = self.record
        rec.mode = ev.mode
        rec.question = rec.question or ev.question
        rec.n_candidates = ev.n_candidates
        rec.candidate_parallel = ev.candidate_parallel
        rec.status = "running"
        if ev.mode == "rlm":
            for i in range(ev.n_candidates):
                self._cand(i)
        else:
            # A direct answer has no candidate trajectories to show.
            rec.candidates = []

    def _search_finished(self, ev: SearchFinished) -> None:
        rec = self.record
        rec.answer = ev.answer
        rec.winner = ev.winner
        rec.error = ev.error
        rec.finished_at = ev.time
        rec.execution_time = ev.execution_time or self.elapsed()
        rec.status = "failed" if ev.error and ev.answer is None else "done"
        rec.clusters = [ClusterRecord.model_validate(c) for c in ev.clusters]
        self._dirty.add(CLUSTERS)
        for meta in ev.candidates:
            self._merge_candidate(meta)

    def _model_call(self, ev: ModelCallFinished, idx: int | None) -> None:
        rec = self.record
        self.calls_in_flight = max(0, self.calls_in_flight - 1)
        rec.model_calls += 1
        rec.input_tokens += ev.input_tokens
        rec.output_tokens += ev.output_tokens
        rec.cost += ev.cost
        if rec.model is None and ev.depth == 0:
            rec.model = ev.model
        if idx is not None:
            cand = self._cand(idx)
            cand.model_calls += 1
            cand.input_tokens += ev.input_tokens
            cand.output_tokens += ev.output_tokens

    def _run_started(self, ev: RunStarted, idx: int) -> None:
        cand = self._cand(idx)
        if ev.depth > 0:
            cand.child_runs += 1
            return
        rec = self.record
        cand.status = "running"
        cand.started_at = ev.time
        rec.question = rec.question or ev.question
        rec.context_info = rec.context_info or ev.context_info
        rec.backend = rec.backend or ev.backend
        rec.model = ev.model or rec.model
        rec.environment = rec.environment or ev.environment
        if rec.kind == "rlm":
            rec.mode = "rlm"
            rec.status = "running"

    def _run_finished(self, ev: RunFinished, idx: int) -> None:
        if ev.depth > 0:
            return
        cand = self._cand(idx)
        self.running_code[idx] = None
        cand.finished_at = ev.time
        if ev.answer is not None:
            cand.answer = ev.answer
        cand.error = ev.error or cand.error
        if self.record.kind == "rlm":
            cand.status = ev.status
            if not cand.length:
                cand.length = ev.output_tokens
            rec = self.record
            rec.status = ev.status
            rec.answer = ev.answer
            rec.error = ev.error
            rec.winner = 0 if ev.answer is not None else None
            rec.finished_at = ev.time
            rec.execution_time = ev.execution_time or self.elapsed()
        elif cand.status not in _FINISHED:
            # The candidate's own verdict comes with CandidateFinished; keep it running.
            cand.status = "running"

    def _candidate_finished(self, ev: CandidateFinished, idx: int) -> None:
        cand = self._cand(idx)
        self.running_code[idx] = None
        cand.status = ev.status
        cand.answer = ev.answer if ev.answer is not None else cand.answer
        cand.error = ev.error
        cand.vc = ev.vc
        cand.length = ev.length
        cand.finished_at = ev.time

    def _iteration_finished(self, ev: IterationFinished, idx: int) -> None:
        cand = self._cand(idx)
        self.running_code[idx] = None
        step = StepRecord(
            iteration=ev.iteration,
            code=_join(ev.code_blocks),
            output=_join(ev.outputs),
            confidence=ev.confidence,
            submitted=ev.submitted,
            answer=ev.answer,
            reply=ev.reply,
            notices=self._notices.pop(idx, []),
        )
        cand.steps.append(step)
        if ev.submitted and ev.answer is not None:
            cand.answer = ev.answer

    # -- results that arrive outside the event stream ----------------------------------

    def _merge_candidate(self, meta: dict[str, Any]) -> None:
        idx = meta.get("index")
        if not isinstance(idx, int):
            return
        cand = self._cand(idx)
        for key in ("status", "answer", "error", "cluster", "vc", "length", "score", "usage"):
            if key in meta and meta[key] is not None:
                setattr(cand, key, to_plain(meta[key]))
        if not cand.steps and meta.get("steps"):
            cand.steps = [_step_from_meta(s) for s in meta["steps"]]

    def merge_metadata(self, metadata: dict[str, Any]) -> None:
        """Overlay a completion's ``metadata`` (SPEC §6 step 5), which is authoritative."""
        rec = self.record
        if metadata.get("mode") in ("direct", "rlm"):
            rec.mode = metadata["mode"]
        if rec.kind == "srlm":
            if "clusters" in metadata:
                rec.clusters = [ClusterRecord.model_validate(c) for c in metadata["clusters"]]
            if "winner" in metadata:
                rec.winner = metadata["winner"]
            for meta in metadata.get("candidates") or []:
                self._merge_candidate(meta)
        else:
            cand = self._cand(0)
            if not cand.steps and metadata.get("steps"):
                cand.steps = [_step_from_meta(s) for s in metadata["steps"]]
            if metadata.get("usage") is not None:
                cand.usage = to_plain(metadata["usage"])
        self._dirty.update({HEADER, CLUSTERS})

    def finish(
        self,
        status: str,
        *,
        answer: str | None = None,
        error: str | None = None,
        execution_time: float | None = None,
        now: float | None = None,
    ) -> None:
        """Close the run from the magic's side (completion returned, failed or cancelled)."""
        rec = self.record
        t = now if now is not None else time.time()
        self._start(t)
        if rec.finished_at is None:
            rec.finished_at = t
        rec.status = status  # type: ignore[assignment]
        if answer is not None:
            rec.answer = answer
        if error is not None:
            rec.error = error
        if execution_time is not None:
            rec.execution_time = execution_time
        elif rec.execution_time is None:
            rec.execution_time = self.elapsed()
        if rec.kind == "rlm" and rec.candidates:
            cand = rec.candidates[0]
            if cand.status not in _FINISHED:
                cand.status = status  # type: ignore[assignment]
            if answer is not None:
                cand.answer = answer
        for cand in rec.candidates:
            if cand.status not in _FINISHED:
                # Whatever had not ended when the run stopped was cut short.
                cand.status = "cancelled" if status == "cancelled" else "failed"
                cand.finished_at = t
            self.running_code[cand.index] = None
        self._dirty.update({HEADER, CLUSTERS, *range(len(rec.candidates))})

    @classmethod
    def from_record(cls, record: TrajectoryRecord) -> PanelState:
        """A (finished) state that shows ``record``; used to render saved results."""
        state = cls(kind=record.kind, question=record.question, n_candidates=0)
        state.record = record
        return state

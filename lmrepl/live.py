"""The one reducer of events into state, behind the terminal view and the notebook panel.

``LiveState.apply(event)`` folds one engine event into a ``SearchRecord`` — the same
record the engine returns at the end — plus what is happening right now (the code
each candidate is running, its iteration, sub-calls in flight). It does no I/O, so it
can be fed recorded logs in tests, and it is called from one thread at a time.

Candidates are the depth-0 trajectories: the SRLM candidates, or for plain RLM runs
each root run in order (one ``completion()`` is candidate 0). Child RLMs appear under
their parent's ``children``, built from their own events. When the engine's final
records arrive (``CandidateFinished``, ``SearchFinished``, or ``replace``), they win.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Literal

from lmrepl import events as ev
from lmrepl.records import STOP_REASONS, CandidateRecord, RunRecord, SearchRecord

HEADER = "header"
CLUSTERS = "clusters"
FINISHED = frozenset({"done", "no_answer", "failed", "cancelled", "stopped"})
Part = str | int


class LiveState:
    """The displayed state of one run or search, built from its events.

    ``kind`` is ``"srlm"`` or ``"rlm"``, or None to learn it from the first events
    (a ``SearchStarted`` means a search).
    """

    def __init__(
        self,
        kind: Literal["srlm", "rlm"] | None = None,
        question: str = "",
        n_candidates: int = 0,
    ) -> None:
        self._kind_known = kind is not None
        self.record = SearchRecord(kind=kind or "rlm", question=question, n_candidates=1)
        if n_candidates:
            self.record.n_candidates = n_candidates
        #: Code of the cell each candidate is running now (None between cells).
        self.running_code: dict[int, str | None] = {}
        #: The iteration each candidate is in, and the status of its last cell.
        self.iteration: dict[int, int] = {}
        self.cell_status: dict[int, str] = {}
        self.subcalls_running: dict[int, int] = {}
        self.calls_in_flight = 0
        self._runs: dict[str, RunRecord] = {}
        self._index_of_run: dict[str, int] = {}
        self._parent_of: dict[str, str] = {}
        self._dirty: set[Part] = {HEADER, CLUSTERS}
        for i in range(n_candidates):
            self._cand(i)

    # -- reading ---------------------------------------------------------------------
    def take_dirty(self) -> set[Part]:
        """Parts changed since the last call: HEADER, CLUSTERS or candidate indices."""
        dirty, self._dirty = self._dirty, set()
        return dirty

    @property
    def finished(self) -> bool:
        """True once the run or search reached a final status."""
        return self.record.status in FINISHED

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

    # -- the reducer -----------------------------------------------------------------
    def apply_all(self, events: Iterable[ev.Event]) -> None:
        """Apply each of ``events`` in order."""
        for event in events:
            self.apply(event)

    def apply(self, event: ev.Event) -> None:
        """Fold ``event`` into the state."""
        rec = self.record
        if rec.started_at is None:
            rec.started_at = event.time
        self._dirty.add(HEADER)
        if isinstance(event, ev.SearchStarted):
            self._search_started(event)
        elif isinstance(event, ev.SearchFinished):
            self._replace(event.record)
        elif isinstance(event, ev.RunStarted):
            self._run_started(event)
        elif isinstance(event, ev.ModelCallStarted):
            self.calls_in_flight += 1
        elif isinstance(event, ev.ModelCallFinished):
            self._model_call(event)
        else:
            self._candidate_event(event)

    def _candidate_event(self, event: ev.Event) -> None:
        idx = self._index(event)
        if idx is None:
            return
        run = self._runs.get(event.run_id)
        if isinstance(event, ev.CandidateQueued):
            self._cand(idx).status = "queued"
        elif isinstance(event, ev.CandidateFinished):
            self._candidate_finished(event, idx)
        elif isinstance(event, ev.SubcallStarted):
            self._cand(idx)
            self.subcalls_running[idx] = self.subcalls_running.get(idx, 0) + 1
        elif isinstance(event, ev.SubcallFinished):
            self._cand(idx)
            self.subcalls_running[idx] = max(0, self.subcalls_running.get(idx, 0) - 1)
            if run is not None:
                run.subcalls.append(event.subcall)
        elif isinstance(event, ev.IterationFinished):
            self._cand(idx)
            if run is not None:
                run.steps.append(event.step)
            if event.depth == 0:
                self.running_code[idx] = None
                self.iteration[idx] = event.step.iteration
        elif isinstance(event, ev.RunFinished):
            self._run_finished(event, idx, run)
        elif event.depth > 0:
            return  # a child's iterations and cells show as its parent's sub-calls
        elif isinstance(event, ev.IterationStarted):
            self._cand(idx)
            self.iteration[idx] = event.iteration
        elif isinstance(event, ev.CellStarted):
            self._cand(idx)
            self.running_code[idx] = event.code
            self.cell_status[idx] = "running"
        elif isinstance(event, ev.CellFinished):
            self._cand(idx)
            self.running_code[idx] = None
            self.cell_status[idx] = event.cell.status

    def replace(self, record: SearchRecord) -> None:
        """Take the engine's final ``record`` (it is authoritative); keeps the config."""
        self._replace(record)

    # -- helpers ---------------------------------------------------------------------
    def _index(self, event: ev.Event) -> int | None:
        if event.candidate is not None:
            return event.candidate
        return self._index_of_run.get(event.run_id)

    def _cand(self, index: int) -> CandidateRecord:
        if index >= len(self.record.candidates):
            self._dirty.update(range(len(self.record.candidates), index + 1))
        self._dirty.add(index)
        return self.record.candidate(index)

    def _search_started(self, event: ev.SearchStarted) -> None:
        rec = self.record
        self._kind_known, rec.kind = True, "srlm"
        rec.mode, rec.status = event.mode, "running"
        rec.question = rec.question or event.question
        rec.n_candidates = event.n_candidates
        rec.candidate_parallel = event.candidate_parallel
        for i in range(event.n_candidates if event.mode == "rlm" else 1):
            self._cand(i)

    def _run_started(self, event: ev.RunStarted) -> None:
        rec = self.record
        parent = self._runs.get(event.parent_run_id or "")
        if event.depth > 0 and parent is not None:
            child = RunRecord(
                run_id=event.run_id,
                parent_run_id=event.parent_run_id,
                depth=event.depth,
                question=event.question,
                status="running",
                started_at=event.time,
            )
            parent.children.append(child)
            self._runs[event.run_id] = child
            self._parent_of[event.run_id] = parent.run_id
            index = self._index_of_run.get(parent.run_id, event.candidate)
            if index is not None:
                self._index_of_run[event.run_id] = index
                self._dirty.add(index)
            return
        if event.depth > 0:
            return  # a child whose parent we never saw
        if event.candidate is not None:
            index = event.candidate
        else:
            if not self._kind_known:
                self._kind_known, rec.kind, rec.mode = True, "rlm", "rlm"
            index = len(self._index_of_run)
        cand = self._cand(index)
        cand.run_id, cand.question, cand.status = event.run_id, event.question, "running"
        cand.started_at = event.time
        self._runs[event.run_id] = cand
        self._index_of_run[event.run_id] = index
        rec.question = rec.question or event.question
        rec.context_info = rec.context_info or event.context_info
        rec.backend = rec.backend or event.backend
        rec.model = rec.model or event.model
        rec.environment = rec.environment or event.environment
        rec.sandbox = rec.sandbox or event.sandbox
        if rec.kind == "rlm":
            rec.status = "running"
            rec.n_candidates = max(rec.n_candidates, index + 1)

    def _model_call(self, event: ev.ModelCallFinished) -> None:
        rec = self.record
        self.calls_in_flight = max(0, self.calls_in_flight - 1)
        if event.error is not None:
            return  # usage counts the calls that returned, as the engine's tracker does
        rec.model_calls += 1
        rec.input_tokens += event.input_tokens
        rec.output_tokens += event.output_tokens
        rec.cost += event.cost
        if rec.model is None and event.depth == 0:
            rec.model = event.model
        # Every trajectory counts the calls of its children, as the engine's usage does.
        runs: list[RunRecord] = []
        run_id = event.run_id
        while run_id in self._runs:
            runs.append(self._runs[run_id])
            run_id = self._parent_of.get(run_id, "")
        if not runs and event.candidate is not None:
            runs.append(self._cand(event.candidate))  # a direct answer has no RunStarted
        for run in runs:
            run.model_calls += 1
            run.input_tokens += event.input_tokens
            run.output_tokens += event.output_tokens
            run.cost += event.cost
        idx = self._index(event)
        if idx is not None:
            self._dirty.add(idx)

    def _run_finished(self, event: ev.RunFinished, idx: int, run: RunRecord | None) -> None:
        self._cand(idx)
        if run is None:
            return
        run.finished_at = event.time
        run.answer = event.answer if event.answer is not None else run.answer
        run.grounded = event.grounded if event.grounded is not None else run.grounded
        run.error = event.error or run.error
        run.execution_time = event.execution_time
        run.iterations = max(run.iterations, event.iterations)
        if event.stop_reason in STOP_REASONS:
            run.stop_reason = event.stop_reason  # type: ignore[assignment]
        if event.depth > 0:
            run.status = event.status
            return
        self.running_code[idx] = None
        rec = self.record
        if rec.kind == "rlm":
            run.status = event.status
            run.length = run.length or event.output_tokens
            rec.status = event.status
            rec.stop_reason = run.stop_reason
            rec.answer, rec.error = event.answer, event.error
            rec.winner = idx if event.answer is not None else None
            rec.finished_at = event.time
            rec.execution_time = event.execution_time or self.elapsed()
        # In a search the candidate's verdict comes with CandidateFinished.

    def _candidate_finished(self, event: ev.CandidateFinished, idx: int) -> None:
        self._cand(idx)
        self.running_code[idx] = None
        self.record.candidates[idx] = event.record
        self._reindex(event.record)

    def _replace(self, record: SearchRecord) -> None:
        config = self.record.config
        # A copy: the caller's record must not change when this state is closed.
        self.record = record.model_copy(deep=True)
        if not self.record.config:
            self.record.config = config
        self._runs.clear()
        for cand in self.record.candidates:
            self._reindex(cand)
        for i in range(len(self.record.candidates)):
            self.running_code[i] = None
        self._dirty.update({HEADER, CLUSTERS, *range(len(self.record.candidates))})

    def _reindex(self, run: RunRecord, index: int | None = None) -> None:
        if isinstance(run, CandidateRecord):
            index = run.index
        if run.run_id:
            self._runs[run.run_id] = run
            if index is not None:
                self._index_of_run[run.run_id] = index
        for child in run.children:
            self._parent_of[child.run_id] = run.run_id
            self._reindex(child, index)

    # -- closing from outside the event stream --------------------------------------
    def finish(
        self,
        status: Literal["done", "failed", "cancelled", "stopped"],
        *,
        answer: str | None = None,
        error: str | None = None,
        now: float | None = None,
    ) -> None:
        """Close the run from the caller's side (it failed or was cancelled)."""
        rec = self.record
        t = now if now is not None else time.time()
        if rec.started_at is None:
            rec.started_at = t
        if rec.finished_at is None:
            rec.finished_at = t
        rec.status = status
        if rec.stop_reason is None and status != "done":
            rec.stop_reason = "limit" if status == "stopped" else status
        if answer is not None:
            rec.answer = answer
        if error is not None:
            rec.error = error
        if rec.execution_time is None:
            rec.execution_time = self.elapsed()
        for cand in rec.candidates:
            if cand.status not in FINISHED:
                # Whatever had not ended when the run stopped was cut short.
                cand.status = "cancelled" if status == "cancelled" else "failed"
                cand.finished_at = t
            self.running_code[cand.index] = None
        self._dirty.update({HEADER, CLUSTERS, *range(len(rec.candidates))})

    @classmethod
    def from_record(cls, record: SearchRecord) -> LiveState:
        """A finished state that shows ``record`` (a saved result, a read log)."""
        state = cls(kind=record.kind)
        state.replace(record)
        return state

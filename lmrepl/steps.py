"""What one step does with a model reply: run its code, or read a plain-text FINAL.

``StepRunner`` turns a reply into cells in the REPL, their outputs and a possible
answer (SPEC §4 rules); ``step_record`` makes the step's record from that.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Protocol

from lmrepl.calls import Publish
from lmrepl.confidence import parse_confidence, strip_confidence
from lmrepl.events import CellFinished, CellStarted
from lmrepl.limits import LimitGuard
from lmrepl.parsing import find_code_blocks, find_final_text, overwrites_context, strip_fences
from lmrepl.prompts import CONTEXT_OVERWRITE_NOTE
from lmrepl.records import CellRecord, StepRecord
from lmrepl.repl.base import REPL, CellResult

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
EMPTY_ANSWER_NOTE = "\n[lmrepl] The submitted answer was empty; submit a non-empty one."
#: Cell statuses that are the code's own doing, not the REPL's: no notice for them.
_ORDINARY = frozenset({"ok", "error", "refused"})


class CellScope(Protocol):
    """Told when a cell starts and ends (the sub-call bridge scopes its calls by cell)."""

    def begin_cell(self) -> None:
        """A cell starts."""
        ...

    def end_cell(self) -> None:
        """The cell ended (calls it left behind stop)."""
        ...


@dataclass
class StepOutcome:
    """What running one reply gave."""

    answer: str | None = None
    outputs: list[str] = field(default_factory=list)
    cells: list[CellRecord] = field(default_factory=list)
    blocks: list[str] = field(default_factory=list)
    failed: bool = False


def step_record(iteration: int, reply: str, outcome: StepOutcome, started: float) -> StepRecord:
    """The record of one step; its confidence is the reply's (else the output's) last one."""
    confidence = parse_confidence(reply)
    if confidence is None and outcome.outputs:
        confidence = parse_confidence("\n".join(outcome.outputs))
    notices = [
        c.notice or f"cell {c.status}"
        for c in outcome.cells
        if c.notice or c.status not in _ORDINARY
    ]
    return StepRecord(
        iteration=iteration,
        reply=reply,
        code="\n\n".join(outcome.blocks),
        output="\n\n".join(outcome.outputs),
        confidence=confidence,
        cells=outcome.cells,
        submitted=outcome.answer is not None,
        answer=outcome.answer,
        notices=notices,
        duration=time.perf_counter() - started,
    )


class StepRunner:
    """Runs replies' code blocks in one REPL; remembers the draft answer and last prose."""

    def __init__(
        self,
        repl: REPL,
        *,
        scope: CellScope,
        guard: LimitGuard,
        publish: Publish,
        cell_timeout: float | None,
        max_output_chars: int,
    ) -> None:
        self.repl = repl
        self.scope = scope
        self.guard = guard
        self.publish = publish
        self.cell_timeout = cell_timeout
        self.max_output_chars = max_output_chars
        #: The model's draft in ``answer["content"]`` (the partial answer when stopped).
        self.draft: str | None = None
        #: The last reply's prose (a partial answer when there is no draft).
        self.last_prose: str | None = None

    def act(self, reply: str, iteration: int) -> StepOutcome:
        """Run the reply's code (or read its plain-text FINAL)."""
        blocks = find_code_blocks(reply)
        prose = strip_confidence(strip_fences(reply))
        if prose:
            self.last_prose = prose
        if not blocks:
            final = find_final_text(reply)
            if final is None:
                return StepOutcome()
            return self._resolve_final_text(final.kind, final.argument, iteration)
        out = StepOutcome(blocks=blocks)
        for index, code in enumerate(blocks):
            if overwrites_context(code):
                out.outputs.append(CONTEXT_OVERWRITE_NOTE)
                out.cells.append(
                    CellRecord(code=code, output=CONTEXT_OVERWRITE_NOTE, status="refused")
                )
                out.failed = True
                continue
            cell, result = self.run_cell(iteration, index, code)
            out.outputs.append(cell.output)
            out.cells.append(cell)
            out.failed = out.failed or cell.status != "ok"
            if result.draft:
                self.draft = result.draft
            if result.submitted:
                answer = (result.answer or "").strip()
                if answer:
                    out.answer = answer
                    out.blocks = blocks[: index + 1]
                    return out
                self.repl.reset_submission()
                out.outputs[-1] += EMPTY_ANSWER_NOTE
        return out

    def run_cell(self, iteration: int, index: int, code: str) -> tuple[CellRecord, CellResult]:
        """Run one block under the run's limits (a cancel interrupts it): record and result."""
        self.guard.check()
        self.publish(CellStarted, iteration=iteration, index=index, code=code)
        self.scope.begin_cell()
        remove_hook = self.guard.on_cancel(self.repl.interrupt)
        try:
            result = self.repl.execute(code, timeout=self.guard.clamp(self.cell_timeout))
        finally:
            remove_hook()
            self.scope.end_cell()
        cell = CellRecord(
            code=code,
            output=result.text(self.max_output_chars),
            status=result.status,
            duration=result.duration,
            notice=result.notice,
        )
        self.publish(CellFinished, iteration=iteration, index=index, cell=cell)
        return cell, result

    def current_draft(self) -> str | None:
        """The draft in the REPL now, else the last one seen (None when there is none)."""
        try:
            return self.repl.draft() or self.draft
        except Exception:
            return self.draft

    def _resolve_final_text(self, kind: str, argument: str, iteration: int) -> StepOutcome:
        """A plain-text FINAL: a variable name is looked up in the REPL, else taken as text."""
        is_var = kind == "FINAL_VAR" or (
            _IDENT.match(argument) is not None and argument in self.repl.user_variables()
        )
        if not is_var:
            return StepOutcome(answer=argument)
        cell, result = self.run_cell(iteration, 0, f"FINAL_VAR({argument!r})")
        if result.submitted and (result.answer or "").strip():
            return StepOutcome(answer=(result.answer or "").strip(), cells=[cell])
        self.repl.reset_submission()
        return StepOutcome(outputs=[cell.output], cells=[cell])

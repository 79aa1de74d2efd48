"""What one step does with a model reply: run its code, or read a plain-text FINAL.

``StepRunner`` turns a reply into cells in the REPL, their outputs and a possible
answer (SPEC §4 rules); ``step_record`` makes the step's record from that. Every
submission passes its ``SubmissionGate`` (``lmrepl.hygiene``): placeholders and other
non-answers are refused, a constant submitted next to output the model has not read is
held for one turn, and an accepted answer is marked grounded or not.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Protocol

from lmrepl.calls import Publish
from lmrepl.confidence import parse_confidence, strip_confidence
from lmrepl.events import CellFinished, CellStarted
from lmrepl.grounding import Source, submission_source
from lmrepl.hygiene import SubmissionGate, Verdict, refusal
from lmrepl.limits import LimitGuard
from lmrepl.parsing import find_code_blocks, find_final_text, overwrites_context, strip_fences
from lmrepl.prompts import CONTEXT_OVERWRITE_NOTE, lone_output
from lmrepl.records import CellRecord, StepRecord
from lmrepl.repl.base import REPL, CellResult

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_FINAL_CALL = re.compile(r"^\W*FINAL(?:_VAR)?\s*\((.*)\)\W*$", re.S | re.I)
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
    #: Refused and held submissions of this step (its record's notices).
    notices: list[str] = field(default_factory=list)
    #: Whether the accepted ``answer`` is grounded (lmrepl.grounding); None without one.
    grounded: bool | None = None
    #: The answer this step held until the model has read the output (not accepted).
    held: str | None = None


def step_record(iteration: int, reply: str, outcome: StepOutcome, started: float) -> StepRecord:
    """The record of one step; its confidence is the reply's (else the output's) last one."""
    confidence = parse_confidence(reply)
    if confidence is None and outcome.outputs:
        confidence = parse_confidence("\n".join(outcome.outputs))
    notices = [
        c.notice or f"cell {c.status}"
        for c in outcome.cells
        if c.notice or c.status not in _ORDINARY
    ] + outcome.notices
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
        question: str = "",
        description: str = "",
        hold_unseen_final: bool = True,
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
        #: The submission rules of this trajectory and what they remember.
        self.gate = SubmissionGate(
            question,
            description,
            hold_unseen_final=hold_unseen_final,
            variables=lambda: self.repl.user_variables(),
        )

    def act(self, reply: str, iteration: int, *, final: bool = False) -> StepOutcome:
        """Run the reply's code (or read its plain-text FINAL).

        ``final``: the reply to the out-of-steps request; its submission is not held.
        """
        self.gate.new_reply()
        blocks = find_code_blocks(reply)
        prose = strip_confidence(strip_fences(reply))
        if prose:
            self.last_prose = prose
        if not blocks:
            text = find_final_text(reply)
            if text is None:
                return StepOutcome()
            out = self._resolve_final_text(text.kind, text.argument, iteration, final)
        else:
            out = self._run_blocks(blocks, iteration, final)
        self.gate.step_outputs(out.outputs)
        return out

    def _run_blocks(self, blocks: list[str], iteration: int, final: bool) -> StepOutcome:
        out = StepOutcome(blocks=blocks)
        # Whether a cell of this reply printed anything: output the model has not read.
        unseen = False
        for index, code in enumerate(blocks):
            if overwrites_context(code):
                out.outputs.append(CONTEXT_OVERWRITE_NOTE)
                out.cells.append(
                    CellRecord(code=code, output=CONTEXT_OVERWRITE_NOTE, status="refused")
                )
                out.failed = unseen = True
                continue
            cell, result = self.run_cell(iteration, index, code)
            out.outputs.append(cell.output)
            out.cells.append(cell)
            out.failed = out.failed or cell.status != "ok"
            unseen = unseen or _printed(result)
            if result.draft:
                self.draft = result.draft
            if not result.submitted:
                continue
            answer = (result.answer or "").strip()
            if not answer:
                self.repl.reset_submission()
                out.outputs[-1] += EMPTY_ANSWER_NOTE
                continue
            verdict = self.gate.review(
                answer, submission_source(code), unseen_output=unseen, final=final
            )
            if verdict.action == "accept":
                out.answer, out.grounded = answer, verdict.grounded
                out.blocks = blocks[: index + 1]
                return out
            self._not_accepted(out, answer, verdict)
            if verdict.action == "hold":
                # The later blocks wait too: the model reads this output first.
                out.held, out.blocks = answer, blocks[: index + 1]
                return out
        return out

    def _not_accepted(self, out: StepOutcome, answer: str, verdict: Verdict) -> None:
        """A refused or held submission: reset it and tell the model why, in one line."""
        self.repl.reset_submission()
        if verdict.action == "refuse" and (self.draft or "").strip() == answer:
            self.draft = None  # a refused answer is no partial answer either
        note = verdict.note or ""
        if out.outputs:
            out.outputs[-1] += "\n" + note
        else:
            out.outputs.append(note)
        out.notices.append(note)

    def last_resort(
        self, reply: str, ran_code: bool, outputs: list[str] | None = None
    ) -> tuple[str | None, bool | None]:
        """After the out-of-steps reply gave no answer: its text (when it ran no code), the
        draft, the held answer, or else the one short value its code printed (computed,
        so grounded), whichever first is not refused; and whether it is grounded."""
        candidates: list[str | None] = []
        if not ran_code:
            text = strip_confidence(strip_fences(reply)).strip()
            lines = [ln for ln in text.splitlines() if ln.strip()]
            call = _FINAL_CALL.match(lines[-1]) if lines else None
            # "FINAL(your answer)" as text: its argument is what gets judged.
            candidates.append(call.group(1).strip().strip("'\"`") if call else text)
        candidates.append(self.draft)
        answer, grounded = self.gate.last_resort(candidates)
        printed = lone_output(outputs or []) if ran_code and answer is None else None
        if printed is not None:
            why = refusal(printed, question=self.gate.question, description=self.gate.description)
            if why is None:
                return printed, True
        return answer, grounded

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

    def _resolve_final_text(
        self, kind: str, argument: str, iteration: int, final: bool
    ) -> StepOutcome:
        """A plain-text FINAL: a variable name is looked up in the REPL, else taken as text.

        Never held: the outputs of earlier steps were all shown before this reply.
        """
        is_var = kind == "FINAL_VAR" or (
            _IDENT.match(argument) is not None and argument in self.repl.user_variables()
        )
        if not is_var:
            return self._judged(StepOutcome(), argument, "text", final)
        cell, result = self.run_cell(iteration, 0, f"FINAL_VAR({argument!r})")
        answer = (result.answer or "").strip()
        if result.submitted and answer:
            return self._judged(StepOutcome(cells=[cell]), answer, "computed", final)
        self.repl.reset_submission()
        return StepOutcome(outputs=[cell.output], cells=[cell])

    def _judged(self, out: StepOutcome, answer: str, source: Source, final: bool) -> StepOutcome:
        verdict = self.gate.review(answer, source, final=final)
        if verdict.action == "accept":
            out.answer, out.grounded = answer, verdict.grounded
        else:
            self._not_accepted(out, answer, verdict)
        return out


def _printed(result: CellResult) -> bool:
    """Whether a cell produced output of its own (FINAL itself prints nothing)."""
    return any(
        (part or "").strip()
        for part in (result.stdout, result.stderr, result.display, result.error, result.notice)
    )

"""What one step does with a model reply: run its code, or read a plain-text FINAL.

``StepActions`` is the half of ``Trajectory`` that turns a reply into cells,
outputs and a possible answer, and records the step (SPEC §4 rules).
"""

from __future__ import annotations

import re
import time
from typing import Any

from lmrepl.confidence import parse_confidence, strip_confidence
from lmrepl.engine import Engine
from lmrepl.events import CellFinished, CellStarted, Event, IterationFinished
from lmrepl.limits import LimitGuard
from lmrepl.parsing import find_code_blocks, find_final_text, overwrites_context, strip_fences
from lmrepl.prompts import CONTEXT_OVERWRITE_NOTE
from lmrepl.repl.base import REPL, CellResult
from lmrepl.subcalls import SubcallBridge

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class StepActions:
    """Runs a reply's code blocks in the trajectory's REPL and records the step."""

    engine: Engine
    guard: LimitGuard
    repl: REPL | None
    steps: list[dict[str, Any]]
    _draft: str | None = None
    _last_prose: str | None = None

    def publish(self, cls: type[Event], **fields: Any) -> None:  # provided by Trajectory
        raise NotImplementedError

    def _act(
        self, bridge: SubcallBridge, reply: str, iteration: int
    ) -> tuple[str | None, list[str], list[dict[str, Any]], list[str], bool]:
        """Run the reply's code; returns (answer, outputs, cells, blocks, failed)."""
        assert self.repl is not None
        blocks = find_code_blocks(reply)
        prose = strip_confidence(strip_fences(reply))
        if prose:
            self._last_prose = prose
        outputs: list[str] = []
        cells: list[dict[str, Any]] = []
        failed = False
        if not blocks:
            final = find_final_text(reply)
            if final is None:
                return None, [], [], [], False
            answer, note = self._resolve_final_text(bridge, final.kind, final.argument, iteration)
            return answer, ([note] if note else []), [], [], False
        for index, code in enumerate(blocks):
            if overwrites_context(code):
                outputs.append(CONTEXT_OVERWRITE_NOTE)
                cells.append(
                    {
                        "code": code,
                        "output": CONTEXT_OVERWRITE_NOTE,
                        "status": "refused",
                        "duration": 0.0,
                    }
                )
                failed = True
                continue
            cell = self._run_cell(bridge, iteration, index, code)
            text = cell.text(self.engine.settings.max_output_chars)
            outputs.append(text)
            cells.append(
                {"code": code, "output": text, "status": cell.status, "duration": cell.duration}
            )
            failed = failed or cell.status != "ok"
            if cell.draft:
                self._draft = cell.draft
            if cell.submitted:
                answer = (cell.answer or "").strip()
                if answer:
                    return answer, outputs, cells, blocks[: index + 1], failed
                self.repl.reset_submission()
                outputs[-1] += "\n[lmrepl] The submitted answer was empty; submit a non-empty one."
        return None, outputs, cells, blocks, failed

    def _run_cell(self, bridge: SubcallBridge, iteration: int, index: int, code: str) -> CellResult:
        assert self.repl is not None
        self.guard.check()
        self.publish(CellStarted, iteration=iteration, index=index, code=code)
        bridge.begin_cell()
        timeout = self.guard.clamp(
            self.engine.settings.environment_kwargs.get("cell_timeout", 60.0)
        )
        remove_hook = self.guard.on_cancel(self.repl.interrupt)
        try:
            cell = self.repl.execute(code, timeout=timeout)
        finally:
            remove_hook()
            bridge.end_cell()
        self.publish(
            CellFinished,
            iteration=iteration,
            index=index,
            code=code,
            output=cell.text(self.engine.settings.max_output_chars),
            status=cell.status,
            duration=cell.duration,
            notice=cell.notice,
        )
        return cell

    def _resolve_final_text(
        self, bridge: SubcallBridge, kind: str, argument: str, iteration: int
    ) -> tuple[str | None, str | None]:
        """A plain-text FINAL: a variable name is looked up in the REPL, else taken as text."""
        assert self.repl is not None
        is_var = kind == "FINAL_VAR" or (
            _IDENT.match(argument) is not None and argument in self.repl.user_variables()
        )
        if not is_var:
            return argument, None
        cell = self._run_cell(bridge, iteration, 0, f"FINAL_VAR({argument!r})")
        if cell.submitted and (cell.answer or "").strip():
            return (cell.answer or "").strip(), None
        self.repl.reset_submission()
        return None, cell.text(self.engine.settings.max_output_chars)

    def _record_step(
        self,
        iteration: int,
        reply: str,
        blocks: list[str],
        outputs: list[str],
        cells: list[dict[str, Any]],
        answer: str | None,
        t0: float,
    ) -> None:
        confidence = parse_confidence(reply)
        if confidence is None and outputs:
            confidence = parse_confidence("\n".join(outputs))
        step = {
            "iteration": iteration,
            "reply": reply,
            "code": "\n\n".join(blocks),
            "output": "\n\n".join(outputs),
            "confidence": confidence,
            "cells": cells,
            "submitted": answer is not None,
            "duration": time.perf_counter() - t0,
        }
        self.steps.append(step)
        self.publish(
            IterationFinished,
            iteration=iteration,
            reply=reply,
            code_blocks=blocks,
            outputs=outputs,
            confidence=confidence,
            submitted=answer is not None,
            answer=answer,
            duration=step["duration"],
        )

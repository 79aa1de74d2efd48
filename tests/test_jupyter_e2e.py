"""End to end: %%srlm / %%rlm against the loopback ScriptedServer, real engine."""

from __future__ import annotations

import _thread
import itertools
import re
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell
from magic_helpers import shell_on

from lmrepl.testing import ScriptedRequest, ScriptedServer
from lmrepl_jupyter import MIME_TYPE, SRLMResult
from lmrepl_jupyter.panel import WINNER_CLASS, WidgetPanel


def run_magic(shell: InteractiveShell, name: str, line: str, cell: str) -> Any:
    """``shell.run_cell_magic`` (untyped in IPython), typed."""
    return shell.run_cell_magic(name, line, cell)  # type: ignore[no-untyped-call]


STEP = 'Let me look.\n```repl\nprint(len(context))\n```\n{"confidence": 90}'


def final(answer: str, conf: int) -> str:
    return f'```repl\nFINAL("{answer}")\n```\n{{"confidence": {conf}}}'


class Script:
    """First turn: inspect; second turn: answer (42, 42, 41, … in arrival order)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.finals = itertools.cycle([("42", 80), ("42", 95), ("41", 99)])

    def __call__(self, req: ScriptedRequest) -> str:
        if len(req.messages) <= 2:
            return STEP
        with self.lock:
            answer, conf = next(self.finals)
        return final(answer, conf)


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with ScriptedServer(responder=Script()) as srv:
        yield srv


@pytest.fixture
def ip(server: ScriptedServer) -> Iterator[InteractiveShell]:
    yield from shell_on(server, "SRLMMagics.panel = 'widgets'", "SRLMMagics.max_iterations = 4")


def test_srlm_k3_panel_and_result(ip: InteractiveShell, server: ScriptedServer) -> None:
    res = run_magic(ip, "srlm", "-k 3 -o res doc", "How long is the text?")
    assert isinstance(res, SRLMResult) and ip.user_ns["res"] is res
    assert res.status == "done", res.error
    assert res.answer == "42"
    assert [c["status"] for c in res.candidates] == ["done"] * 3
    assert sorted(c["answer"] for c in res.candidates) == ["41", "42", "42"]
    assert next(sorted(c["members"]) for c in res.clusters if c["answer"] == "42") == [
        i for i, c in enumerate(res.candidates) if c["answer"] == "42"
    ]
    assert res.winner is not None and res.candidates[res.winner]["answer"] == "42"
    steps = res.candidates[0]["steps"]
    assert steps[0]["code"] == "print(len(context))" and steps[0]["output"].strip() == "11"
    assert steps[0]["confidence"] == 90
    assert res.metadata["mode"] == "rlm" and res.usage is not None
    assert res.usage.total_calls == len(server.model_requests()) == 6
    assert res.record.model_calls == 6
    # The panel: three columns, the winner's highlighted, every status final.
    panel = res.panel
    assert isinstance(panel, WidgetPanel)
    assert len(panel.row.children) == 3
    flags = [WINNER_CLASS in b._dom_classes for b in panel.row.children]
    assert flags == [i == res.winner for i in range(3)]
    assert all("done" in c.title.value for c in panel.columns)
    assert "VC·Len" in panel.clusters.value
    bundle = res._repr_mimebundle_()
    assert bundle[MIME_TYPE]["winner"] == res.winner
    assert res.answer in bundle["text/plain"].splitlines()[0]


def test_one_rendering_per_cell(ip: InteractiveShell) -> None:
    """The live panel's output becomes the result; the cell's Out[] adds no copy."""
    from IPython.utils.capture import capture_output

    with capture_output() as cap:
        ip.run_cell("%%srlm -k 3 -o res doc\nHow long is the text?", store_history=True)
    res = ip.user_ns["res"]
    assert isinstance(res, SRLMResult) and res.status == "done"
    # Two messages for one output: the panel shown, then updated in place to the result.
    first, last = cap.outputs
    assert "application/vnd.jupyter.widget-view+json" in first.data
    assert MIME_TYPE in last.data and last.update
    assert last.transient["display_id"] == first.transient["display_id"]
    assert last.data[MIME_TYPE]["winner"] == res.winner
    # No second copy: a kernel sends no execute_result for empty data (this plain shell
    # only prints its prompt).
    assert re.sub(r"Out\[\d+\]:", "", cap.stdout).strip() == ""
    assert ip.user_ns["_"] is res  # still reachable as _
    assert res.panel is not None and res.panel.widget.comm is None  # widgets closed
    # Shown again from a later cell, it is the whole bundle.
    with capture_output() as again:
        ip.run_cell("res", store_history=True)
    assert [MIME_TYPE in o.data for o in again.outputs] == [True]


def test_srlm_with_the_text_view(ip: InteractiveShell) -> None:
    """The text view is progress only: off a terminal it leaves nothing; Out[] shows the
    result once (terminal IPython itself: tests/test_contract_magics.py)."""
    from IPython.utils.capture import capture_output

    ip.run_line_magic("config", "SRLMMagics.panel = 'auto'")  # no kernel here: rich view
    with capture_output() as cap:
        ip.run_cell(  # type: ignore[no-untyped-call]
            "%%srlm -k 2 --no-confidence -o res doc\nHow long?", store_history=False
        )
    res = ip.user_ns["res"]
    assert res.status == "done" and res.panel is None
    assert cap.outputs[-1].data["text/plain"].splitlines()[0] == "42"
    assert "winner: candidate" not in cap.stdout and "%%srlm done" not in cap.stdout


def test_unreachable_server_gives_a_failed_result(
    ip: InteractiveShell, capsys: pytest.CaptureFixture[str]
) -> None:
    ip.run_line_magic("config", "SRLMMagics.panel = 'off'")
    assert run_magic(ip, "srlm", "-k 2 --base-url http://127.0.0.1:9/v1 -o r doc", "q") is None
    res = ip.user_ns["r"]
    assert res.status == "failed" and res.answer is None
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("%%srlm: the run failed:")


def test_srlm_in_the_kernel_environment(ip: InteractiveShell) -> None:
    ip.run_line_magic("config", "SRLMMagics.environment = 'kernel'")
    res = run_magic(ip, "srlm", "-k 2 -p 2 --cell-timeout 20 doc", "How long?")
    assert res.status == "done", res.error
    assert res.answer in ("41", "42")
    assert all(c["steps"][0]["output"].strip() == "11" for c in res.candidates)
    assert res.record.environment == "kernel"


def test_rlm_magic_end_to_end(ip: InteractiveShell) -> None:
    res = run_magic(ip, "rlm", "doc", "How long?")
    assert res.status == "done" and res.answer == "42"
    assert res.record.kind == "rlm" and res.winner == 0
    assert len(res.candidates) == 1 and len(res.candidates[0]["steps"]) == 2
    assert "rlm done" in res._repr_mimebundle_()["text/plain"]


def test_interrupt_cancels_and_returns_the_partial_result(
    ip: InteractiveShell, server: ScriptedServer, capsys: pytest.CaptureFixture[str]
) -> None:
    arrived = threading.Event()
    release = threading.Event()
    answered: list[int] = []

    def held(req: ScriptedRequest) -> str:
        # Every model call is held until the test lets go: only the interrupt ends the run.
        arrived.set()
        release.wait(60)
        answered.append(1)
        return STEP

    server.script(responder=held)

    def interrupt_once_a_call_is_held() -> None:
        # A KeyboardInterrupt in this (the magic's) thread, as the kernel's interrupt does.
        if arrived.wait(60):
            _thread.interrupt_main()

    interrupter = threading.Thread(target=interrupt_once_a_call_is_held, daemon=True)
    interrupter.start()
    try:
        res = run_magic(ip, "srlm", "-k 2 -p 2 --max-iterations 20 -o part doc", "How long?")
        # The magic came back while the model calls were still held: it did not wait.
        assert answered == []
    finally:
        release.set()
        interrupter.join(60)
    assert res.status == "cancelled" and ip.user_ns["part"] is res
    assert all(c["status"] == "cancelled" for c in res.candidates)
    assert res.panel is not None and all("cancelled" in c.title.value for c in res.panel.columns)
    assert "cancelled" in capsys.readouterr().err

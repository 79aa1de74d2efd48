"""A real notebook run by nbclient: the live panel gives way to one saved rendering."""

from __future__ import annotations

import itertools
import threading
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

from lmrepl.testing import ScriptedRequest, ScriptedServer
from lmrepl_jupyter import MIME_TYPE

NOTEBOOK = Path(__file__).parent / "files" / "srlm_panel.ipynb"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def responder() -> Any:
    lock = threading.Lock()
    finals = itertools.cycle(["42", "42", "41"])

    def reply(req: ScriptedRequest) -> str:
        if len(req.messages) <= 2:
            return 'Looking.\n```repl\nprint(len(context))\n```\n{"confidence": 90}'
        with lock:
            answer = next(finals)
        return f'```repl\nFINAL("{answer}")\n```\n{{"confidence": 85}}'

    return reply


def test_notebook_saves_k_columns_and_the_winner(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    nb: Any = nbformat.read(NOTEBOOK, as_version=4)  # type: ignore[no-untyped-call]
    with ScriptedServer(responder=responder()) as srv:
        monkeypatch.setenv("LMREPL_TEST_BASE_URL", srv.base_url)
        client = NotebookClient(
            nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": tmp_path}}
        )
        client.execute()
    # One rich rendering: the live panel's output, replaced in place by the result's
    # bundle when the run ended; no widget view left behind and no second copy in Out[].
    outputs = nb.cells[2].outputs
    rich = [o for o in outputs if o["output_type"] in ("display_data", "execute_result")]
    assert len(rich) == 1, [o["output_type"] for o in outputs]
    result = rich[0]
    assert result["output_type"] == "display_data"
    assert WIDGET_VIEW not in result["data"]
    record = result["data"][MIME_TYPE]
    assert record["status"] == "done" and record["answer"] == "42"
    assert {"text/html", "text/plain"} <= set(result["data"])
    # The record alone draws the panel: K candidates, the winner among them.
    assert len(record["candidates"]) == 3
    assert record["candidates"][record["winner"]]["answer"] == "42"
    # -o NAME and _ still reach the result.
    shown = nb.cells[3].outputs[0]["data"]["text/plain"]
    assert shown == f"('done', {record['winner']}, '42', 3)"

    # No output refers to a widget: the panel's widgets were closed (nbclient still
    # writes the state it saw, JupyterLab drops closed models), so nothing needs it.
    views = [o for c in nb.cells for o in c.get("outputs", []) if WIDGET_VIEW in o.get("data", {})]
    assert views == []

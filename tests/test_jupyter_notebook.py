"""A real notebook run by nbclient: the panel's final state is saved with it."""

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
from lmrepl_jupyter.panel import COLUMN_CLASS, WINNER_CLASS

NOTEBOOK = Path(__file__).parent / "files" / "srlm_panel.ipynb"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
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
    # The run's own outputs: the live panel (a widget view) and the result bundle.
    outputs = nb.cells[2].outputs
    kinds = [set(o.get("data", {})) for o in outputs]
    assert any(WIDGET_VIEW in k for k in kinds)
    result = next(o for o in outputs if MIME_TYPE in o.get("data", {}))
    record = result["data"][MIME_TYPE]
    assert record["status"] == "done" and record["answer"] == "42"
    assert {"text/html", "text/plain"} <= set(result["data"])
    shown = nb.cells[3].outputs[0]["data"]["text/plain"]
    assert shown == f"('done', {record['winner']}, '42', 3)"

    # The saved widget state: K candidate columns, exactly one highlighted: the winner.
    state = nb.metadata.widgets[WIDGET_STATE]["state"]
    columns = [
        m["state"]
        for m in state.values()
        if m["model_name"] == "VBoxModel" and COLUMN_CLASS in m["state"].get("_dom_classes", [])
    ]
    assert len(columns) == 3
    winners = [c for c in columns if WINNER_CLASS in c["_dom_classes"]]
    assert len(winners) == 1
    # Each column's title (its first child) says done; the winner's carries the star.
    titles = {
        mid: m["state"]["value"] for mid, m in state.items() if m["model_name"] == "HTMLModel"
    }
    column_titles = [titles[c["children"][0].removeprefix("IPY_MODEL_")] for c in columns]
    assert all("done" in t for t in column_titles)
    winner_title = titles[winners[0]["children"][0].removeprefix("IPY_MODEL_")]
    assert f"candidate #{record['winner']}" in winner_title and "★ winner" in winner_title

"""Real-browser tests: JupyterLab on 127.0.0.1, driven by Playwright in headless chromium.

What a user sees, checked in the page itself:

- a saved notebook opened with no kernel and no widget state shows the search through
  the extension's renderer: K columns, the winner highlighted;
- an ``RLMLogger`` JSONL log opens in the extension's viewer from the file browser's
  Open With menu;
- a live ``%%srlm`` cell shows exactly one panel, which updates while the candidates run
  and gives way to the renderer when the run ends.

Screenshots go to ``test-artifacts/browser/``. Without chromium, Playwright or the built
extension the tests skip and say why; ``LMREPL_REQUIRE_BROWSER=1`` (CI) makes that a
failure instead.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from lab_server import ARTIFACTS, LabServer, browser_unavailable, chromium_path

from lmrepl.testing import ScriptedRequest, ScriptedServer

pytestmark = pytest.mark.browser

FILES = Path(__file__).parent / "files"
SEARCH = json.loads((FILES / "srlm_search.record.json").read_text(encoding="utf-8"))
MIME = "application/vnd.lmrepl.trajectory+json"

_WHY = browser_unavailable()
if _WHY is not None:
    if os.environ.get("LMREPL_REQUIRE_BROWSER") == "1":
        raise RuntimeError(f"browser tests required (LMREPL_REQUIRE_BROWSER=1): {_WHY}")
    pytest.skip(f"browser tests skipped: {_WHY}", allow_module_level=True)

from playwright.sync_api import Browser, Page, sync_playwright  # noqa: E402


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as pw:
        b = pw.chromium.launch(
            executable_path=chromium_path(), headless=True, args=["--no-sandbox"]
        )
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1500, "height": 1000})
    pg = context.new_page()
    try:
        yield pg
    finally:
        context.close()


def shot(page: Page, name: str) -> Path:
    """Keep a screenshot of the page as a test artifact."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=False)
    return path


def dismiss_kernel_dialog(page: Page) -> None:
    """Answer Lab's kernel-selection dialog with "No Kernel" when it appears."""
    dialog = page.locator(".jp-Dialog")
    try:
        dialog.wait_for(timeout=4000)
    except Exception:
        return
    for label in ("No Kernel", "Cancel"):
        button = dialog.get_by_role("button", name=label)
        if button.count():
            button.first.click()
            break
    dialog.wait_for(state="detached", timeout=5000)


def saved_notebook(path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Run the ``%%srlm`` fixture notebook (nbclient, scripted model) and save it as one
    re-opened elsewhere would be: a kernel this server lacks and no widget state.
    Returns the record the saved output carries."""
    from nbclient import NotebookClient

    nb: Any = nbformat.read(FILES / "srlm_panel.ipynb", as_version=4)  # type: ignore[no-untyped-call]
    with ScriptedServer(responder=SlowScript(delay=0.0)) as srv:
        monkeypatch.setenv("LMREPL_TEST_BASE_URL", srv.base_url)
        NotebookClient(nb, timeout=120, kernel_name="python3").execute()
    nb.metadata.pop("widgets", None)
    nb.metadata["kernelspec"] = {
        "name": "lmrepl-absent-kernel",
        "display_name": "absent",
        "language": "python",
    }
    nbformat.write(nb, path)  # type: ignore[no-untyped-call]
    (output,) = [o for o in nb.cells[2].outputs if MIME in o.get("data", {})]
    return dict(output["data"][MIME])


def open_in_viewer(page: Page, name: str) -> Any:
    """Right-click ``name`` in the file browser → Open With → lmrepl trajectory."""
    item = page.locator(".jp-DirListing-item", has_text=name)
    item.wait_for(timeout=60_000)
    item.click(button="right")
    page.locator(".lm-Menu-itemLabel", has_text="Open With").first.hover()
    page.locator(".lm-Menu-itemLabel", has_text="lmrepl trajectory").first.click()
    viewer = page.locator(".lmrepl-viewer .lmrepl-trajectory")
    viewer.wait_for(timeout=30_000)
    return viewer


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[LabServer]:
    # No kernels at all: what the page shows comes from the saved files alone.
    with LabServer(tmp_path / "root", kernels=False) as server:
        yield server


def test_saved_notebook_shows_k_columns_and_the_winner(
    lab: LabServer, page: Page, monkeypatch: pytest.MonkeyPatch
) -> None:
    record = saved_notebook(lab.root / "saved.ipynb", monkeypatch)
    page.goto(lab.lab_url("saved.ipynb"))
    dismiss_kernel_dialog(page)
    view = page.locator(".jp-OutputArea-output .lmrepl-trajectory")
    view.wait_for(timeout=60_000)
    page.locator(".jp-Toolbar-kernelName", has_text="No Kernel").wait_for(timeout=20_000)
    assert lab.api("kernels") == []
    # One rich rendering, by the extension (not the static HTML fallback, not a widget).
    assert page.locator(".lmrepl-trajectory").count() == 1
    assert page.locator(".lmrepl-panel, .jupyter-widgets").count() == 0
    columns = view.locator(".lmrepl-tr-candidate")
    assert columns.count() == len(record["candidates"]) == 3
    winner = view.locator(".lmrepl-tr-candidate.lmrepl-tr-winner")
    assert winner.count() == 1
    assert winner.get_attribute("data-candidate-index") == str(record["winner"])
    assert record["answer"] in view.locator(".lmrepl-tr-answer").first.inner_text()
    # Long outputs and details expand on click.
    details = view.locator("details")
    if details.count():
        details.first.locator("summary").first.click()
        assert details.first.evaluate("d => d.open")
    shot(page, "saved-notebook-light")
    # Dark theme: the renderer follows Lab's colours.
    light_bg = _background(view)
    _use_dark_theme(page)
    assert _background(view) != light_bg
    shot(page, "saved-notebook-dark")


def _background(locator: Any) -> str:
    return str(
        locator.evaluate(
            "el => { let e = el; while (e) { const c = getComputedStyle(e).backgroundColor;"
            " if (c && c !== 'rgba(0, 0, 0, 0)') return c; e = e.parentElement; } return ''; }"
        )
    )


def _use_dark_theme(page: Page) -> None:
    page.locator(".lm-MenuBar-itemLabel", has_text="Settings").click()
    page.locator(".lm-Menu-itemLabel", has_text="Theme").first.hover()
    page.locator(".lm-Menu-itemLabel", has_text="JupyterLab Dark").first.click()
    page.wait_for_function("() => document.body.dataset.jpThemeLight === 'false'", timeout=20_000)
    time.sleep(0.5)  # let the theme's stylesheet apply before reading colours


def test_jsonl_log_opens_in_the_viewer(lab: LabServer, page: Page) -> None:
    shutil.copy(FILES / "srlm_search.jsonl", lab.root / "search-log.jsonl")
    page.goto(lab.lab_url())
    viewer = open_in_viewer(page, "search-log.jsonl")
    assert viewer.locator(".lmrepl-tr-candidate").count() == 3
    assert viewer.locator(".lmrepl-tr-winner").count() == 1
    assert SEARCH["answer"] in viewer.locator(".lmrepl-tr-answer").first.inner_text()
    shot(page, "jsonl-viewer")
    # Candidate 0's sub-calls and its child RLM expand to show what they did.
    first = viewer.locator(".lmrepl-tr-candidate").first
    subcalls = first.locator("details.lmrepl-tr-subcalls").first
    subcalls.locator("summary").first.click()
    assert subcalls.locator("details.lmrepl-tr-subcall").count() == 2
    children = first.locator("details.lmrepl-tr-children").first
    children.locator("summary").first.click()
    child = children.locator("details.lmrepl-tr-child").first
    if not child.evaluate("d => d.open"):
        child.locator("summary").first.click()
    assert child.locator(".lmrepl-tr-step").count() >= 1
    assert "6 * 7" in child.inner_text()
    child.scroll_into_view_if_needed()
    shot(page, "jsonl-viewer-expanded")


def test_a_forced_answer_is_marked_in_the_viewer(lab: LabServer, page: Page) -> None:
    from lmrepl import SRLM

    def explorer(req: ScriptedRequest) -> str:
        last = str(req.messages[-1].get("content", ""))
        if "This is your last step" in last:
            return "The answer is 7."
        return "```repl\nprint(len(context))\n```"

    with ScriptedServer(responder=explorer) as srv:
        kwargs = {"model_name": "m", "base_url": srv.base_url, "api_key": "x"}
        srlm = SRLM(
            n_candidates=2,
            max_iterations=2,
            environment="local",
            backend="openai",
            backend_kwargs=kwargs,
        )
        result = srlm.completion("some text", "What number?")
    assert result.record is not None and result.record.stop_reason == "max_iterations"
    result.record.save(lab.root / "forced.json")
    page.goto(lab.lab_url())
    viewer = open_in_viewer(page, "forced.json")
    head = viewer.locator(".lmrepl-tr-header .lmrepl-tr-stop")
    assert head.inner_text() == "forced"
    assert "max_iterations" in (head.get_attribute("title") or "")
    assert viewer.locator(".lmrepl-tr-candidate .lmrepl-tr-stop").count() == 2
    assert head.is_visible()
    shot(page, "forced-answer-viewer")


class SlowScript:
    """Three candidates, each inspecting then answering; every reply takes a moment."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.lock = threading.Lock()
        self.answers = iter(["42", "42", "41", "42", "42", "42"])

    def __call__(self, req: ScriptedRequest) -> str:
        time.sleep(self.delay)
        if len(req.messages) <= 2:
            return 'Looking.\n```repl\nprint(len(context))\n```\n{"confidence": 90}'
        with self.lock:
            answer = next(self.answers, "42")
        return f'```repl\nFINAL("{answer}")\n```\n{{"confidence": 85}}'


def _run_cell(page: Page, index: int) -> None:
    """Select cell ``index`` and run it (Shift+Enter), until its prompt shows it ran.

    A key press that lands while Lab is still wiring the notebook to its kernel can be
    lost; the press is repeated only while the prompt still shows the cell never ran.
    """
    cell = page.locator(".jp-Notebook .jp-Cell").nth(index)
    prompt = cell.locator(".jp-InputArea-prompt")
    for _ in range(3):
        cell.locator(".jp-InputArea-editor").click()
        page.keyboard.press("Shift+Enter")
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if prompt.inner_text().strip() not in ("[ ]:", ""):
                return
            time.sleep(0.2)
    shot(page, f"cell-{index}-did-not-run")
    raise AssertionError(f"cell {index} did not start running")


def _wait_for_idle_kernel(lab: LabServer, timeout: float = 60) -> None:
    """Until the server has the notebook's kernel and it reports idle."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(k.get("execution_state") == "idle" for k in lab.api("kernels")):
            return
        time.sleep(0.3)
    raise AssertionError("the notebook's kernel did not become idle")


def test_live_srlm_shows_one_panel_that_updates(tmp_path: Path, page: Page) -> None:
    with ScriptedServer(responder=SlowScript(delay=1.0)) as model:
        nb: Any = nbformat.v4.new_notebook()  # type: ignore[no-untyped-call]
        nb.metadata["kernelspec"] = {
            "name": "python3",
            "display_name": "Python 3",
            "language": "python",
        }
        setup = "\n".join(
            [
                "%load_ext lmrepl_jupyter",
                '%config SRLMMagics.backend = "openai"',
                "%config SRLMMagics.backend_kwargs = "
                + repr({"model_name": "m", "base_url": model.base_url, "api_key": "x"}),
                '%config SRLMMagics.environment = "local"',
                'doc = "hello world"',
            ]
        )
        nb.cells = [
            nbformat.v4.new_code_cell(setup),  # type: ignore[no-untyped-call]
            nbformat.v4.new_code_cell(  # type: ignore[no-untyped-call]
                "%%srlm -k 3 -p 1 -o res doc\nHow long is the text?"
            ),
            nbformat.v4.new_code_cell("print(res.status, res.answer)"),  # type: ignore[no-untyped-call]
        ]
        with LabServer(tmp_path / "root") as lab:
            nbformat.write(nb, lab.root / "live.ipynb")  # type: ignore[no-untyped-call]
            page.goto(lab.lab_url("live.ipynb"))
            page.locator(".jp-Notebook .jp-Cell").nth(2).wait_for(timeout=60_000)
            _wait_for_idle_kernel(lab)
            _run_cell(page, 0)
            page.locator(".jp-Notebook .jp-Cell").nth(0).locator(
                ".jp-InputArea-prompt", has_text="[1]"
            ).wait_for(timeout=60_000)
            _run_cell(page, 1)
            out = page.locator(".jp-Notebook .jp-Cell").nth(1).locator(".jp-OutputArea")
            out.locator(".lmrepl-panel").wait_for(timeout=60_000)
            seen: list[str] = []
            counts: list[int] = []
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                # One query for both: two separate counts could straddle the swap and
                # see the panel and then its replacement, though never both at once.
                panels, renders = out.evaluate(
                    "el => [el.querySelectorAll('.lmrepl-panel').length,"
                    " el.querySelectorAll('.lmrepl-trajectory').length]"
                )
                counts.append(panels + renders)
                if renders:
                    break
                if panels:
                    text = out.locator(".lmrepl-panel").first.inner_text()
                    if not seen or text != seen[-1]:
                        seen.append(text)
                        if len(seen) == 2:
                            shot(page, "live-panel-running")
                time.sleep(0.3)
            # Exactly one rendering at every moment: the live panel, then the renderer.
            assert counts and set(counts) == {1}, counts
            assert out.locator(".lmrepl-panel").count() == 0
            view = out.locator(".lmrepl-trajectory")
            assert view.count() == 1
            # It updated while running: candidates went from queued/running to done.
            assert len(seen) >= 3, seen
            assert "running" in seen[0] or "queued" in seen[0]
            assert view.locator(".lmrepl-tr-candidate").count() == 3
            assert view.locator(".lmrepl-tr-winner").count() == 1
            # No second copy in the cell's Out[]; -o NAME reaches the result.
            assert out.locator(".jp-OutputArea-output").count() == 1
            _run_cell(page, 2)
            after = page.locator(".jp-Notebook .jp-Cell").nth(2).locator(".jp-OutputArea")
            after.get_by_text("done 42").wait_for(timeout=30_000)
            shot(page, "live-panel-finished")
            sessions = lab.api("sessions")
            assert len(sessions) == 1
        # The server ended, and with it the notebook's kernel.
        assert _no_kernels_of(lab)


def _no_kernels_of(lab: LabServer) -> bool:
    import psutil

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        found = []
        for proc in psutil.process_iter(["cmdline"]):
            cmd = " ".join(proc.info.get("cmdline") or [])
            if "ipykernel" in cmd and str(lab.base / "runtime") in cmd:
                found.append(cmd)
        if not found:
            return True
        time.sleep(0.3)
    return False


# -- model output is untrusted: nothing it writes may run in the page ------------------

PAYLOAD = (
    '<img src=x onerror="window.__lmrepl_pwned = 1"><script>window.__lmrepl_pwned = 2</script>'
)


def hostile(req: ScriptedRequest) -> str:
    """A model steered by the context: markup in its code, its output, a sub-call and its
    answer, each trying to run script in whatever shows the trajectory."""
    if len(req.messages) == 1:  # the llm_query sub-call
        return PAYLOAD
    if len(req.messages) <= 2:
        return (
            f"Here {PAYLOAD}\n```repl\nprint({PAYLOAD!r})\n"
            f'x = llm_query({PAYLOAD!r})\n```\n{{"confidence": 90}}'
        )
    return f"```repl\nFINAL({PAYLOAD!r})\n```"


def test_hostile_model_output_never_runs_in_the_page(tmp_path: Path, page: Page) -> None:
    """Through the real engine: a run's record in a notebook, its log in the viewer and
    its ``lmrepl view`` page all show the markup as text, and none of it executes."""
    from lmrepl import SRLM
    from lmrepl.logger import RLMLogger
    from lmrepl.view import write_html
    from lmrepl_jupyter import SRLMResult

    logs = tmp_path / "logs"
    with ScriptedServer(responder=hostile) as model, RLMLogger(logs, "hostile") as logger:
        srlm = SRLM(
            backend="openai",
            backend_kwargs={"model_name": "m", "base_url": model.base_url, "api_key": "x"},
            environment="local",
            n_candidates=2,
            candidate_parallel=2,
            max_iterations=3,
            logger=logger,
        )
        completion = srlm.completion("some context", "What is hidden?")
    record = completion.record
    assert record is not None and record.answer is not None and "<script>" in record.answer
    assert any(c.subcalls for c in record.candidates)  # the payload also went through llm_query
    bundle = SRLMResult(record)._repr_mimebundle_()

    nb: Any = nbformat.v4.new_notebook()  # type: ignore[no-untyped-call]
    cell: Any = nbformat.v4.new_code_cell("%%srlm -k 2 doc\nWhat is hidden?")  # type: ignore[no-untyped-call]
    cell.outputs = [nbformat.v4.new_output("display_data", data=bundle)]  # type: ignore[no-untyped-call]
    nb.cells = [cell]
    with LabServer(tmp_path / "root", kernels=False) as lab:
        nbformat.write(nb, lab.root / "hostile.ipynb")  # type: ignore[no-untyped-call]
        shutil.copy(logger.path, lab.root / "hostile.jsonl")
        page.goto(lab.lab_url("hostile.ipynb"))
        dismiss_kernel_dialog(page)
        view = page.locator(".jp-OutputArea-output .lmrepl-trajectory")
        view.wait_for(timeout=60_000)
        for details in view.locator("details").all():
            details.evaluate("d => { d.open = true; }")
        assert "<script>" in view.inner_text()  # shown as text
        _assert_inert(page, ".lmrepl-trajectory")
        shot(page, "hostile-notebook")

        page.goto(lab.lab_url())
        dismiss_kernel_dialog(page)  # the workspace reopens the notebook
        viewer = open_in_viewer(page, "hostile.jsonl")
        for details in viewer.locator("details").all():
            details.evaluate("d => { d.open = true; }")
        assert "onerror" in viewer.inner_text()
        _assert_inert(page, ".lmrepl-viewer")

    html = write_html(logger.path, tmp_path / "hostile.html")
    page.goto(html.as_uri())
    page.wait_for_load_state("load")
    assert "onerror" in page.locator("body").inner_text()
    _assert_inert(page, "body")


def _assert_inert(page: Page, scope: str) -> None:
    time.sleep(0.5)  # an image error handler would have fired by now
    assert page.evaluate("() => window.__lmrepl_pwned") is None
    assert page.locator(f"{scope} script, {scope} img[src='x'], {scope} [onerror]").count() == 0

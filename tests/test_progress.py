"""TerminalProgress and render_search_summary, fed logs recorded from real runs."""

from __future__ import annotations

import io
import threading

from engine_helpers import make_rlm, repl
from recorded import events, record, until
from rich.console import Console

from lmrepl import events as ev
from lmrepl.progress import TerminalProgress, render_search_summary
from lmrepl.records import CandidateRecord, Cluster, SearchRecord
from lmrepl.testing import ScriptedServer


def _console(terminal: bool = False) -> tuple[Console, io.StringIO]:
    buf = io.StringIO()
    return Console(file=buf, force_terminal=terminal, width=160, color_system=None), buf


def _rows(text: str, prefix: str) -> dict[str, str]:
    return {
        line.split("│")[0].strip(): line
        for line in text.splitlines()
        if line.startswith(prefix) and "│" in line
    }


def test_plain_console_shows_lines_and_the_winner() -> None:
    console, buf = _console()
    progress = TerminalProgress(console=console)
    for e in events("srlm_search"):
        progress(e)
    progress.close()
    text = buf.getvalue()
    engine = record("srlm_search")
    assert "search: rlm, 3 candidates, 1 at once" in text
    assert "cand 0: started (m, kernel)" in text
    assert "cand 0: iter 1 · 1 cell(s)" in text and "conf 70" in text
    assert "cand 2: failed · 0 tok · BackendError: openai backend" in text
    c0 = engine.candidates[0]
    assert f"cand 0: done · {c0.length} tok · VC {c0.vc:.2f} · 42" in text
    assert text.count("cand 0: done") == 1  # one line per finished candidate
    assert "answer clusters" in text
    assert "winner: candidate 1 — 42.0" in text
    assert f"{engine.candidates[1].score:.1f}" in text  # the engine's VC·Len
    assert "\x1b[" not in text  # no terminal codes in a plain stream


def test_table_tracks_state_per_candidate() -> None:
    console, buf = _console()
    progress = TerminalProgress(console=console)
    evs = events("srlm_search")
    for e in until(evs, ev.SubcallStarted, candidate=0):
        progress(e)
    console.print(progress)
    text = buf.getvalue()
    rows = _rows(text, "cand ")
    assert set(rows) == {"cand 0", "cand 1", "cand 2"}
    assert "running" in rows["cand 0"]
    assert "hint = llm_query('Say hi.')" in rows["cand 0"]  # the current code
    assert "print(hint)" in text and "rlm_query(" not in text  # the first two lines
    assert "0 (1 running)" in rows["cand 0"]  # sub-calls
    assert "queued" in rows["cand 1"] and "queued" in rows["cand 2"]


def test_a_single_run_is_one_row_and_children_count_into_it() -> None:
    console, buf = _console()
    progress = TerminalProgress(console=console)
    for e in events("rlm_run"):
        progress(e)
    console.print(progress)
    progress.close()
    text = buf.getvalue()
    engine = record("rlm_run").candidates[0]
    assert "run: done after" in text and "· done" in text
    assert f"{engine.input_tokens} in / {engine.output_tokens} out" in text
    assert len(_rows(text, "run ")) == 1
    assert "cand " not in text

    console, buf = _console()
    progress = TerminalProgress(console=console)
    for e in events("srlm_search"):
        progress(e)
    console.print(progress)
    c0 = record("srlm_search").candidates[0]
    row = _rows(buf.getvalue(), "cand ")["cand 0"]
    assert f"{c0.input_tokens} in / {c0.output_tokens} out" in row  # the child's calls too


def test_live_display_from_many_threads() -> None:
    console, buf = _console(terminal=True)
    progress = TerminalProgress(console=console, refresh_per_second=50)
    evs = events("srlm_search")
    per_candidate: dict[int, list[ev.Event]] = {}
    for e in evs:
        if e.candidate is not None:
            per_candidate.setdefault(e.candidate, []).append(e)
    progress(evs[0])
    start = threading.Barrier(len(per_candidate))

    def feed(seq: list[ev.Event]) -> None:
        start.wait()
        for e in seq:
            progress(e)

    threads = [threading.Thread(target=feed, args=(s,)) for s in per_candidate.values()]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    progress(evs[-1])
    assert any(_is_refresh_thread(t) for t in threading.enumerate())  # Live is drawing
    progress.close()
    progress.close()
    text = buf.getvalue()
    for i in range(3):
        assert f"cand {i}" in text
    assert "winner: candidate 1" in text
    # After close no redraw thread is left, and late events do not start a new one.
    progress(ev.IterationStarted(run_id="late", candidate=0, iteration=5))
    assert not any(_is_refresh_thread(t) for t in threading.enumerate())


def _is_refresh_thread(thread: threading.Thread) -> bool:
    return thread.name == "lmrepl-progress" and thread.is_alive()


def test_render_search_summary_direct_and_no_winner() -> None:
    console, buf = _console()
    console.print(render_search_summary(record("srlm_direct")))
    failed = SearchRecord(
        mode="rlm",
        status="failed",
        error="every candidate failed",
        candidates=[CandidateRecord(index=0, status="failed", error="boom")],
    )
    console.print(render_search_summary(failed))
    text = buf.getvalue()
    assert "direct answer (no REPL): Forty-two." in text
    assert "no winner: every candidate failed" in text
    assert "boom" in text


def test_model_text_is_not_markup(scripted_server: ScriptedServer) -> None:
    code = "print('x')  # [bold]not bold[/bold] [/oops]\nFINAL('[red]42[/red]')"
    scripted_server.script([repl(code)])
    console, buf = _console()
    progress = TerminalProgress(console=console)
    # The constant FINAL next to unread output would be held for a turn; not the point here.
    rlm = make_rlm(scripted_server, hold_unseen_final=False)
    rlm.subscribe(progress)
    rlm.completion("ctx", "q")
    console.print(progress)
    summary = SearchRecord(
        mode="rlm",
        winner=0,
        answer="[x]",
        clusters=[Cluster(answer="[/x]", members=[0], votes=1)],
        candidates=[CandidateRecord(index=0, status="done", answer="[/x]", length=3)],
    )
    console.print(render_search_summary(summary))
    text = buf.getvalue()
    assert "# [bold]not bold[/bold] [/oops]" in text
    assert "[red]42[/red]" in text
    assert "[/x]" in text and "winner: candidate 0 — [x]" in text


def test_finished_answers_carry_their_grounding(scripted_server: ScriptedServer) -> None:
    # A live RLM run: the answer row and the plain line say "grounded".
    scripted_server.script([repl("n = context.count('E')\nFINAL(n)")])
    console, buf = _console()
    progress = TerminalProgress(console=console)
    rlm = make_rlm(scripted_server)
    rlm.subscribe(progress)
    rlm.completion("E E", "How many E?")
    console.print(progress)
    text = buf.getvalue()
    assert "run: done after" in text and "· 2 (grounded)" in text
    assert "2 grounded" in _rows(text, "run")["run"]
    assert "answer: 2 grounded" in text
    # The search summary tags each finished candidate's answer.
    summary = SearchRecord(
        mode="rlm",
        winner=0,
        answer="25",
        clusters=[Cluster(answer="25", members=[0], votes=1)],
        candidates=[
            CandidateRecord(index=0, status="done", answer="25", length=3, grounded=True),
            CandidateRecord(index=1, status="done", answer="81330", length=2, grounded=False),
            CandidateRecord(index=2, status="failed", error="boom"),
        ],
    )
    console, buf = _console()
    console.print(render_search_summary(summary))
    text = buf.getvalue()
    assert "25 grounded" in text and "81330 ungrounded" in text
    assert "boom" in text and text.count("grounded") == 2

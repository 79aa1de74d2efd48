"""TerminalProgress and render_search_summary, fed with hand-built event sequences."""

from __future__ import annotations

import io
import threading

from rich.console import Console

from lmrepl import events as ev
from lmrepl.progress import TerminalProgress, render_search_summary
from lmrepl.scoring import CandidateScore, candidate_record, clusters_record, select_winner


def _console(terminal: bool = False) -> tuple[Console, io.StringIO]:
    buf = io.StringIO()
    return Console(file=buf, force_terminal=terminal, width=160, color_system=None), buf


def _candidate_events(cand: int, answer: str | None, status: str) -> list[ev.Event]:
    run = f"run{cand}"
    out: list[ev.Event] = [
        ev.RunStarted(
            run_id=run,
            candidate=cand,
            question="How many?",
            context_info="str, 10 chars",
            backend="openai",
            model="qwen",
            environment="kernel",
        ),
        ev.IterationStarted(run_id=run, candidate=cand, iteration=1),
        ev.ModelCallFinished(
            run_id=run,
            candidate=cand,
            call_id="c1",
            model="qwen",
            purpose="root",
            input_tokens=300,
            output_tokens=40,
        ),
        ev.CellStarted(
            run_id=run,
            candidate=cand,
            iteration=1,
            index=0,
            code=f"n = len(context)  # cand{cand}\nprint(n)\nmore()",
        ),
        ev.SubcallStarted(
            run_id=run,
            candidate=cand,
            subcall_id="s1",
            function="llm_query",
            model="qwen",
            prompt_preview="count",
        ),
        ev.SubcallFinished(
            run_id=run, candidate=cand, subcall_id="s1", function="llm_query", model="qwen"
        ),
        ev.CellFinished(
            run_id=run,
            candidate=cand,
            iteration=1,
            index=0,
            code="n = len(context)",
            output="10",
            status="ok",
        ),
        ev.IterationFinished(
            run_id=run,
            candidate=cand,
            iteration=1,
            reply="...",
            code_blocks=["n = len(context)"],
            confidence=70.0,
        ),
    ]
    if status == "done":
        out.append(
            ev.RunFinished(run_id=run, candidate=cand, status="done", answer=answer, iterations=1)
        )
        out.append(
            ev.CandidateFinished(
                run_id=run, candidate=cand, status="done", answer=answer, vc=-0.36, length=40
            )
        )
    else:
        out.append(
            ev.RunFinished(run_id=run, candidate=cand, status="failed", error="BackendError: 503")
        )
        out.append(
            ev.CandidateFinished(
                run_id=run, candidate=cand, status="failed", error="BackendError: 503"
            )
        )
    return out


def _search_events() -> list[ev.Event]:
    plan = [(0, "42", "done"), (1, "42.0", "done"), (2, None, "failed")]
    seq: list[ev.Event] = [
        ev.SearchStarted(
            run_id="search", mode="rlm", n_candidates=3, candidate_parallel=2, question="How many?"
        )
    ]
    seq += [ev.CandidateQueued(run_id=f"run{i}", candidate=i) for i, _, _ in plan]
    for i, answer, status in plan:
        seq += _candidate_events(i, answer, status)
    scores = [
        CandidateScore(index=0, answer="42", vc=-0.36, length=40),
        CandidateScore(index=1, answer="42.0", vc=-0.2, length=40),
        CandidateScore(index=2, answer=None, status="failed"),
    ]
    sel = select_winner(scores)
    seq.append(
        ev.SearchFinished(
            run_id="search",
            answer="42.0",
            winner=sel.winner,
            clusters=clusters_record(sel),
            candidates=[candidate_record(c, sel) for c in scores],
        )
    )
    return seq


def test_plain_console_shows_rows_and_winner() -> None:
    console, buf = _console()
    progress = TerminalProgress(console=console)
    for e in _search_events():
        progress(e)
    progress.close()
    text = buf.getvalue()
    assert "search: rlm, 3 candidates" in text
    assert "cand 0: started (qwen, kernel)" in text
    assert "cand 1: iter 1" in text and "conf 70" in text
    assert "cand 2: failed" in text and "BackendError: 503" in text
    assert "cand 0: done · 40 tok · VC -0.36 · 42" in text
    assert text.count("cand 0: done") == 1  # one line per finished candidate
    assert "answer clusters" in text
    assert "winner: candidate 1" in text
    # The candidates table lists every candidate with its score.
    assert "-8.0" in text  # candidate 1: VC -0.2 × 40 tokens
    assert "\x1b[" not in text  # no terminal codes in a plain stream


def test_table_tracks_state_per_candidate() -> None:
    console, buf = _console()
    progress = TerminalProgress(console=console)
    seq = _search_events()
    for e in seq[: 1 + 3 + 5]:  # search start, 3 queued, cand 0 up to its subcall
        progress(e)
    console.print(progress)
    text = buf.getvalue()
    rows = {
        line.split("│")[0].strip(): line for line in text.splitlines() if line.startswith("cand ")
    }
    assert set(rows) >= {"cand 0", "cand 1", "cand 2"}
    assert "running" in rows["cand 0"]
    assert "n = len(context)  # cand0" in rows["cand 0"]  # the current code
    assert "more()" not in text  # only the first code lines
    assert "1 (1 running)" in rows["cand 0"]  # sub-calls
    assert "300 in / 40 out" in rows["cand 0"]
    assert "queued" in rows["cand 1"] and "queued" in rows["cand 2"]


def test_single_run_without_candidates() -> None:
    console, buf = _console()
    progress = TerminalProgress(console=console)
    for e in _candidate_events(0, "10", "done"):
        if not isinstance(e, ev.CandidateFinished):
            progress(e.model_copy(update={"candidate": None}))
    # A child run's events count into the root's row, not a row of their own.
    progress(
        ev.RunStarted(
            run_id="child",
            depth=1,
            parent_run_id="run0",
            question="q",
            context_info="",
            backend="openai",
            model="qwen",
            environment="local",
        )
    )
    progress(
        ev.ModelCallFinished(
            run_id="child", depth=1, call_id="x", model="qwen", purpose="root", output_tokens=5
        )
    )
    console.print(progress)
    progress.close()
    text = buf.getvalue()
    assert "run: done after" in text
    assert "300 in / 45 out" in text
    rows = [line for line in text.splitlines() if line.startswith("run ") and "│" in line]
    assert len(rows) == 1
    assert "cand " not in text


def test_live_display_from_many_threads() -> None:
    console, buf = _console(terminal=True)
    progress = TerminalProgress(console=console, refresh_per_second=50)
    seqs = [_candidate_events(i, str(i * 7), "done") for i in range(8)]
    start = threading.Barrier(8)

    def feed(seq: list[ev.Event]) -> None:
        start.wait()
        for e in seq:
            progress(e)

    threads = [threading.Thread(target=feed, args=(s,)) for s in seqs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    progress(_search_events()[-1])
    assert any(_is_refresh_thread(t) for t in threading.enumerate())  # Live is drawing
    progress.close()
    progress.close()
    text = buf.getvalue()
    for i in range(8):
        assert f"cand {i}" in text
    assert "winner: candidate 1" in text
    # After close no redraw thread is left, and late events do not start a new one.
    progress(ev.IterationStarted(run_id="run0", candidate=0, iteration=5))
    assert not any(_is_refresh_thread(t) for t in threading.enumerate())


def _is_refresh_thread(thread: threading.Thread) -> bool:
    return thread.name == "lmrepl-progress" and thread.is_alive()


def test_render_search_summary_direct_and_no_winner() -> None:
    console, buf = _console()
    console.print(render_search_summary({"mode": "direct", "answer": "Paris", "winner": None}))
    console.print(
        render_search_summary(
            {
                "mode": "rlm",
                "answer": None,
                "winner": None,
                "error": "all candidates failed",
                "clusters": [],
                "candidates": [
                    {
                        "index": 0,
                        "status": "failed",
                        "error": "boom",
                        "answer": None,
                        "vc": None,
                        "length": 0,
                    }
                ],
            }
        )
    )
    text = buf.getvalue()
    assert "direct answer (no REPL): Paris" in text
    assert "no winner: all candidates failed" in text
    assert "boom" in text


def test_model_text_is_not_markup() -> None:
    console, buf = _console()
    progress = TerminalProgress(console=console)
    code = "print(x[1:3])  # [bold]not bold[/bold] [/oops]"
    progress(ev.CellStarted(run_id="r", iteration=1, index=0, code=code))
    progress(ev.RunFinished(run_id="r", status="done", answer="[red]42[/red]"))
    console.print(progress)
    console.print(
        render_search_summary(
            {
                "winner": 0,
                "answer": "[x]",
                "clusters": [{"answer": "[/x]", "members": [0], "votes": 1}],
                "candidates": [
                    {"index": 0, "status": "done", "answer": "[/x]", "vc": None, "length": 3}
                ],
            }
        )
    )
    text = buf.getvalue()
    assert code in text
    assert "[red]42[/red]" in text
    assert "[/x]" in text and "winner: candidate 0 — [x]" in text

"""RLMLogger: JSONL trajectory logs written from the event stream."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import pytest

from lmrepl import events as ev
from lmrepl.logger import RLMLogger, read_log


def _run(
    run_id: str, candidate: int | None = None, context_info: str = "str, 10 chars"
) -> list[ev.Event]:
    return [
        ev.RunStarted(
            run_id=run_id,
            candidate=candidate,
            question="How many?",
            context_info=context_info,
            backend="replay",
            model="m",
            environment="local",
        ),
        ev.IterationStarted(run_id=run_id, candidate=candidate, iteration=1),
        ev.CellStarted(
            run_id=run_id, candidate=candidate, iteration=1, index=0, code="len(context)"
        ),
        ev.CellFinished(
            run_id=run_id,
            candidate=candidate,
            iteration=1,
            index=0,
            code="len(context)",
            output="10",
            status="ok",
        ),
        ev.IterationFinished(
            run_id=run_id,
            candidate=candidate,
            iteration=1,
            reply="```repl\nlen(context)\n```",
            confidence=80.0,
        ),
        ev.RunFinished(
            run_id=run_id, candidate=candidate, status="done", answer="10", iterations=1
        ),
    ]


def test_file_name_pattern_and_round_trip(tmp_path: Path) -> None:
    logger = RLMLogger(tmp_path / "logs", file_name="demo")
    assert re.fullmatch(r"demo_\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d_[0-9a-f]{8}\.jsonl", logger.path.name)
    assert logger.path.exists()
    assert logger.log_file_path == str(logger.path)
    sent = _run("r1")
    for e in sent:
        logger(e)
    logger.close()
    got = read_log(logger.path)
    assert got == sent
    assert [type(e) for e in got] == [type(e) for e in sent]
    assert logger.paths == [logger.path]
    assert logger.events_written == len(sent)


def test_candidate_events_also_get_their_own_file(tmp_path: Path) -> None:
    with RLMLogger(tmp_path) as logger:
        logger(
            ev.SearchStarted(
                run_id="s", mode="rlm", n_candidates=2, candidate_parallel=2, question="q"
            )
        )
        c0, c1 = _run("a", candidate=0), _run("b", candidate=1)
        for x, y in zip(c0, c1, strict=True):
            logger(x)
            logger(y)
        logger(ev.SearchFinished(run_id="s", answer="10", winner=0))
    assert logger.paths == [logger.path, logger.candidate_path(0), logger.candidate_path(1)]
    assert logger.candidate_path(1).name.endswith("_cand1.jsonl")
    main = read_log(logger.path)
    assert len(main) == 2 + len(c0) + len(c1)  # the main file has everything
    assert read_log(logger.candidate_path(0)) == c0
    assert read_log(logger.candidate_path(1)) == c1


def test_log_grows_with_trajectory_not_context(tmp_path: Path) -> None:
    big = "context: str of 50,000,000 chars, first lines: " + "x" * 200_000
    logger = RLMLogger(tmp_path)
    logger(_run("r", context_info=big)[0])
    for i in range(1, 21):
        logger(ev.IterationStarted(run_id="r", iteration=i))
        logger(ev.IterationFinished(run_id="r", iteration=i, reply=f"step {i}", confidence=50.0))
    logger(ev.RunFinished(run_id="r", status="done", answer="x", iterations=20))
    logger.close()
    text = logger.path.read_text(encoding="utf-8")
    assert text.count(big) == 1
    assert len(text) < len(big) + 20_000


def test_eight_threads_write_whole_lines(tmp_path: Path) -> None:
    logger = RLMLogger(tmp_path)
    per_thread = 200
    start = threading.Barrier(8)

    def work(cand: int) -> None:
        start.wait()
        for i in range(per_thread):
            logger(ev.IterationStarted(run_id=f"run{cand}", candidate=cand, iteration=i))

    threads = [threading.Thread(target=work, args=(c,)) for c in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    logger.close()
    main = read_log(logger.path)
    assert len(main) == 8 * per_thread
    for cand in range(8):
        mine = [e for e in main if e.candidate == cand]
        # Each thread's events stay in its own publish order.
        assert [e.iteration for e in mine if isinstance(e, ev.IterationStarted)] == list(
            range(per_thread)
        )
        assert len(read_log(logger.candidate_path(cand))) == per_thread


def test_events_after_close_are_dropped(tmp_path: Path) -> None:
    logger = RLMLogger(tmp_path)
    logger(ev.IterationStarted(run_id="r", iteration=1))
    logger.close()
    logger.close()
    logger(ev.IterationStarted(run_id="r", iteration=2))
    assert logger.closed
    assert len(read_log(logger.path)) == 1


def test_read_log_tolerates_cut_last_line_only(tmp_path: Path) -> None:
    logger = RLMLogger(tmp_path)
    logger(ev.IterationStarted(run_id="r", iteration=1))
    logger.close()
    good = logger.path.read_text(encoding="utf-8")
    logger.path.write_text(good + '{"kind": "iteration_sta', encoding="utf-8")
    assert len(read_log(logger.path)) == 1
    logger.path.write_text('{"kind": "nope"}\n' + good, encoding="utf-8")
    with pytest.raises(ValueError, match="line 1"):
        read_log(logger.path)


def test_works_as_bus_subscriber(tmp_path: Path) -> None:
    bus = ev.EventBus()
    logger = RLMLogger(tmp_path)
    unsubscribe = bus.subscribe(logger)
    for e in _run("r"):
        bus.publish(e)
    unsubscribe()
    bus.publish(ev.IterationStarted(run_id="r", iteration=9))
    logger.close()
    assert len(read_log(logger.path)) == 6


def test_bad_file_name(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="plain name"):
        RLMLogger(tmp_path, file_name="a/b")
    assert list(tmp_path.iterdir()) == []

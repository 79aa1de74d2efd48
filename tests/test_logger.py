"""RLMLogger: JSONL trajectory logs written from the event stream."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import pytest
from engine_helpers import make_rlm, repl
from recorded import events

from lmrepl import events as ev
from lmrepl.errors import ConfigurationError
from lmrepl.logger import RLMLogger, read_log
from lmrepl.testing import ScriptedServer


def test_file_name_pattern_and_round_trip(tmp_path: Path) -> None:
    logger = RLMLogger(tmp_path / "logs", file_name="demo")
    assert re.fullmatch(r"demo_\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d_[0-9a-f]{8}\.jsonl", logger.path.name)
    assert logger.path.exists()
    assert logger.log_file_path == str(logger.path)
    sent = events("rlm_run")
    for e in sent:
        logger(e)
    logger.close()
    got = read_log(logger.path)
    assert got == sent
    assert [type(e) for e in got] == [type(e) for e in sent]
    assert logger.paths == [logger.path]
    assert logger.events_written == len(sent)


def test_candidate_events_also_get_their_own_file(tmp_path: Path) -> None:
    sent = events("srlm_search")
    with RLMLogger(tmp_path) as logger:
        for e in sent:
            logger(e)
    paths = [logger.path, *(logger.candidate_path(i) for i in range(3))]
    assert logger.paths == paths
    assert logger.candidate_path(1).name.endswith("_cand1.jsonl")
    assert read_log(logger.path) == sent  # the main file has everything
    for i in range(3):
        assert read_log(logger.candidate_path(i)) == [e for e in sent if e.candidate == i]


def test_log_grows_with_trajectory_not_context(
    tmp_path: Path, scripted_server: ScriptedServer
) -> None:
    big = "0123456789abcdefghij" * 100_000  # 2 MB
    steps = [repl(f"x{i} = len(context)\nprint(x{i})") for i in range(19)]
    scripted_server.script([*steps, repl("FINAL(x0)")])
    logger = RLMLogger(tmp_path)
    make_rlm(scripted_server, logger=logger).completion(big, "How long?")
    logger.close()
    text = logger.path.read_text(encoding="utf-8")
    assert big[:1000] not in text
    assert len(text) < 200_000  # 20 steps of a few KB each, whatever the context size
    assert sum(isinstance(e, ev.IterationFinished) for e in read_log(logger.path)) == 20


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
    sent = events("rlm_run")
    for e in sent:
        bus.publish(e)
    unsubscribe()
    bus.publish(ev.IterationStarted(run_id="r", iteration=9))
    logger.close()
    assert read_log(logger.path) == sent


def test_bad_file_name(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="file_name must be a plain file name"):
        RLMLogger(tmp_path, file_name="a/b")
    assert list(tmp_path.iterdir()) == []

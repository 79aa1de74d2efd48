"""Hard timeouts, kernel death and recovery, on real kernels (each case bounded)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from lmrepl.repl.kernel import KernelREPL
from lmrepl.repl.kernel_pool import KernelPool

pytestmark = pytest.mark.timeout(180)

TIMEOUT = 1.0
GRACE = 1.0
# Timeout + grace + a restart from the warm pool, with room for a loaded 2-core machine.
BOUND = TIMEOUT + GRACE + 6.0


class SlowBridge:
    """``llm_query('slow')`` takes 2 s; anything else answers at once."""

    def __init__(self) -> None:
        self.finished = threading.Event()

    def call(self, fn: str, payload: dict[str, Any]) -> Any:
        if payload.get("prompt") == "slow":
            time.sleep(2.0)
            self.finished.set()
            return "LATE"
        return f"fast:{payload.get('prompt')}"


@pytest.fixture(scope="module")
def pool() -> Iterator[KernelPool]:
    p = KernelPool(size=1)
    p.prewarm(1)
    yield p
    p.shutdown()


@pytest.fixture
def repl(pool: KernelPool) -> Iterator[KernelREPL]:
    r = KernelREPL(pool=pool, cell_timeout=TIMEOUT, interrupt_grace=GRACE)
    r.start(SlowBridge())
    r.add_context("the context")
    yield r
    r.close()


def _timed(repl: KernelREPL, code: str) -> tuple[Any, float]:
    t0 = time.monotonic()
    res = repl.execute(code)
    return res, time.monotonic() - t0


@pytest.mark.parametrize("code", ["while True:\n    pass", "import time\ntime.sleep(60)"])
def test_interruptible_code_times_out_and_keeps_state(repl: KernelREPL, code: str) -> None:
    repl.execute("kept = 41")
    pid = repl.pid
    res, took = _timed(repl, code)
    assert res.status == "timeout"
    assert took < TIMEOUT + GRACE
    assert res.notice is not None and "timed out" in res.notice
    assert repl.pid == pid
    assert repl.execute("kept + 1").display == "42"


@pytest.mark.parametrize(
    "code",
    [
        "sum(range(10**13))",
        "while True:\n    try:\n        while True:\n            pass\n"
        "    except KeyboardInterrupt:\n        pass",
    ],
    ids=["c-loop", "swallows-interrupt"],
)
def test_stuck_kernel_is_killed_and_restarted(repl: KernelREPL, code: str) -> None:
    repl.set_tools({"LIMIT": 3})
    repl.execute("lost = 1")
    old_pid = repl.pid
    res, took = _timed(repl, code)
    assert res.status == "restarted"
    assert took < BOUND
    assert res.notice is not None
    assert "killed" in res.notice and "LOST" in res.notice and "context_0" in res.notice
    assert repl.pid != old_pid
    assert repl.execute("context, LIMIT").display == "('the context', 3)"
    assert repl.execute("lost").status == "error"


def test_kernel_death_is_detected(repl: KernelREPL) -> None:
    old_pid = repl.pid
    res, took = _timed(repl, "import os\nos._exit(1)")
    assert res.status == "died"
    assert took < 6.0
    assert res.notice is not None and "died" in res.notice and "LOST" in res.notice
    assert repl.pid != old_pid
    assert repl.execute("context").display == "'the context'"


def test_memory_limit(pool: KernelPool) -> None:
    with KernelREPL(pool=pool, memory_limit_mb=2048, cell_timeout=10) as r:
        r.start(SlowBridge())
        res = r.execute("x = bytearray(3 * 1024**3)")
        assert res.status == "error"
        assert "MemoryError" in str(res.error)
        assert res.notice is not None and "2048 MB" in res.notice
        assert r.execute("len(bytearray(10**6))").display == "1000000"
        with pytest.raises(ValueError, match="memory_limit_mb"):
            KernelREPL(memory_limit_mb=1, pool=pool).start(SlowBridge())


def test_late_host_call_result_is_dropped(repl: KernelREPL) -> None:
    bridge = SlowBridge()
    repl.session.bridges[0] = bridge
    res = repl.execute("llm_query('slow')")
    assert res.status == "timeout"
    # The slow call now finishes on the host while the next cell's calls run.
    res = repl.execute("[llm_query('a') for _ in range(3)] + [__import__('time').sleep(0.5)]")
    assert res.display == "['fast:a', 'fast:a', 'fast:a', None]"
    assert bridge.finished.wait(5)
    assert repl.execute("llm_query('b')").display == "'fast:b'"


def test_non_host_input_gets_an_empty_line(repl: KernelREPL) -> None:
    res = repl.execute("input('your name? ')")
    assert res.status == "ok" and res.display == "''"

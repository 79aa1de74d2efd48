"""Hard timeouts, kernel death and recovery, on real kernels.

No wall-clock assertions: how a cell ended shows in its status (an interrupt keeps the
kernel, a kill restarts it); pytest-timeout is the only clock. How long each takes is
measured by ``benchmarks/stopping.py``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from lmrepl.repl.kernel import KernelREPL
from lmrepl.repl.kernel_pool import KernelPool

pytestmark = pytest.mark.timeout(180)

TIMEOUT = 1.0
GRACE = 1.0


class SlowBridge:
    """``llm_query('slow')`` answers only once ``llm_query('release')`` lets it go."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.finished = threading.Event()

    def call(self, fn: str, payload: dict[str, Any]) -> Any:
        prompt = payload.get("prompt")
        if prompt == "slow":
            self.release.wait(30)
            self.finished.set()
            return "LATE"
        if prompt == "release":
            self.release.set()
            assert self.finished.wait(10)
            return "released"
        return f"fast:{prompt}"


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


@pytest.mark.parametrize("code", ["while True:\n    pass", "import time\ntime.sleep(60)"])
def test_interruptible_code_times_out_and_keeps_state(repl: KernelREPL, code: str) -> None:
    repl.execute("kept = 41")
    pid = repl.pid
    res = repl.execute(code)
    # Interrupted within the grace, not killed: same kernel, state kept.
    assert res.status == "timeout"
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
    res = repl.execute(code)  # would run for hours (or for ever) unless killed
    assert res.status == "restarted"
    assert res.notice is not None
    assert "killed" in res.notice and "LOST" in res.notice and "context_0" in res.notice
    assert repl.pid != old_pid
    assert repl.execute("context, LIMIT").display == "('the context', 3)"
    assert repl.execute("lost").status == "error"


def test_kernel_death_is_detected(repl: KernelREPL) -> None:
    old_pid = repl.pid
    res = repl.execute("import os\nos._exit(1)")
    # Seen as a death, not waited out as a timeout (that would read "timeout"/"restarted").
    assert res.status == "died"
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
    # The next cell lets the slow call finish on the host, then makes calls of its own:
    # the late "LATE" must not be taken for the answer to any of them.
    res = repl.execute(
        "[llm_query('release')] + [llm_query('a') for _ in range(3)]"
        " + [__import__('time').sleep(0.5)]"
    )
    assert res.display == "['released', 'fast:a', 'fast:a', 'fast:a', None]"
    assert bridge.finished.is_set()
    assert repl.execute("llm_query('b')").display == "'fast:b'"


def test_non_host_input_gets_an_empty_line(repl: KernelREPL) -> None:
    res = repl.execute("input('your name? ')")
    assert res.status == "ok" and res.display == "''"

"""How fast runs stop: cancel and max_timeout on both REPLs, and the kernel's fault paths.

    .venv/bin/python benchmarks/stopping.py [--quick] [--environments local,kernel]

The tests assert *that* a cancel or a limit interrupts a held model call or a running
cell, and that a stuck or dead kernel is killed or noticed; this prints how long each
takes, against the bounds the tests used to assert.

- "cancel": seconds from ``rlm.cancel()`` (called once the model call is held or the
  cell reports that it runs) to ``RunCancelled`` in the caller.
- "max_timeout overshoot": seconds past ``max_timeout`` until ``TimeoutExceeded``.
- kernel rows: one ``KernelREPL.execute`` with ``cell_timeout`` 1 s and grace 1 s.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from _common import ok, table

from lmrepl import RLM, RunCancelled, TimeoutExceeded
from lmrepl.testing import ScriptedRequest, ScriptedServer

SLOW_CELL = (
    "answer['content'] = 'p'\nstarted()\nimport time\nfor _ in range(600):\n    time.sleep(0.05)"
)
TIMEOUT = 1.0
GRACE = 1.0


def _repl(code: str) -> str:
    return f"```repl\n{code}\n```"


def _warm(environment: str) -> None:
    if environment == "kernel":
        from lmrepl.repl.kernel_pool import default_pool

        default_pool().wait_ready(1)


class Held:
    """A responder: the first root turn runs ``first``, the next model call is held."""

    def __init__(self, first: str | None) -> None:
        self.first = first
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self, req: ScriptedRequest) -> str:
        turn = sum(1 for m in req.messages if m.get("role") == "assistant")
        if self.first is not None and turn == 0:
            return _repl(self.first)
        self.entered.set()
        self.release.wait(60)
        return _repl("FINAL('late')")


def _rlm(server: ScriptedServer, environment: str, **kwargs: Any) -> RLM:
    return RLM(
        backend="openai",
        backend_kwargs={"model_name": "m", "base_url": server.base_url, "api_key": "x"},
        environment=environment,
        **kwargs,
    )


def cancel_latency(environment: str, where: str) -> float:
    """Seconds from cancel() to RunCancelled, in a held model call or a running cell."""
    started = threading.Event()
    held = Held("x = 1" if where == "model call" else SLOW_CELL)
    signal = held.entered if where == "model call" else started
    _warm(environment)
    with ScriptedServer(responder=held) as server:
        rlm = _rlm(server, environment, custom_tools={"started": started.set})
        cancelled_at: list[float] = []

        def cancel() -> None:
            signal.wait(60)
            cancelled_at.append(time.perf_counter())
            rlm.cancel()

        canceller = threading.Thread(target=cancel)
        canceller.start()
        try:
            rlm.completion("c", "q")
        except RunCancelled:
            stopped = time.perf_counter()
        finally:
            held.release.set()
            canceller.join(60)
    return stopped - cancelled_at[0]


def timeout_overshoot(environment: str, where: str, max_timeout: float = 2.0) -> float:
    """Seconds past max_timeout until TimeoutExceeded, in a held model call or a cell."""
    held = Held("x = 1" if where == "model call" else SLOW_CELL)
    _warm(environment)
    with ScriptedServer(responder=held) as server:
        no_signal = threading.Event().set  # the cell's started() call, unused here
        rlm = _rlm(
            server, environment, max_timeout=max_timeout, custom_tools={"started": no_signal}
        )
        t = time.perf_counter()
        try:
            rlm.completion("c", "q")
        except TimeoutExceeded:
            took = time.perf_counter() - t
        finally:
            held.release.set()
    return took - max_timeout


class _Bridge:
    def call(self, fn: str, payload: dict[str, Any]) -> Any:
        return "ok"


def kernel_fault(code: str) -> tuple[float, str]:
    """(seconds, status) of one cell on a kernel with cell_timeout 1 s, grace 1 s."""
    from lmrepl.repl.kernel import KernelREPL
    from lmrepl.repl.kernel_pool import default_pool

    default_pool().wait_ready(1)
    with KernelREPL(cell_timeout=TIMEOUT, interrupt_grace=GRACE) as repl:
        repl.start(_Bridge())
        repl.execute("1")
        t = time.perf_counter()
        res = repl.execute(code)
        return time.perf_counter() - t, res.status


def _median(fn: Callable[[], float], repeat: int) -> float:
    return statistics.median(fn() for _ in range(repeat))


def main(argv: list[str] | None = None) -> None:
    """Print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--environments", default="local,kernel")
    args = parser.parse_args(argv)
    repeat = 1 if args.quick else 3
    rows: list[list[Any]] = []
    for env in args.environments.split(","):
        for where in ("model call", "cell"):
            s = _median(lambda env=env, where=where: cancel_latency(env, where), repeat)
            rows.append([f"cancel in a {where} ({env})", f"{s * 1000:.0f} ms", "<= 1 s", ok(s, 1)])
        for where in ("model call", "cell"):
            s = _median(lambda env=env, where=where: timeout_overshoot(env, where), repeat)
            rows.append(
                [f"max_timeout overshoot in a {where} ({env})", f"{s:.2f} s", "<= 1 s", ok(s, 1)]
            )
    if "kernel" in args.environments:
        bound = TIMEOUT + GRACE
        for label, code, want, target in [
            ("interruptible cell times out", "import time\ntime.sleep(60)", "timeout", bound),
            ("stuck kernel (C loop) killed + restarted", "sum(range(10**13))", "restarted", 8.0),
            ("dead kernel noticed + restarted", "import os\nos._exit(1)", "died", 6.0),
        ]:
            runs = [kernel_fault(code) for _ in range(repeat)]
            assert all(status == want for _, status in runs), runs
            s = statistics.median(took for took, _ in runs)
            rows.append([f"kernel: {label}", f"{s:.2f} s", f"<= {target:g} s", ok(s, target)])
    kernel = f"kernel cells: cell_timeout {TIMEOUT:g} s, grace {GRACE:g} s"
    table(
        f"Stopping (median of {repeat}; {kernel})",
        ["measure", "value", "target", "met"],
        rows,
    )
    if "kernel" in args.environments:
        from lmrepl.repl.kernel_pool import default_pool

        default_pool().shutdown()


if __name__ == "__main__":
    main()

"""Kernel REPL benchmark (SPEC §9 rows): start, cell round trip, host calls, contexts.

Run: ``.venv/bin/python benchmarks/kernel.py [--quick]``. Prints one table row per
measurement with its SPEC target, then where a cold start's time goes and the first
search of a fresh process (``kernel_start.py``), and a local kernel against one behind
a Jupyter Kernel Gateway (``kernel_gateway.py``). Memory is host + kernel RSS sampled every 2 ms,
counted from before the caller builds the context (so the caller's copy is included).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import threading
import time
from typing import Any

import psutil

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import kernel_gateway
import kernel_start
from _common import table

from lmrepl.repl.kernel import KernelREPL
from lmrepl.repl.kernel_pool import KernelPool


class Bridge:
    """Answers host calls at once."""

    def call(self, fn: str, payload: dict[str, Any]) -> Any:
        return "ok"


class Sampler:
    """Peak RSS of this process plus one kernel, sampled in a thread."""

    def __init__(self, kernel_pid: int) -> None:
        self.procs = [psutil.Process(), psutil.Process(kernel_pid)]
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def rss(self) -> int:
        total = 0
        for p in self.procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                total += p.memory_info().rss
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            self._stop.wait(0.002)

    def __enter__(self) -> Sampler:
        self.peak = self.rss()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.rss())


def row(name: str, value: str, target: str) -> None:
    """Print one table row."""
    print(f"| {name:<46} | {value:>14} | {target:<18} |", flush=True)


def wait_ready(pool: KernelPool, n: int) -> None:
    """Block until ``n`` kernels are warm."""
    pool.prewarm(n)
    while len(pool._ready) < n:
        time.sleep(0.01)


def bench_start(pool: KernelPool, runs: int) -> None:
    cold, warm = [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        with KernelREPL(use_pool=False) as r:
            r.start(Bridge())
            r.execute("1")
            cold.append(time.perf_counter() - t0)
    for _ in range(runs):
        wait_ready(pool, 1)
        t0 = time.perf_counter()
        with KernelREPL(pool=pool) as r:
            r.start(Bridge())
            r.execute("1")
            warm.append(time.perf_counter() - t0)
    row("cold start to first cell (median)", f"{statistics.median(cold) * 1000:.0f} ms", "[0.59 s]")
    row(
        "warm (pooled) start to first cell (median)",
        f"{statistics.median(warm) * 1000:.1f} ms",
        "<= 50 ms",
    )


def bench_cells(pool: KernelPool, n: int) -> None:
    wait_ready(pool, 1)
    with KernelREPL(pool=pool) as r:
        r.start(Bridge())
        kc = r.session.handle.kc
        for _ in range(20):
            r.execute("1")
        # Interleaved with jupyter_client's own execute_interactive on the same kernel,
        # so both see the same machine load.
        ours, raw = [], []
        for _ in range(n):
            t0 = time.perf_counter()
            r.execute("1")
            t1 = time.perf_counter()
            kc.execute_interactive("1", output_hook=lambda msg: None)
            raw.append(time.perf_counter() - t1)
            ours.append(t1 - t0)
        trivial = statistics.median(ours)
        row(f"trivial cell round trip (median of {n})", f"{trivial * 1000:.2f} ms", "<= 4 ms")
        row(
            "  reference: raw execute_interactive",
            f"{statistics.median(raw) * 1000:.2f} ms",
            "(NOTES: ~3.5 ms)",
        )
        calls = 200
        per = []
        for _ in range(5):
            t0 = time.perf_counter()
            r.execute(f"for _ in range({calls}):\n    llm_query('x')")
            per.append((time.perf_counter() - t0 - trivial) / calls)
        row(
            "host_call round trip (llm_query, median)",
            f"{statistics.median(per) * 1000:.2f} ms",
            "~1 ms (NOTES)",
        )


def bench_context(pool: KernelPool, mb: int, local_files: bool, runs: int) -> None:
    wait_ready(pool, 1)
    took, ratios = [], []
    with KernelREPL(pool=pool, local_files=local_files) as r:
        r.start(Bridge())
        r.execute("1")
        assert r.pid is not None
        for i in range(runs):
            with Sampler(r.pid) as s:
                base = s.peak
                text = "0123456789abcdef" * (mb * 65536)
                t0 = time.perf_counter()
                r.add_context(text)
                res = r.execute(f"len(context_{i})")
                took.append(time.perf_counter() - t0)
            assert res.display == str(len(text)), res
            ratios.append((s.peak - base) / len(text))
            del text
    path = "file" if local_files else "protocol"
    target = "<= 0.3 s, <= 2.2x" if mb == 100 and local_files else ""
    row(
        f"{mb} MB str usable ({path}, min/median of {runs})",
        f"{min(took) * 1000:.0f}/{statistics.median(took) * 1000:.0f} ms",
        target,
    )
    row(f"{mb} MB str peak host+kernel RSS ({path}, max)", f"{max(ratios):.2f}x", "")


def bench_fan_out() -> None:
    """32 sub-calls at 200 ms through the kernel's host channel (engine.py has the rest)."""
    from _server import ServerProcess
    from engine import fan_out

    with ServerProcess(latency=0.2) as server:
        fan_out(server, "kernel", 16)  # warm-up
        for c in (4, 8, 16):
            eff = fan_out(server, "kernel", c)
            row(f"llm_query_batched 32 x 200 ms, concurrency {c}", f"{eff * 100:.0f} %", ">= 95 %")


def _cold_first_cell(sandbox: str) -> float:
    t0 = time.perf_counter()
    with KernelREPL(use_pool=False, sandbox=sandbox) as r:
        r.start(Bridge())
        r.execute("1")
        return time.perf_counter() - t0


def _round_trip(r: KernelREPL, n: int) -> float:
    took = []
    for _ in range(n):
        t0 = time.perf_counter()
        r.execute("1")
        took.append(time.perf_counter() - t0)
    return statistics.median(took)


def _context_100mb(r: KernelREPL, i: int) -> float:
    text = "0123456789abcdef" * (100 * 65536)
    t0 = time.perf_counter()
    r.add_context(text)
    res = r.execute(f"len(context_{i})")
    took = time.perf_counter() - t0
    assert res.display == str(len(text)), res
    return took


def bench_sandbox(runs: int, cells: int) -> None:
    """The sandbox's cost: the same measurements with ``sandbox="none"`` and ``"bwrap"``.

    The two are interleaved run by run, so both see the same machine load.
    """
    from lmrepl.repl.sandbox import unavailable_reason

    why = unavailable_reason()
    if why is not None:
        print(f"\nsandbox cost: not measured ({why})")
        return
    modes = ("none", "bwrap")
    start: dict[str, list[float]] = {m: [] for m in modes}
    trip: dict[str, list[float]] = {m: [] for m in modes}
    ctx: dict[str, list[float]] = {m: [] for m in modes}
    for _ in range(runs):
        for m in modes:
            start[m].append(_cold_first_cell(m))
    repls = {m: KernelREPL(use_pool=False, sandbox=m) for m in modes}
    try:
        for r in repls.values():
            r.start(Bridge())
            _round_trip(r, 20)
        for _ in range(5):
            for m in modes:
                trip[m].append(_round_trip(repls[m], cells // 5))
        for i in range(runs):
            for m in modes:
                ctx[m].append(_context_100mb(repls[m], i))
    finally:
        for r in repls.values():
            r.close()

    def cmp(
        name: str, values: dict[str, list[float]], scale: float, unit: str, target: str
    ) -> None:
        a, b = (statistics.median(values[m]) * scale for m in modes)
        delta = f"{(b - a):+.1f} {unit} ({(b / a - 1) * 100:+.0f} %)"
        cells = f"| {a:>9.2f} {unit:<2} | {b:>9.2f} {unit:<2} | {delta:>20} "
        print(f"| {name:<36} {cells}| {target:<16} |")

    head = f"| {'none':>12} | {'bwrap':>12} | {'delta':>20} | {'target':<16} |"
    print(f"\n| {'sandbox cost (median)':<36} {head}")
    print(f"|{'-' * 38}|{'-' * 14}|{'-' * 14}|{'-' * 22}|{'-' * 18}|")
    cmp(f"cold kernel start to first cell ({runs})", start, 1000, "ms", "+150 ms at most")
    cmp(f"cell round trip ({cells})", trip, 1000, "ms", "+10 % at most")
    cmp(f"100 MB context usable ({runs})", ctx, 1000, "ms", "unchanged")


def main() -> None:
    """Run every row."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = parser.parse_args()
    pool = KernelPool(size=1)
    print(f"| {'measurement':<46} | {'value':>14} | {'target (SPEC §9)':<18} |")
    print(f"|{'-' * 48}|{'-' * 16}|{'-' * 20}|")
    try:
        bench_start(pool, 2 if args.quick else 5)
        bench_cells(pool, 200 if args.quick else 500)
        runs = 2 if args.quick else 3
        for mb in (1, 10, 100):
            bench_context(pool, mb, local_files=True, runs=runs)
        bench_context(pool, 100, local_files=False, runs=runs)
        bench_fan_out()
        bench_sandbox(3 if args.quick else 7, 200 if args.quick else 500)
        kernel_start.breakdown(3 if args.quick else 7)
        kernel_start.first_search(3 if args.quick else 5)
        rows = kernel_gateway.gateway_rows(
            cells=20 if args.quick else 50, runs=2 if args.quick else 3
        )
        table("local kernel vs Jupyter Kernel Gateway on loopback", kernel_gateway.HEADER, rows)
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        print(f"\nload average during the run: {load} (2 cores shared with other work)")
    finally:
        pool.shutdown()


if __name__ == "__main__":
    main()

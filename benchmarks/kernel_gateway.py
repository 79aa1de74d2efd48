"""A local kernel against one behind a Jupyter Kernel Gateway on loopback (docs/gateway.md).

    .venv/bin/python benchmarks/kernel_gateway.py [--quick]

Starts its own gateway (``tests/gateway_server.py``), measures the same things on a local
unsandboxed kernel and on a gateway kernel, prints one table and stops the gateway.
``gateway_rows()`` returns the rows for other scripts (``benchmarks/kernel.py``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# The gateway the tests start (tests/gateway_server.py), started here the same way.
sys.path.insert(
    0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests")
)

from _common import median_time, table
from gateway_server import GatewayServer

from lmrepl.repl.kernel import KernelREPL

#: The table's columns.
HEADER = ("measurement", "local kernel", "gateway (loopback)")


class Bridge:
    """Answers host calls at once."""

    def call(self, fn: str, payload: dict[str, Any]) -> Any:
        return "ok"


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def _start(kwargs: dict[str, Any], runs: int) -> float:
    """Median seconds from a new REPL to its first cell's result (no pool)."""

    def once() -> None:
        with KernelREPL(**kwargs) as r:
            r.start(Bridge())
            r.execute("1")
            r.close()

    return median_time(once, runs)


def _cells(repl: KernelREPL, n: int) -> float:
    for _ in range(10):
        repl.execute("1")
    return median_time(lambda: repl.execute("1"), n)


def _host_calls(repl: KernelREPL, calls: int, runs: int) -> float:
    """Seconds per ``llm_query`` round trip, over a cell of ``calls`` of them."""
    trivial = _cells(repl, 10)
    cell = median_time(lambda: repl.execute(f"for _ in range({calls}):\n    llm_query('x')"), runs)
    return (cell - trivial) / calls


def _context(repl: KernelREPL, mb: int, runs: int) -> float:
    """Median seconds until a new ``mb`` MB str context is usable in the kernel."""
    took = []
    for _ in range(runs):
        text = "0123456789abcdef" * (mb * 65536)
        t0 = time.perf_counter()
        index = repl.add_context(text)
        shown = repl.execute(f"len(context_{index})").display
        took.append(time.perf_counter() - t0)
        assert shown == str(len(text)), shown
    return statistics.median(took)


def _measure(kwargs: dict[str, Any], cells: int, mb: int, runs: int) -> dict[str, float]:
    out = {"start": _start(kwargs, runs)}
    with KernelREPL(**kwargs) as r:
        r.start(Bridge())
        out["cell"] = _cells(r, cells)
        out["call"] = _host_calls(r, 100, runs)
        out["context"] = _context(r, mb, runs)
        r.close()
    return out


def gateway_rows(cells: int = 50, mb: int = 10, runs: int = 3) -> list[list[str]]:
    """The comparison's rows (``HEADER``): start, cell round trip, host call, context."""
    local_kwargs = {"sandbox": "none", "use_pool": False, "cell_timeout": 120.0}
    local = _measure(local_kwargs, cells, mb, runs)
    local_protocol = _measure({**local_kwargs, "local_files": False}, 5, mb, runs)
    gateway = GatewayServer().start()
    try:
        remote = _measure(gateway.kwargs(cell_timeout=120.0), cells, mb, runs)
        left = gateway.kernels()
    finally:
        gateway.stop()
    assert not left, f"kernels left on the gateway: {left}"
    rows: list[tuple[str, Callable[[dict[str, float]], str]]] = [
        ("start to first cell (median, no pool)", lambda m: _ms(m["start"])),
        (f"trivial cell round trip (median of {cells})", lambda m: _ms(m["cell"])),
        ("llm_query round trip (100 in one cell)", lambda m: f"{m['call'] * 1000:.2f} ms"),
        (f"{mb} MB str context usable (median of {runs})", lambda m: _ms(m["context"])),
    ]
    table_rows = [[name, show(local), show(remote)] for name, show in rows]
    table_rows.append(
        [
            f"  same, local kernel over the protocol path ({mb} MB)",
            _ms(local_protocol["context"]),
            "",
        ]
    )
    return table_rows


def main() -> None:
    """Print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = parser.parse_args()
    rows = gateway_rows(cells=20 if args.quick else 50, runs=2 if args.quick else 3)
    table("Local kernel vs Jupyter Kernel Gateway on loopback (no sandbox)", HEADER, rows)
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"\nload average during the run: {load}")


if __name__ == "__main__":
    main()

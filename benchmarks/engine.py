"""Engine benchmarks (SPEC §9): overhead per iteration, fixed cost, fan-out efficiency.

    .venv/bin/python benchmarks/engine.py [--quick]

Overhead per iteration is the wall time of a run minus the time spent inside model
calls and inside the cells' own code, divided by the iterations; the model is the
in-process replay backend (no latency) so nothing else hides the engine's cost.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from _common import ok, table
from _server import ServerProcess

from lmrepl import RLM
from lmrepl.events import CellFinished, Event, IterationStarted, ModelCallFinished, RunFinished


def _loop_replies(n: int) -> list[str]:
    return [f"```repl\nx = {i}\n```" for i in range(n - 1)] + ["```repl\nFINAL(x)\n```"]


def overhead_per_iteration(environment: str, iterations: int, repeat: int) -> float:
    """Milliseconds of engine time per iteration.

    Counted from the first iteration to the end of the run, so the REPL's start (a
    kernel from the pool, measured separately) is not spread over the iterations.
    A trivial cell's own code takes microseconds, so its round trip is engine time too.
    """
    results = []
    for _ in range(repeat):
        _warm(environment)
        rlm = RLM(
            backend="replay",
            backend_kwargs={"replies": _loop_replies(iterations)},
            environment=environment,
            max_iterations=iterations + 1,
        )
        model = 0.0
        first: list[float] = []
        last: list[float] = []

        def on_event(e: Event, first: list[float] = first, last: list[float] = last) -> None:
            nonlocal model
            if isinstance(e, ModelCallFinished):
                model += e.duration
            elif isinstance(e, IterationStarted) and not first:
                first.append(time.perf_counter())
            elif isinstance(e, RunFinished):
                last.append(time.perf_counter())

        rlm.subscribe(on_event)
        rlm.completion("context", "q")
        results.append((last[0] - first[0] - model) / iterations * 1000)
        rlm.close()
    return sorted(results)[len(results) // 2]


def _warm(environment: str) -> None:
    """Let the kernel pool hold a ready kernel, as between a user's runs."""
    if environment == "kernel":
        from lmrepl.repl.kernel_pool import default_pool

        default_pool().wait_ready(1)


def fixed_cost(environment: str, repeat: int) -> float:
    """Seconds for a whole completion() whose model answers at once (0 latency),
    with a warm kernel available (SPEC §9)."""
    rlm = RLM(
        backend="replay",
        backend_kwargs={"responder": lambda messages: "```repl\nFINAL(1)\n```"},
        environment=environment,
    )
    rlm.completion("warm-up", "q")
    times = []
    for _ in range(repeat):
        _warm(environment)
        started = time.perf_counter()
        rlm.completion("context", "q")
        times.append(time.perf_counter() - started)
    return sorted(times)[len(times) // 2]


def fan_out(
    server: ServerProcess, environment: str, concurrency: int, n: int = 32, fn: str = "llm_query"
) -> float:
    """Efficiency (ideal / measured) of llm_query_batched of ``n`` prompts at 200 ms.

    The root model is the in-process replay backend; the sub-calls go to a server in
    another process (``other_backends``) through the real OpenAI client path.
    """
    code = f"out = {fn}_batched([str(i) for i in range({n})])"
    rlm = RLM(
        backend="replay",
        backend_kwargs={"replies": [f"```repl\n{code}\n```", "```repl\nFINAL(len(out))\n```"]},
        other_backends=["openai"],
        other_backend_kwargs=[{"model_name": "sub", "base_url": server.base_url, "api_key": "x"}],
        environment=environment,
        max_concurrent_subcalls=concurrency,
    )
    cell_time: list[float] = []
    # Only the root's cell: children's cells finish inside it.
    rlm.subscribe(
        lambda e: (
            cell_time.append(e.cell.duration)
            if isinstance(e, CellFinished) and e.depth == 0
            else None
        )
    )
    rlm.completion("c", "q")
    rlm.close()
    ideal = math.ceil(n / concurrency) * 0.2
    return ideal / cell_time[0]


def main(argv: list[str] | None = None) -> None:
    """Print the engine benchmark tables."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--environments", default="local,kernel")
    args = parser.parse_args(argv)
    envs = args.environments.split(",")
    repeat = 3 if args.quick else 7
    rows: list[list[Any]] = []
    for env in envs:
        ms = overhead_per_iteration(env, 20, repeat)
        rows.append(
            [f"overhead per iteration ({env})", f"{ms:.2f} ms", "<= 5 ms", "9.8 ms", ok(ms, 5)]
        )
        fc = fixed_cost(env, repeat)
        target = 0.15
        ref = "0.55 s" if env == "local" else "1.6 s"
        rows.append(
            [
                f"fixed cost of completion() ({env})",
                f"{fc * 1000:.1f} ms",
                "<= 150 ms",
                ref,
                ok(fc, target),
            ]
        )
    # The reply is a submission, so the same server also serves child RLMs (one step each).
    with ServerProcess(latency=0.2, reply="```repl\nFINAL('c')\n```") as server:
        fan_out(server, envs[0], 16)  # warm-up: imports, connections
        for env in envs:
            for c in (4, 8, 16):
                eff = fan_out(server, env, c)
                rows.append(
                    [
                        f"llm_query_batched 32 x 200 ms, concurrency {c} ({env})",
                        f"{eff * 100:.0f} %",
                        ">= 95 %",
                        "ignores setting",
                        ok(eff, 0.95, lower_is_better=False),
                    ]
                )
            for c in (8, 16):
                _warm(env)
                ratio = 1 / fan_out(server, env, c, fn="rlm_query")
                rows.append(
                    [
                        f"rlm_query_batched 32 children, concurrency {c} ({env})",
                        f"{ratio:.2f}x ideal",
                        "<= 2x",
                        "6-23x",
                        ok(ratio, 2.0),
                    ]
                )
    table("Engine (SPEC §9)", ["measure", "value", "target", "lm-repl 0.2.0", "met"], rows)


if __name__ == "__main__":
    main()

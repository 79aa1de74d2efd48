"""SRLM benchmarks (SPEC §9): parallel candidates' wall time, and early stop's savings.

    .venv/bin/python benchmarks/srlm.py [--environment local|kernel]

The model is a loopback server with 200 ms per request and free slots; each
candidate takes three steps. Wall time of K=4 is compared with K=1.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from _common import ok, table

from lmrepl import SRLM
from lmrepl.testing import ScriptedReply, ScriptedRequest, ScriptedServer

STEPS = [
    '```repl\nn = len(context)\nprint(n)\n```\n{"confidence": 70}',
    '```repl\npart = context[:100]\nprint(part[:20])\n```\n{"confidence": 80}',
    '```repl\nFINAL(n)\n```\n{"confidence": 90}',
]


def _turns(req: ScriptedRequest) -> int:
    return sum(1 for m in req.messages if m.get("role") == "assistant")


def _wait_for_kernels(environment: str, n: int) -> None:
    """As between a user's searches: the kernel pool has refilled to the last demand."""
    if environment == "kernel":
        from lmrepl.repl.kernel_pool import default_pool

        default_pool().wait_ready(n)


def wall_time(server: ScriptedServer, environment: str, k: int, parallel: int) -> float:
    """Seconds for one SRLM search."""
    server.script(responder=lambda req: STEPS[min(_turns(req), 2)], latency=0.2)
    srlm = SRLM(
        backend="openai",
        backend_kwargs={"model_name": "m", "base_url": server.base_url, "api_key": "x"},
        environment=environment,
        n_candidates=k,
        candidate_parallel=parallel,
        confidence_elicitation=True,
    )
    _wait_for_kernels(environment, min(k, parallel))
    started = time.perf_counter()
    srlm.completion("x" * 10_000, "How long is the context?")
    elapsed = time.perf_counter() - started
    srlm.close()
    return elapsed


def early_stop_savings(server: ScriptedServer, environment: str) -> tuple[int, int, float, float]:
    """(tokens without, tokens with, wall without, wall with) on a 3-of-4 agreeing set."""
    lock = threading.Lock()

    def run(early: bool) -> tuple[int, float]:
        order = {"n": 0}

        def by_candidate(req: ScriptedRequest) -> str | ScriptedReply:
            turn = _turns(req)
            if turn == 0:
                with lock:
                    order["n"] += 1
                    me = order["n"]
                tag = "wander" if me == 4 else "agree"
                return f'```repl\ntag = {tag!r}\n```\n{{"confidence": 60}}'
            if "wander" in str(req.messages[2]["content"]):
                if turn < 6:
                    return ScriptedReply(text='```repl\nx = 1\n```\n{"confidence": 40}', delay=0.2)
                return "```repl\nFINAL(7)\n```"
            return '```repl\nFINAL(42)\n```\n{"confidence": 90}'

        server.script(responder=by_candidate, latency=0.2)
        srlm = SRLM(
            backend="openai",
            backend_kwargs={"model_name": "m", "base_url": server.base_url, "api_key": "x"},
            environment=environment,
            n_candidates=4,
            candidate_parallel=4,
            confidence_elicitation=True,
            early_stop=early,
            max_iterations=10,
        )
        _wait_for_kernels(environment, 4)
        started = time.perf_counter()
        result = srlm.completion("x" * 1000, "q")
        wall = time.perf_counter() - started
        srlm.close()
        return (
            result.usage_summary.total_output_tokens + result.usage_summary.total_input_tokens,
            wall,
        )

    t_off, w_off = run(False)
    t_on, w_on = run(True)
    return t_off, t_on, w_off, w_on


def main(argv: list[str] | None = None) -> None:
    """Print the SRLM benchmark tables."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--environment", default="local")
    args = parser.parse_args(argv)
    env = args.environment
    rows: list[list[Any]] = []
    with ScriptedServer() as server:
        wall_time(server, env, 1, 1)  # warm-up
        base = min(wall_time(server, env, 1, 1) for _ in range(2))
        rows.append([f"K=1 ({env})", f"{base:.2f} s", "", "", ""])
        for parallel in (1, 2, 4):
            t = min(wall_time(server, env, 4, parallel) for _ in range(2))
            ratio = t / base
            target = "<= 1.1x" if parallel == 4 else ""
            met = ok(ratio, 1.1) if parallel == 4 else ""
            rows.append(
                [
                    f"K=4, candidate_parallel={parallel} ({env})",
                    f"{t:.2f} s",
                    f"{ratio:.2f}x",
                    target,
                    met,
                ]
            )
        t_off, t_on, w_off, w_on = early_stop_savings(server, env)
    table(
        "SRLM wall time (200 ms model latency, 3 steps per candidate)",
        ["run", "wall", "vs K=1", "target", "met"],
        rows,
    )
    table(
        "early_stop on a set where 3 of 4 candidates agree",
        ["", "tokens", "wall"],
        [
            ["early_stop=False", t_off, f"{w_off:.2f} s"],
            ["early_stop=True", t_on, f"{w_on:.2f} s"],
            ["saved", f"{(1 - t_on / t_off) * 100:.0f} %", f"{(1 - w_on / w_off) * 100:.0f} %"],
        ],
    )


if __name__ == "__main__":
    main()

"""ScriptedServer benchmark: keep-alive round trip, a burst of concurrent requests, stop.

    .venv/bin/python benchmarks/scripted_server.py [--quick]

The tests only check what the server does (one keep-alive connection, Nagle off, all
requests in the server at once, a stop that wakes sleeping handlers); how fast it does
it is measured here, against the targets the tests used to assert.
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from _common import ok, table

from lmrepl.testing import ScriptedReply, ScriptedServer

BODY = json.dumps({"model": "m", "messages": [{"role": "user", "content": "x"}]})


def post(port: int, body: str = BODY) -> int:
    """One POST on a fresh connection; the status."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", "/v1/chat/completions", body)
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def keepalive_round_trip(n: int) -> tuple[float, float]:
    """(median, 95th percentile) seconds per request on one keep-alive connection."""
    with ScriptedServer() as server:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        times = []
        for _ in range(n + 10):
            t = time.perf_counter()
            conn.request("POST", "/v1/chat/completions", BODY)
            conn.getresponse().read()
            times.append(time.perf_counter() - t)
        conn.close()
    times = sorted(times[10:])  # the first requests warm the connection up
    return statistics.median(times), times[int(len(times) * 0.95) - 1]


def concurrent_burst(n: int, latency: float) -> float:
    """Seconds for ``n`` concurrent requests that each wait ``latency`` in the server."""
    with ScriptedServer(latency=latency) as server, ThreadPoolExecutor(n) as pool:
        t = time.perf_counter()
        statuses = list(pool.map(lambda _: post(server.port), range(n)))
        took = time.perf_counter() - t
    assert statuses == [200] * n, statuses
    return took


def stop_time() -> float:
    """Seconds ``stop()`` takes with a handler asleep in a 30 s delay and an idle connection."""
    arrived = threading.Event()

    def responder(req: Any) -> ScriptedReply:
        arrived.set()
        return ScriptedReply(text="slow", delay=30)

    server = ScriptedServer(responder=responder).start()
    caller = threading.Thread(target=post, args=(server.port,), daemon=True)
    caller.start()
    arrived.wait(10)
    idle = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    idle.request("GET", "/v1/models")
    idle.getresponse().read()
    t = time.perf_counter()
    server.stop()
    took = time.perf_counter() - t
    caller.join(10)
    idle.close()
    return took


def main(argv: list[str] | None = None) -> None:
    """Print the ScriptedServer table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = parser.parse_args(argv)
    repeat = 3 if args.quick else 7
    median, p95 = keepalive_round_trip(100 if args.quick else 500)
    burst = statistics.median(concurrent_burst(32, 0.2) for _ in range(repeat))
    stop = statistics.median(stop_time() for _ in range(repeat))
    rows = [
        [
            "keep-alive request round trip (median)",
            f"{median * 1000:.2f} ms",
            "<= 20 ms",
            ok(median, 0.02),
        ],
        ["keep-alive request round trip (p95)", f"{p95 * 1000:.2f} ms", "<= 20 ms", ok(p95, 0.02)],
        [
            f"32 concurrent requests x 200 ms latency (median of {repeat})",
            f"{burst:.2f} s",
            "<= 1.0 s (one wave: 0.2 s)",
            ok(burst, 1.0),
        ],
        [
            f"stop() with a sleeping handler + idle connection (median of {repeat})",
            f"{stop * 1000:.1f} ms",
            "<= 200 ms",
            ok(stop, 0.2),
        ],
    ]
    table("ScriptedServer", ["measure", "value", "target", "met"], rows)


if __name__ == "__main__":
    main()

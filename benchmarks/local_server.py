"""The embedded model's llama.cpp server: load, tokens per second, and how fast it stops.

    .venv/bin/python benchmarks/local_server.py [--quick]

tests/test_local_server.py checks what the server does (one shared server, greedy replies
repeatable, a stop cuts off a request in flight, ``serve`` exits on SIGTERM); the times
are measured here. "Mid-generation" means: the server's ``/slots`` shows a slot that has
decoded a token.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import statistics
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from _common import ok, table

from lmrepl.clients.base import CallOptions, Completion
from lmrepl.clients.local import LocalClient
from lmrepl.local.server import get_server, shutdown_servers

PROMPT = [{"role": "user", "content": "Write a Python function that adds two numbers."}]
ESSAY = [{"role": "user", "content": "Write a long essay about compilers."}]


def wait_until_decoding(url: str, api_key: str | None, n: int = 1) -> None:
    """Poll ``/slots`` until ``n`` slots have decoded a token."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    req = urllib.request.Request(url + "/slots", headers=headers)
    while True:
        with urllib.request.urlopen(req, timeout=10) as resp:
            slots = json.loads(resp.read())
        decoding = 0
        for slot in slots:
            nxt = slot.get("next_token") or {}
            nxt = nxt[0] if isinstance(nxt, list) and nxt else nxt
            decoding += bool(slot.get("is_processing") and nxt.get("n_decoded", 0) > 0)
        if decoding >= n:
            return
        time.sleep(0.02)


def single_reply(client: LocalClient, repeat: int) -> tuple[float, float]:
    """(median seconds, median output tokens/s) of a 32-token greedy reply."""
    times, rates = [], []
    for _ in range(repeat):
        t = time.perf_counter()
        reply = client.complete(PROMPT, CallOptions(temperature=0, max_tokens=32))
        took = time.perf_counter() - t
        times.append(took)
        rates.append(reply.output_tokens / took)
    return statistics.median(times), statistics.median(rates)


def concurrent_rate(client: LocalClient, n: int) -> float:
    """Output tokens/s of ``n`` concurrent 24-token requests, all together."""
    results: list[Completion] = []

    def ask(i: int) -> None:
        messages = [{"role": "user", "content": f"Name {i + 2} prime numbers."}]
        results.append(client.complete(messages, CallOptions(temperature=0, max_tokens=24)))

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(n)]
    t = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    took = time.perf_counter() - t
    return sum(r.output_tokens for r in results) / took


def stop_in_flight() -> float:
    """Seconds ``shutdown_servers()`` takes while a 2000-token request is generating."""
    server = get_server()
    client = LocalClient(max_retries=0)
    outcome: list[Any] = []

    def long_request() -> None:
        try:
            outcome.append(client.complete(ESSAY, CallOptions(max_tokens=2000)))
        except Exception as exc:
            outcome.append(exc)

    worker = threading.Thread(target=long_request, daemon=True)
    worker.start()
    wait_until_decoding(server.url, server.api_key)
    t = time.perf_counter()
    shutdown_servers()
    took = time.perf_counter() - t
    worker.join(60)
    client.close()
    assert outcome and not isinstance(outcome[0], Completion), outcome
    return took


def cli_sigterm() -> float:
    """Seconds from SIGTERM to exit of ``serve`` with an external request generating."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "lmrepl.local", "serve", "--parallel", "1", "--ctx", "2048"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(3)]
        base_url = lines[1].split()[-1]
        key = next((ln.split()[-1] for ln in lines if ln.startswith("API key: ")), None)
        body = json.dumps({"model": "m", "messages": ESSAY, "max_tokens": 2000}).encode()
        request = urllib.request.Request(
            base_url + "/chat/completions", data=body, headers={"Content-Type": "application/json"}
        )

        def call() -> None:
            with contextlib.suppress(Exception):  # cut off by the stop, as intended
                urllib.request.urlopen(request, timeout=120).read()

        worker = threading.Thread(target=call, daemon=True)
        worker.start()
        wait_until_decoding(base_url.removesuffix("/v1"), key)
        t = time.perf_counter()
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        return time.perf_counter() - t
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


EXIT_SCRIPT = textwrap.dedent(
    """
    import sys, threading
    sys.path.insert(0, {here!r})
    from local_server import wait_until_decoding
    from lmrepl.clients.base import CallOptions
    from lmrepl.clients.local import LocalClient
    from lmrepl.local.server import get_server
    client = LocalClient(max_retries=0)
    client.complete([{{"role": "user", "content": "hi"}}], CallOptions(max_tokens=2))
    def work():
        try:
            client.complete([{{"role": "user", "content": "Write a long essay."}}],
                            CallOptions(max_tokens=2000))
        except Exception:
            pass
    for _ in range(2):
        threading.Thread(target=work, daemon=True).start()
    srv = get_server()
    wait_until_decoding(srv.url, srv.api_key, n=2)
    print("exiting", flush=True)
    """
)


def exit_mid_generation() -> float:
    """Seconds from "exiting" (two generations under way) to the interpreter's exit."""
    script = EXIT_SCRIPT.format(here=str(Path(__file__).parent))
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    t = time.perf_counter()
    code = proc.wait(120)
    assert line.strip() == "exiting" and code == 0, (line, code)
    return time.perf_counter() - t


def main(argv: list[str] | None = None) -> None:
    """Print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = parser.parse_args(argv)
    repeat = 1 if args.quick else 3
    t = time.perf_counter()
    server = get_server()
    started = time.perf_counter() - t
    client = LocalClient()
    client.complete(PROMPT, CallOptions(temperature=0, max_tokens=2))  # warm-up
    reply_s, reply_rate = single_reply(client, 3 if args.quick else 7)
    rate2 = statistics.median(concurrent_rate(client, 2) for _ in range(repeat))
    client.close()
    stop = stop_in_flight()  # stops the shared server; the next rows start their own
    sigterm = statistics.median(cli_sigterm() for _ in range(repeat))
    exit_s = statistics.median(exit_mid_generation() for _ in range(repeat))
    rows = [
        [
            "get_server(): join check + load",
            f"{started:.2f} s (load {server.load_seconds or 0:.2f} s)",
            "",
            "",
        ],
        ["32-token greedy reply (median)", f"{reply_s:.2f} s, {reply_rate:.1f} tok/s", "", ""],
        ["2 concurrent 24-token replies", f"{rate2:.1f} tok/s", "", ""],
        [
            "shutdown_servers() with a request generating",
            f"{stop:.2f} s",
            "<= 5 s",
            ok(stop, 5),
        ],
        [
            "serve: SIGTERM to exit, external request generating",
            f"{sigterm:.2f} s",
            "<= 5 s",
            ok(sigterm, 5),
        ],
        [
            "interpreter exit with 2 requests generating",
            f"{exit_s:.2f} s",
            "<= 5 s",
            ok(exit_s, 5),
        ],
    ]
    table(
        f"Embedded model server (median of {repeat})", ["measure", "value", "target", "met"], rows
    )


if __name__ == "__main__":
    main()

"""ScriptedServer over raw HTTP: routes, scripting, usage, errors, concurrency, fast stop."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from lmrepl.testing import ScriptedReply, ScriptedRequest, ScriptedServer


def post(
    server: ScriptedServer, path: str, body: dict[str, Any], headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], Any]:
    """One POST on a fresh connection: (status, lower-cased headers, parsed JSON)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request(
            "POST", path, json.dumps(body), {"Content-Type": "application/json", **(headers or {})}
        )
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, json.loads(data)
    finally:
        conn.close()


def chat(text: str, **extra: Any) -> dict[str, Any]:
    """An OpenAI chat body."""
    return {"model": "m", "messages": [{"role": "user", "content": text}], **extra}


def test_openai_routes_and_usage(scripted_server: ScriptedServer) -> None:
    scripted_server.script(["first", "second", ScriptedReply(text="third", usage=False)])
    status, _, body = post(
        scripted_server, "/v1/chat/completions", chat("12345678", temperature=0.7)
    )
    assert status == 200
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "first"}
    assert body["usage"] == {"prompt_tokens": 2, "completion_tokens": 2, "total_tokens": 4}
    assert body["model"] == "m"
    assert (
        post(scripted_server, "/chat/completions", chat("x"))[2]["choices"][0]["message"]["content"]
        == "second"
    )
    assert "usage" not in post(scripted_server, "/v1/chat/completions", chat("x"))[2]
    first = scripted_server.requests[0]
    assert (first.path, first.model, first.temperature, first.api) == (
        "/v1/chat/completions",
        "m",
        0.7,
        "openai",
    )
    assert first.messages == [{"role": "user", "content": "12345678"}]


def test_models_route(scripted_server: ScriptedServer) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", scripted_server.port, timeout=5)
    conn.request("GET", "/v1/models")
    resp = conn.getresponse()
    body = json.loads(resp.read())
    conn.request("GET", "/nope")
    missing = conn.getresponse()
    missing.read()
    conn.close()
    assert resp.status == 200 and body["object"] == "list" and body["data"]
    assert missing.status == 404
    assert [r.api for r in scripted_server.requests] == ["models"]
    assert scripted_server.model_requests() == []


def test_anthropic_route(scripted_server: ScriptedServer) -> None:
    scripted_server.script(["hi there"])
    body = {
        "model": "c",
        "max_tokens": 5,
        "system": "sys",
        "messages": [{"role": "user", "content": "q"}],
    }
    status, _, out = post(scripted_server, "/v1/messages", body)
    assert status == 200
    assert out["type"] == "message"
    assert out["content"] == [{"type": "text", "text": "hi there"}]
    assert out["usage"] == {"input_tokens": 2, "output_tokens": 2}
    req = scripted_server.requests[0]
    assert (req.api, req.system) == ("anthropic", "sys")


def test_error_status_headers_and_bodies(scripted_server: ScriptedServer) -> None:
    scripted_server.script(
        [
            ScriptedReply(status=429, text="slow", headers={"Retry-After": "2"}),
            ScriptedReply(status=418, error_body={"detail": "teapot"}),
            ScriptedReply(status=500),
        ]
    )
    status, headers, body = post(scripted_server, "/v1/chat/completions", chat("x"))
    assert (status, headers["retry-after"], body["error"]["message"]) == (429, "2", "slow")
    assert post(scripted_server, "/v1/chat/completions", chat("x"))[::2] == (
        418,
        {"detail": "teapot"},
    )
    status, _, body = post(scripted_server, "/v1/messages", {"messages": []})
    assert status == 500 and body["type"] == "error"
    # Script used up: a 500 that says so.
    status, _, body = post(scripted_server, "/v1/chat/completions", chat("x"))
    assert status == 500 and "scripted replies were used" in body["error"]["message"]


def test_responder_sees_request(scripted_server: ScriptedServer) -> None:
    seen: list[ScriptedRequest] = []

    def responder(req: ScriptedRequest) -> str:
        seen.append(req)
        return f"{req.headers.get('x-who')}:{req.messages[-1]['content']}"

    scripted_server.script(responder=responder)
    _, _, body = post(scripted_server, "/v1/chat/completions", chat("ping"), {"X-Who": "me"})
    assert body["choices"][0]["message"]["content"] == "me:ping"
    assert seen[0].body == chat("ping")


def test_responder_error_is_a_500(scripted_server: ScriptedServer) -> None:
    def responder(req: ScriptedRequest) -> str:
        raise RuntimeError("bad script")

    scripted_server.script(responder=responder)
    status, _, body = post(scripted_server, "/v1/chat/completions", chat("x"))
    assert status == 500 and "bad script" in body["error"]["message"]


def test_latency_and_delay() -> None:
    with ScriptedServer([ScriptedReply(text="a", delay=0.1)], latency=0.1) as server:
        start = time.monotonic()
        post(server, "/v1/chat/completions", chat("x"))
        assert time.monotonic() - start >= 0.19


def test_keepalive_requests_are_fast(scripted_server: ScriptedServer) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", scripted_server.port, timeout=5)
    start = time.perf_counter()
    for _ in range(20):
        conn.request("POST", "/v1/chat/completions", json.dumps(chat("x")))
        conn.getresponse().read()
    per_request = (time.perf_counter() - start) / 20
    conn.close()
    # Nagle + delayed ACK would cost ~40 ms each; one write with TCP_NODELAY costs ~1 ms.
    assert per_request < 0.02


def test_concurrent_requests_overlap() -> None:
    with ScriptedServer(responder=lambda r: r.messages[-1]["content"], latency=0.2) as server:
        start = time.perf_counter()
        with ThreadPoolExecutor(32) as pool:
            out = list(
                pool.map(lambda i: post(server, "/v1/chat/completions", chat(str(i))), range(32))
            )
        elapsed = time.perf_counter() - start
    assert [o[2]["choices"][0]["message"]["content"] for o in out] == [str(i) for i in range(32)]
    assert elapsed < 1.0  # all 32 in one wave of 0.2 s, with slack for a busy machine
    assert len(server.requests) == 32


def test_stop_is_fast_and_frees_port() -> None:
    server = ScriptedServer([ScriptedReply(text="slow", delay=30)]).start()
    port = server.port
    answers: list[int] = []
    hanging = threading.Thread(
        target=lambda: answers.append(post(server, "/v1/chat/completions", chat("x"))[0]),
        daemon=True,
    )
    hanging.start()
    while not server.requests:
        time.sleep(0.01)
    idle = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    idle.connect()  # an idle keep-alive connection must not hold stop() up
    start = time.perf_counter()
    server.stop()
    stopped_in = time.perf_counter() - start
    hanging.join(timeout=5)
    idle.close()
    assert stopped_in < 0.2
    assert not hanging.is_alive()
    assert answers == [503]  # the sleeping handler woke and answered "stopping"
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass
    server.stop()  # idempotent
    with pytest.raises(RuntimeError):
        _ = server.base_url


def test_addresses(scripted_server: ScriptedServer) -> None:
    assert scripted_server.base_url == f"http://127.0.0.1:{scripted_server.port}/v1"
    assert scripted_server.anthropic_base_url == f"http://127.0.0.1:{scripted_server.port}"

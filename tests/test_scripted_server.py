"""ScriptedServer over raw HTTP: routes, scripting, usage, errors, concurrency, stop.

No test here times the server: its per-request cost and the overlap of concurrent
requests are measured by ``benchmarks/scripted_server.py``.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
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


class RecordingEvent(threading.Event):
    """A stop event whose timed waits are recorded and return at once (a fake clock)."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[float | None] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout)
        return self.is_set()


def test_latency_and_delay_add_up() -> None:
    server = ScriptedServer(
        [ScriptedReply(text="a", delay=0.1), ScriptedReply(text="b")], latency=0.25
    )
    server._stopping = clock = RecordingEvent()
    with server:
        assert post(server, "/v1/chat/completions", chat("x"))[0] == 200
        assert post(server, "/v1/chat/completions", chat("y"))[0] == 200
        server.script(["c"], latency=0)
        assert post(server, "/v1/chat/completions", chat("z"))[0] == 200
    # Each request waited latency + its reply's delay; none at all with neither.
    assert clock.waits == [pytest.approx(0.35), pytest.approx(0.25)]


def test_keepalive_connection_serves_many_requests_without_nagle(
    scripted_server: ScriptedServer,
) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", scripted_server.port, timeout=5)
    try:
        sockets: set[tuple[str, int]] = set()
        for i in range(20):
            conn.request("POST", "/v1/chat/completions", json.dumps(chat(str(i))))
            resp = conn.getresponse()
            assert resp.status == 200
            resp.read()
            sockets.add(conn.sock.getsockname())
        # All 20 on one connection (http.client would have reconnected after a close),
        # whose server end has Nagle off: a small reply would wait on a delayed ACK.
        assert len(sockets) == 1
        (server_end,) = scripted_server._connections
        assert server_end.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    finally:
        conn.close()
    assert len(scripted_server.model_requests()) == 20


def test_concurrent_requests_overlap() -> None:
    # Every handler waits until all 32 requests are inside the server at once.
    everyone = threading.Barrier(32, timeout=30)

    def responder(req: ScriptedRequest) -> str:
        everyone.wait()
        return str(req.messages[-1]["content"])

    with ScriptedServer(responder=responder) as server, ThreadPoolExecutor(32) as pool:
        out = list(
            pool.map(lambda i: post(server, "/v1/chat/completions", chat(str(i))), range(32))
        )
    assert [o[0] for o in out] == [200] * 32, [o[2] for o in out if o[0] != 200][:1]
    assert [o[2]["choices"][0]["message"]["content"] for o in out] == [str(i) for i in range(32)]
    assert not everyone.broken
    assert len(server.requests) == 32


def test_stop_wakes_handlers_closes_idle_connections_and_frees_port() -> None:
    arrived = threading.Event()

    def responder(req: ScriptedRequest) -> ScriptedReply:
        arrived.set()
        return ScriptedReply(text="slow", delay=30)

    server = ScriptedServer(responder=responder).start()
    port = server.port
    answers: list[int] = []
    hanging = threading.Thread(
        target=lambda: answers.append(post(server, "/v1/chat/completions", chat("x"))[0]),
        daemon=True,
    )
    hanging.start()
    assert arrived.wait(10)
    # An idle keep-alive connection (served once, then left open) must not hold stop() up.
    idle = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    idle.request("GET", "/v1/models")
    idle.getresponse().read()
    server.stop()
    # Liveness bounds, not speed: each join reports a hang.
    hanging.join(timeout=10)
    assert not hanging.is_alive(), "a handler sleeping in its delay was not woken"
    assert answers == [503]  # the sleeping handler woke and answered "stopping"
    assert idle.sock is not None and idle.sock.recv(1) == b"", "idle connection left open"
    idle.close()
    assert not [t for t in threading.enumerate() if t.name == f"ScriptedServer:{port}"]
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass
    server.stop()  # idempotent
    with pytest.raises(RuntimeError):
        _ = server.base_url


def test_addresses(scripted_server: ScriptedServer) -> None:
    assert scripted_server.base_url == f"http://127.0.0.1:{scripted_server.port}/v1"
    assert scripted_server.anthropic_base_url == f"http://127.0.0.1:{scripted_server.port}"

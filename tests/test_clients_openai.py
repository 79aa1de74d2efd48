"""OpenAIClient against the loopback ScriptedServer: requests, usage, retries, errors."""

from __future__ import annotations

import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from lmrepl.clients import make_client
from lmrepl.clients.base import CallOptions
from lmrepl.clients.openai import OpenAIClient
from lmrepl.errors import BackendError, ConfigurationError
from lmrepl.testing import ScriptedReply, ScriptedRequest, ScriptedServer

USER = [{"role": "user", "content": "hello"}]


def client_for(server: ScriptedServer, **kwargs: Any) -> OpenAIClient:
    """A fast-retrying client pointed at ``server``."""
    kwargs.setdefault("retry_base_delay", 0.01)
    return OpenAIClient("test-model", base_url=server.base_url, **kwargs)


def free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_reply_usage_and_model(scripted_server: ScriptedServer) -> None:
    scripted_server.script(["the answer"])
    client = client_for(scripted_server)
    out = client.complete(USER)
    client.close()
    assert out.text == "the answer"
    assert out.model == "test-model"
    assert out.usage_reported is True
    # ScriptedServer counts ceil(chars / 4): "hello" -> 2, "the answer" -> 3.
    assert (out.input_tokens, out.output_tokens) == (2, 3)
    assert out.cost is None
    (req,) = scripted_server.requests
    assert req.path == "/v1/chat/completions"
    assert req.model == "test-model"
    assert req.messages == USER


def test_missing_usage_is_estimated(scripted_server: ScriptedServer) -> None:
    scripted_server.script([ScriptedReply(text="x" * 40, usage=False)])
    client = client_for(scripted_server)
    out = client.complete([{"role": "user", "content": "y" * 400}])
    client.close()
    assert out.usage_reported is False
    assert out.input_tokens == 100
    assert out.output_tokens == 10


def test_zero_usage_counts_as_missing(scripted_server: ScriptedServer) -> None:
    zero = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    scripted_server.script([ScriptedReply(text="abcd", usage=zero)])
    client = client_for(scripted_server)
    out = client.complete(USER)
    client.close()
    assert out.usage_reported is False
    assert out.output_tokens == 1


def test_reported_cost_wins_over_prices(scripted_server: ScriptedServer) -> None:
    scripted_server.script([ScriptedReply(text="ok", usage={"cost": 0.125}), "ok"])
    client = client_for(scripted_server, prices={"input": 1.0, "output": 2.0})
    first = client.complete(USER)
    second = client.complete(USER)
    client.close()
    assert first.cost == pytest.approx(0.125)
    # No reported cost: 2 input tokens at $1/M plus 1 output token at $2/M.
    assert second.cost == pytest.approx((2 * 1.0 + 1 * 2.0) / 1_000_000)


def test_empty_choices_and_null_content(scripted_server: ScriptedServer) -> None:
    def responder(req: ScriptedRequest) -> ScriptedReply:
        body = {"id": "x", "object": "chat.completion", "created": 0, "model": "m", "choices": []}
        if len(scripted_server.requests) == 2:
            body["choices"] = [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": None},
                    "finish_reason": "stop",
                }
            ]
        return ScriptedReply(body=body)

    scripted_server.script(responder=responder)
    client = client_for(scripted_server)
    assert client.complete(USER).text == ""
    assert client.complete(USER).text == ""
    client.close()


def test_same_role_messages_reach_server_merged(scripted_server: ScriptedServer) -> None:
    client = client_for(scripted_server)
    msgs = [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "a"},
        {"role": "user", "content": "b"},
        {"role": "assistant", "content": "c"},
        {"role": "assistant", "content": "d"},
    ]
    client.complete(msgs)
    client.close()
    assert scripted_server.requests[0].messages == [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "a\n\nb"},
        {"role": "assistant", "content": "c\n\nd"},
    ]


def test_extra_body_headers_response_format_reach_server(scripted_server: ScriptedServer) -> None:
    fmt = {"type": "json_object"}
    client = client_for(
        scripted_server,
        default_extra_body={"top_k": 5, "cache_prompt": True},
        default_headers={"X-Test-Header": "yes"},
        response_format=fmt,
    )
    client.complete(USER, CallOptions(extra_body={"top_k": 7, "min_p": 0.1}, max_tokens=33))
    client.complete(USER, CallOptions(response_format={"type": "text"}))
    client.close()
    first, second = scripted_server.requests
    assert first.body["top_k"] == 7
    assert first.body["cache_prompt"] is True
    assert first.body["min_p"] == 0.1
    assert first.body["max_tokens"] == 33
    assert first.body["response_format"] == fmt
    assert first.headers["x-test-header"] == "yes"
    assert second.body["response_format"] == {"type": "text"}
    assert second.body["top_k"] == 5
    assert "max_tokens" not in second.body


def test_temperature_precedence(scripted_server: ScriptedServer) -> None:
    client = client_for(scripted_server, default_extra_body={"temperature": 0.9})
    client.complete(USER, CallOptions(temperature=0.1))
    client.complete(USER)
    client.complete(USER, CallOptions(extra_body={"temperature": 0.5}))
    with_kwarg = client_for(
        scripted_server, temperature=0.3, default_extra_body={"temperature": 0.9}
    )
    with_kwarg.complete(USER)
    with_kwarg.complete(USER, CallOptions(temperature=0.0))
    client.close()
    with_kwarg.close()
    temps = [r.temperature for r in scripted_server.requests]
    assert temps == [0.1, 0.9, 0.5, 0.3, 0.0]


def test_429_retried_honouring_retry_after(scripted_server: ScriptedServer) -> None:
    scripted_server.script(
        [ScriptedReply(status=429, text="slow down", headers={"Retry-After": "0.3"}), "done"]
    )
    client = client_for(scripted_server)
    out = client.complete(USER)
    client.close()
    assert out.text == "done"
    first, second = scripted_server.requests
    # base delay is 0.01 s: only the header explains a gap of 0.3 s.
    assert second.time - first.time >= 0.29


def test_5xx_retried_then_backend_error(scripted_server: ScriptedServer) -> None:
    scripted_server.script(
        [ScriptedReply(status=500, text="boom")]
        + [ScriptedReply(status=503, text="overloaded")] * 2
    )
    client = client_for(scripted_server, max_retries=2)
    with pytest.raises(BackendError) as info:
        client.complete(USER)
    client.close()
    msg = str(info.value)
    assert "openai" in msg and "test-model" in msg and "503" in msg and "overloaded" in msg
    assert info.value.status == 503
    assert info.value.backend == "openai"
    assert len(scripted_server.requests) == 3


def test_400_not_retried(scripted_server: ScriptedServer) -> None:
    scripted_server.script([ScriptedReply(status=400, text="bad request: no such field"), "never"])
    client = client_for(scripted_server)
    with pytest.raises(BackendError, match=r"HTTP 400.*no such field"):
        client.complete(USER)
    client.close()
    assert len(scripted_server.requests) == 1


def test_timeout_retried_then_backend_error(scripted_server: ScriptedServer) -> None:
    scripted_server.script([ScriptedReply(text="late", delay=2.0)] * 2)
    client = client_for(scripted_server, timeout=0.2, max_retries=1)
    with pytest.raises(BackendError, match="timeout") as info:
        client.complete(USER)  # the server answers after 2 s: each attempt timed out
    client.close()
    assert info.value.status is None
    assert len(scripted_server.requests) == 2


def test_call_timeout_bounds_retries(scripted_server: ScriptedServer) -> None:
    scripted_server.script(
        responder=lambda r: ScriptedReply(status=503, headers={"Retry-After": "5"})
    )
    client = client_for(scripted_server, max_retries=10)
    with pytest.raises(BackendError, match=r"503.*after 1 attempt,"):
        client.complete(USER, CallOptions(timeout=1.0))
    client.close()
    # Sleeping 5 s would pass the 1 s deadline, so it gives up (sleeping only comes
    # before a retry) after the one attempt.
    assert len(scripted_server.requests) == 1


def test_call_timeout_clamps_a_slow_attempt(scripted_server: ScriptedServer) -> None:
    scripted_server.script([ScriptedReply(text="late", delay=3.0)] * 5)
    client = client_for(scripted_server, timeout=60, max_retries=4)
    # Unclamped, the 60 s attempt would get the reply that comes after 3 s.
    with pytest.raises(BackendError, match="timeout"):
        client.complete(USER, CallOptions(timeout=0.4))
    client.close()
    assert len(scripted_server.requests) == 1


def test_connection_refused() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    client = OpenAIClient("m", base_url=url, max_retries=1, retry_base_delay=0.01)
    with pytest.raises(ConfigurationError, match=url.rsplit("/", 1)[0]):
        client.check()
    with pytest.raises(BackendError, match="connection refused"):
        client.complete(USER)
    client.close()


def test_check_passes_for_live_server(scripted_server: ScriptedServer) -> None:
    client = client_for(scripted_server)
    client.check()
    client.close()
    assert scripted_server.requests == []  # a TCP connect only, no HTTP request


def test_missing_api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    client = make_client("openai", {"model_name": "gpt-x"})
    with pytest.raises(ConfigurationError, match="OPENAI_API_KEY"):
        client.check()
    with pytest.raises(BackendError, match="OPENAI_API_KEY"):
        client.complete(USER)
    client.close()
    explicit = OpenAIClient("gpt-x", base_url="https://api.openai.com/v1")
    with pytest.raises(ConfigurationError, match="OPENAI_API_KEY"):
        explicit.check()
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    keyed = make_client("openai", {"model_name": "gpt-x"})
    keyed.check()  # a key and the default endpoint: nothing to check on the network
    keyed.close()


def test_api_key_sent_and_placeholder(
    scripted_server: ScriptedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    client_for(scripted_server).complete(USER)
    client_for(scripted_server, api_key="sk-real").complete(USER)
    first, second = scripted_server.requests
    assert first.headers["authorization"] == "Bearer not-needed"
    assert second.headers["authorization"] == "Bearer sk-real"


def test_concurrent_calls_on_one_client(scripted_server: ScriptedServer) -> None:
    # Each wave of 16 requests must be in flight at once to pass the barrier.
    together = threading.Barrier(16, timeout=30)

    def respond(req: ScriptedRequest) -> str:
        text = req.messages[-1]["content"]
        if text != "warm-up":
            together.wait()
        return "re:" + text

    scripted_server.script(responder=respond)
    client = client_for(scripted_server)
    client.complete([{"role": "user", "content": "warm-up"}])
    prompts = [f"prompt {i}" for i in range(32)]
    with ThreadPoolExecutor(16) as pool:
        results = list(
            pool.map(lambda p: client.complete([{"role": "user", "content": p}]).text, prompts)
        )
    client.close()
    assert results == [f"re:{p}" for p in prompts]
    assert len(scripted_server.requests) == 33
    assert not together.broken


def test_retry_helpers() -> None:
    import email.utils

    from lmrepl.clients.retry import RetryPolicy, call_with_retries, parse_retry_after

    assert parse_retry_after({"Retry-After": "2"}) == 2.0
    assert parse_retry_after({"retry-after-ms": "250", "Retry-After": "9"}) == 0.25
    assert parse_retry_after({"Retry-After": "soon"}) is None
    assert parse_retry_after(None) is None
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 < (parse_retry_after({"Retry-After": when}) or 0) <= 30
    policy = RetryPolicy(max_retries=3, base_delay=1.0, max_delay=3.0)
    for i, cap in enumerate([1.0, 2.0, 3.0, 3.0]):
        assert cap / 2 <= policy.backoff(i) <= cap

    def broken(timeout: float | None) -> str:
        raise KeyError("not an API error")

    # Programming errors are not retried or wrapped.
    with pytest.raises(KeyError):
        call_with_retries(broken, backend="b", model="m", policy=policy, request_timeout=1)


def test_refused_error_names_endpoint() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    client = OpenAIClient("m", base_url=url, max_retries=0)
    with pytest.raises(BackendError) as info:
        client.complete(USER)
    client.close()
    assert str(info.value).startswith(f"openai backend at {url}, model 'm': connection refused")

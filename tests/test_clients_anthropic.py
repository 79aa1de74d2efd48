"""AnthropicClient against the loopback ScriptedServer's Messages API."""

from __future__ import annotations

from typing import Any

import pytest

from lmrepl.clients import make_client
from lmrepl.clients.anthropic import AnthropicClient, to_anthropic_messages
from lmrepl.clients.base import CallOptions
from lmrepl.errors import BackendError, ConfigurationError
from lmrepl.testing import ScriptedReply, ScriptedServer


def client_for(server: ScriptedServer, **kwargs: Any) -> AnthropicClient:
    """A fast-retrying client pointed at ``server``."""
    kwargs.setdefault("retry_base_delay", 0.01)
    return AnthropicClient("claude-test", base_url=server.anthropic_base_url, **kwargs)


def test_system_prompt_placement_and_usage(scripted_server: ScriptedServer) -> None:
    scripted_server.script(
        [ScriptedReply(text="fine", usage={"input_tokens": 11, "output_tokens": 7})]
    )
    client = client_for(scripted_server)
    out = client.complete(
        [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "q1"},
            {"role": "user", "content": "q2"},
            {"role": "assistant", "content": "a"},
            {"role": "user", "content": "q3"},
        ],
        CallOptions(temperature=0.4),
    )
    client.close()
    assert out.text == "fine"
    assert (out.input_tokens, out.output_tokens, out.usage_reported) == (11, 7, True)
    assert out.model == "claude-test"
    (req,) = scripted_server.requests
    assert req.path == "/v1/messages"
    assert req.system == "be brief"
    assert req.messages == [
        {"role": "user", "content": "q1\n\nq2"},
        {"role": "assistant", "content": "a"},
        {"role": "user", "content": "q3"},
    ]
    assert req.temperature == 0.4
    assert req.body["max_tokens"] == 4096
    assert req.model == "claude-test"


def test_first_message_becomes_user() -> None:
    system, msgs = to_anthropic_messages(
        [{"role": "system", "content": "s"}, {"role": "assistant", "content": "hi"}]
    )
    assert system == "s"
    assert msgs[0]["role"] == "user"
    assert msgs[1] == {"role": "assistant", "content": "hi"}
    assert to_anthropic_messages([])[1][0]["role"] == "user"


def test_text_blocks_concatenated(scripted_server: ScriptedServer) -> None:
    body = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-test",
        "content": [
            {"type": "text", "text": "part one, "},
            {"type": "thinking", "thinking": "hidden", "signature": "s"},
            {"type": "text", "text": "part two"},
        ],
        "stop_reason": "end_turn",
        "usage": {"input_tokens": 3, "output_tokens": 4, "cache_read_input_tokens": 10},
    }
    scripted_server.script([ScriptedReply(body=body)])
    client = client_for(scripted_server)
    out = client.complete([{"role": "user", "content": "x"}])
    client.close()
    assert out.text == "part one, part two"
    assert out.input_tokens == 13  # cached prompt tokens count as input


def test_missing_usage_estimated_and_prices(scripted_server: ScriptedServer) -> None:
    scripted_server.script([ScriptedReply(text="z" * 8, usage=False)])
    client = client_for(scripted_server, prices={"input": 3.0, "output": 15.0})
    out = client.complete([{"role": "user", "content": "q" * 40}])
    client.close()
    assert out.usage_reported is False
    assert (out.input_tokens, out.output_tokens) == (10, 2)
    assert out.cost == pytest.approx((10 * 3.0 + 2 * 15.0) / 1_000_000)


def test_options_extra_body_headers_max_tokens(scripted_server: ScriptedServer) -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    client = client_for(
        scripted_server,
        max_tokens=100,
        default_extra_body={"top_k": 3, "temperature": 0.9},
        default_headers={"X-Trace": "t1"},
    )
    client.complete(
        [{"role": "user", "content": "x"}],
        CallOptions(
            max_tokens=50,
            temperature=0.2,
            response_format={"type": "json_schema", "json_schema": {"name": "n", "schema": schema}},
        ),
    )
    client.complete([{"role": "user", "content": "y"}])
    client.close()
    first, second = scripted_server.requests
    assert first.body["max_tokens"] == 50
    assert first.temperature == 0.2
    assert first.body["top_k"] == 3
    assert first.body["output_config"] == {"format": {"type": "json_schema", "schema": schema}}
    assert first.headers["x-trace"] == "t1"
    assert second.body["max_tokens"] == 100
    assert second.temperature == 0.9


def test_overloaded_retried_then_error(scripted_server: ScriptedServer) -> None:
    scripted_server.script([ScriptedReply(status=529, text="Overloaded")] * 2 + ["finally"])
    client = client_for(scripted_server, max_retries=2)
    assert client.complete([{"role": "user", "content": "x"}]).text == "finally"
    scripted_server.script([ScriptedReply(status=500, text="internal")] * 2)
    with pytest.raises(BackendError, match=r"anthropic.*claude-test.*HTTP 500.*internal"):
        client_for(scripted_server, max_retries=1).complete([{"role": "user", "content": "x"}])
    scripted_server.script([ScriptedReply(status=401, text="invalid x-api-key")])
    with pytest.raises(BackendError, match=r"401.*invalid x-api-key") as info:
        client.complete([{"role": "user", "content": "x"}])
    client.close()
    assert info.value.status == 401
    assert len(scripted_server.requests) == 3 + 2 + 1


def test_missing_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    client = make_client("anthropic", {"model_name": "claude-x"})
    with pytest.raises(ConfigurationError, match="ANTHROPIC_API_KEY"):
        client.check()
    client.close()

"""ReplayClient, RecordingClient, and backend validation in make_client/validate_backend."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from lmrepl.clients import known_backends, make_client, validate_backend
from lmrepl.clients.anthropic import AnthropicClient
from lmrepl.clients.base import CallOptions, Message
from lmrepl.clients.openai import OpenAIClient
from lmrepl.clients.replay import RecordingClient, ReplayClient
from lmrepl.errors import BackendError, ConfigurationError
from lmrepl.testing import ScriptedServer


def ask(text: str) -> list[Message]:
    """A one-message conversation."""
    return [{"role": "user", "content": text}]


# -- replay ---------------------------------------------------------------------------


def test_replies_in_order_then_exhausted() -> None:
    client = make_client("replay", {"replies": ["one", "two"]})
    assert client.backend == "replay"
    assert client.model_name == "replay"
    assert [client.complete(ask("a")).text, client.complete(ask("b")).text] == ["one", "two"]
    with pytest.raises(BackendError, match=r"all 2 scripted replies were used") as info:
        client.complete(ask("c"))
    assert info.value.backend == "replay"


def test_replies_thread_safe() -> None:
    replies = [f"r{i}" for i in range(200)]
    client = ReplayClient(replies)
    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(lambda i: client.complete(ask(str(i))).text, range(200)))
    assert sorted(got) == sorted(replies)  # each reply served exactly once
    assert client.calls == 200


def test_scripted_exception_is_raised() -> None:
    err = BackendError("scripted failure", backend="replay", model="replay", status=503)
    client = ReplayClient(["ok", err, "after"])
    assert client.complete(ask("x")).text == "ok"
    with pytest.raises(BackendError, match="scripted failure"):
        client.complete(ask("x"))
    assert client.complete(ask("x")).text == "after"


def test_responder_and_usage_settings() -> None:
    def echo(messages: list[Message]) -> str:
        return messages[-1]["content"].upper()

    estimated = make_client("replay", {"responder": echo, "model_name": "echo"})
    out = estimated.complete(ask("abcdefgh"))
    assert (out.text, out.model) == ("ABCDEFGH", "echo")
    assert (out.input_tokens, out.output_tokens, out.usage_reported) == (2, 2, False)
    fixed = make_client("replay", {"responder": echo, "usage": 10}).complete(ask("x"))
    assert (fixed.input_tokens, fixed.output_tokens, fixed.usage_reported) == (10, 10, True)
    split = ReplayClient(["y"], usage={"input_tokens": 5, "output_tokens": 1}).complete(ask("x"))
    assert (split.input_tokens, split.output_tokens) == (5, 1)


def test_delay_and_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    import types

    from lmrepl.clients import replay

    slept: list[float] = []
    monkeypatch.setattr(replay, "time", types.SimpleNamespace(sleep=slept.append))
    client = ReplayClient(["a", "b"], delay=0.1)
    assert client.complete(ask("x")).text == "a"
    with pytest.raises(BackendError, match="timeout"):
        client.complete(ask("x"), CallOptions(timeout=0.02))
    assert slept == [0.1, 0.02]  # the delay, then only as long as the call's timeout


def test_recording_round_trip(tmp_path: Path, scripted_server: ScriptedServer) -> None:
    scripted_server.script(responder=lambda r: "reply to " + r.messages[-1]["content"])
    path = tmp_path / "rec.jsonl"
    inner = OpenAIClient("rec-model", base_url=scripted_server.base_url)
    recorder = RecordingClient(inner, path)
    assert (recorder.backend, recorder.model_name) == ("openai", "rec-model")
    live = [recorder.complete(ask(q)) for q in ("alpha", "beta", "gamma")]
    recorder.close()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [rec["reply"] for rec in lines] == ["reply to alpha", "reply to beta", "reply to gamma"]
    assert lines[0]["messages"] == ask("alpha")
    assert lines[0]["model"] == "rec-model"
    assert lines[0]["usage"]["input_tokens"] == live[0].input_tokens

    replay = make_client("replay", {"path": str(path), "model_name": "rec-model"})
    # Matched by messages, so an out-of-order caller still gets its own reply.
    assert replay.complete(ask("gamma")).text == "reply to gamma"
    first = replay.complete(ask("alpha"))
    assert (first.text, first.input_tokens, first.output_tokens) == (
        live[0].text,
        live[0].input_tokens,
        live[0].output_tokens,
    )
    # Unknown messages get the next unused record in order.
    assert replay.complete(ask("something else")).text == "reply to beta"
    with pytest.raises(BackendError, match="all 3 scripted replies"):
        replay.complete(ask("alpha"))


def test_recording_concurrent_appends(tmp_path: Path) -> None:
    path = tmp_path / "rec.jsonl"
    recorder = RecordingClient(ReplayClient(responder=lambda m: m[-1]["content"] * 50), path)
    barrier = threading.Barrier(8)

    def call(i: int) -> str:
        barrier.wait()
        return recorder.complete(ask(f"m{i}")).text

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(call, range(8)))
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert sorted(r["messages"][0]["content"] for r in records) == sorted(f"m{i}" for i in range(8))


# -- validation -----------------------------------------------------------------------


def test_the_kwarg_table_matches_each_clients_constructor() -> None:
    """One table of backend_kwargs; every accepted name is a constructor parameter."""
    import inspect

    import lmrepl.clients as registry
    from lmrepl.clients.local import LocalClient

    assert set(known_backends()) == {"openai", "anthropic", "local", "replay"}
    classes = {
        "openai": OpenAIClient,
        "anthropic": AnthropicClient,
        "local": LocalClient,
        "replay": ReplayClient,
    }
    for backend, cls in classes.items():
        params = set(inspect.signature(cls).parameters) - {"self"}
        # context_window is the engine's (make_client sets it on the client).
        assert set(registry._BACKENDS[backend][0]) == params | {"context_window"}, backend


def test_unknown_backend() -> None:
    with pytest.raises(ConfigurationError, match=r"backend must be one of 'openai'.*'replay'"):
        validate_backend("gpt", {})


def test_unknown_kwarg_names_it_and_accepted() -> None:
    with pytest.raises(TypeError, match=r"'modle_name' \(did you mean 'model_name'\?\).*accepted"):
        validate_backend("openai", {"modle_name": "x"})
    with pytest.raises(TypeError, match="'base_url'"):
        make_client("replay", {"replies": ["a"], "base_url": "http://x"})


@pytest.mark.parametrize(
    ("backend", "kwargs", "pattern"),
    [
        ("openai", {}, "must name 'model_name'"),
        ("openai", {"model_name": ""}, "model_name"),
        ("openai", {"model_name": "m", "timeout": -1}, "timeout"),
        ("openai", {"model_name": "m", "timeout": "10"}, "timeout"),
        ("openai", {"model_name": "m", "max_retries": -1}, "max_retries"),
        ("openai", {"model_name": "m", "max_retries": True}, "max_retries"),
        ("openai", {"model_name": "m", "default_headers": {"a": 1}}, "default_headers"),
        ("openai", {"model_name": "m", "prices": {"input": -1}}, "prices"),
        ("openai", {"model_name": "m", "prices": {"in": 1}}, "prices"),
        ("openai", {"model_name": "m", "default_extra_body": [1]}, "default_extra_body"),
        ("openai", {"model_name": "m", "temperature": -0.5}, "temperature"),
        ("anthropic", {"model_name": "c", "max_tokens": 0}, "max_tokens"),
        ("replay", {}, "exactly one of"),
        ("replay", {"replies": ["a"], "responder": str}, "exactly one of"),
        ("replay", {"replies": "abc"}, "replies"),
        ("replay", {"responder": "not callable"}, "responder"),
        ("replay", {"path": "/nonexistent/rec.jsonl"}, "path"),
        ("replay", {"replies": ["a"], "delay": -1}, "delay"),
        ("replay", {"replies": ["a"], "usage": "lots"}, "usage"),
    ],
)
def test_bad_values(backend: str, kwargs: dict[str, Any], pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        validate_backend(backend, kwargs)


def test_valid_kwargs_pass_without_network() -> None:
    validate_backend(
        "openai",
        {
            "model_name": "m",
            "base_url": "http://127.0.0.1:9/v1",  # nothing listens; must not be contacted
            "timeout": 5,
            "max_retries": 0,
            "retry_base_delay": 0,
            "prices": {"input": 0.1, "output": 0.4},
            "default_headers": {"X": "y"},
            "default_extra_body": {"top_k": 1},
            "response_format": {"type": "json_object"},
            "temperature": 0,
        },
    )
    validate_backend("anthropic", {"model_name": "c", "max_tokens": 10})
    validate_backend("replay", {"replies": [], "usage": "estimate"})
    client = make_client("openai", {"model_name": "m", "base_url": "http://127.0.0.1:9/v1"})
    assert client.backend == "openai"
    client.close()


def test_local_backend_validation() -> None:
    validate_backend("local", {"model_path": "/m.gguf", "timeout": 3, "n_parallel": 2})
    with pytest.raises(ConfigurationError, match=r"'base_url'.*accepted: .*model_path"):
        validate_backend("local", {"base_url": "http://x"})
    with pytest.raises(ConfigurationError, match=r"backend_kwargs\['timeout'\] must be"):
        validate_backend("local", {"timeout": 0})
    with pytest.raises(ConfigurationError, match="n_ctx"):
        validate_backend("local", {"n_ctx": 10})


def test_construction_imports_no_sdk() -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from lmrepl.clients import make_client, validate_backend\n"
        "validate_backend('openai', {'model_name': 'm'})\n"
        "make_client('anthropic', {'model_name': 'c', 'api_key': 'k'})\n"
        "make_client('openai', {'model_name': 'm', 'base_url': 'http://127.0.0.1:9/v1'})\n"
        "print(sorted(m for m in ('openai', 'anthropic') if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    # Importing the SDKs costs seconds; it waits for the first real call.
    assert out.stdout.strip() == "[]"

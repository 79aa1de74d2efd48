"""Helpers for engine tests: an RLM wired to a ScriptedServer, reply builders."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from lmrepl import RLM, SRLM
from lmrepl.scripted_api import ReplyItem
from lmrepl.testing import ScriptedRequest, ScriptedServer


def backend(server: ScriptedServer, model: str = "m") -> dict[str, Any]:
    """backend/backend_kwargs arguments that point at ``server``."""
    return {
        "backend": "openai",
        "backend_kwargs": {
            "model_name": model,
            "base_url": server.base_url,
            "api_key": "test-key",
            "max_retries": 1,
            "retry_base_delay": 0.01,
        },
    }


def make_rlm(server: ScriptedServer, **kwargs: Any) -> RLM:
    """An RLM against ``server``; on the local REPL unless ``environment=`` says otherwise.

    Engine tests pass the ``environment`` fixture so they run on both REPLs.
    """
    kwargs.setdefault("environment", "local")
    return RLM(**backend(server), **kwargs)


def make_srlm(server: ScriptedServer, **kwargs: Any) -> SRLM:
    """An SRLM against ``server``; on the local REPL unless ``environment=`` says otherwise."""
    kwargs.setdefault("environment", "local")
    return SRLM(**backend(server), **kwargs)


def warm_kernel(environment: str) -> None:
    """On the kernel, wait until the pool holds a ready kernel (a no-op on the local REPL).

    For runs under a short ``max_timeout``: the deadline is then spent on what the test
    holds up (a model call, a cell), not on starting a kernel on a busy machine.
    """
    if environment == "kernel":
        from lmrepl.repl.kernel_pool import default_pool

        assert default_pool().wait_ready(1, timeout=60), "no warm kernel within 60 s"


def repl(code: str, confidence: int | None = None) -> str:
    """A model reply holding one ```repl block."""
    tail = f'\n{{"confidence": {confidence}}}' if confidence is not None else ""
    return f"I will run code.\n```repl\n{code}\n```{tail}"


def turns(req: ScriptedRequest) -> int:
    """How many assistant turns the request already holds (0 = first root call)."""
    return sum(1 for m in req.messages if m.get("role") == "assistant")


def is_root(req: ScriptedRequest) -> bool:
    """True for a root-loop request (it has our system prompt)."""
    return bool(req.messages) and req.messages[0].get("role") == "system"


def last_user(req: ScriptedRequest) -> str:
    """The text of the last user message."""
    for m in reversed(req.messages):
        if m.get("role") == "user":
            return str(m.get("content"))
    return ""


def by_request_order(
    reply_for: Callable[[int], ReplyItem],
) -> Callable[[ScriptedRequest], ReplyItem]:
    """A responder that answers the n-th request (1-based, thread-safe) with ``reply_for(n)``."""
    lock = threading.Lock()
    count = [0]

    def responder(req: ScriptedRequest) -> ReplyItem:
        with lock:
            count[0] += 1
            n = count[0]
        return reply_for(n)

    return responder

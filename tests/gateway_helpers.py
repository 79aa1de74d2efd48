"""Shared by the gateway suites: the module's gateway, the no-kernel-left check, attacks.

The fixtures are registered under their plain names (``gateway``, ``no_kernel_left``);
a test module imports them and lists them in ``__all__``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from attack_helpers import report_in
from engine_helpers import is_root, last_user, make_rlm, repl, turns
from gateway_server import GatewayServer

from lmrepl.testing import ScriptedRequest, ScriptedServer
from lmrepl.types import RLMChatCompletion

SURVIVED = "survived"
#: A prefix no other string has: the canary model code looks for (tokens are hex).
CANARY = "gwcanary"


@pytest.fixture(scope="module", name="gateway")
def gateway_fixture() -> Iterator[GatewayServer]:
    """One Kernel Gateway for the test module (its token starts with ``CANARY``)."""
    server = GatewayServer(token=CANARY + os.urandom(12).hex()).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(autouse=True, name="no_kernel_left")
def no_kernel_left_fixture(gateway: GatewayServer) -> Iterator[None]:
    """After each test the gateway runs no kernel (the REPLs deleted theirs)."""
    yield
    left = gateway.wait_no_kernels()
    gateway.delete_all()  # so one leak fails one test, not the rest
    assert left == [], f"kernels left on the gateway: {left}"


class Bridge:
    """Host calls of a REPL used directly: ``llm_query(p)`` answers ``host:p``."""

    def call(self, fn: str, payload: dict[str, Any]) -> Any:
        return f"host:{payload.get('prompt')}"


def attack(
    server: ScriptedServer, gateway: GatewayServer, code: str, **kwargs: Any
) -> tuple[RLMChatCompletion, dict[str, Any], str]:
    """Run ``code`` as the model's first cell on a gateway kernel; the result, its REPORT
    and what the model was shown after the cell. Sub-calls are answered "sub"."""

    def responder(req: ScriptedRequest) -> str:
        if not is_root(req):
            return "sub"
        return repl(code) if turns(req) == 0 else repl(f"FINAL({SURVIVED!r})")

    server.script(responder=responder)
    rlm = make_rlm(server, environment="kernel", environment_kwargs=gateway.kwargs(**kwargs))
    result = rlm.completion("attack context", root_prompt="What is in the context?")
    second = [r for r in server.model_requests() if is_root(r) and turns(r) == 1]
    shown = last_user(second[0]) if second else ""
    return result, report_in(shown), shown


def shown_after(server: ScriptedServer, turn: int) -> str:
    """What the root model was shown after its ``turn``-th reply (1-based)."""
    found = [r for r in server.model_requests() if is_root(r) and turns(r) == turn]
    return last_user(found[0]) if found else ""

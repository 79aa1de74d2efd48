"""Shared fixtures: a loopback scripted model server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from lmrepl.testing import ScriptedServer


@pytest.fixture
def scripted_server() -> Iterator[ScriptedServer]:
    """A started :class:`ScriptedServer` (replies "ok" until ``.script(...)``); stopped after."""
    server = ScriptedServer().start()
    try:
        yield server
    finally:
        server.stop()

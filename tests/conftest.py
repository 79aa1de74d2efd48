"""Shared fixtures: a loopback scripted model server, the REPL environments."""

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


@pytest.fixture(params=["local", "kernel"])
def environment(request: pytest.FixtureRequest) -> str:
    """Each REPL in turn: the in-process ``local`` one and the default ``kernel``.

    Engine tests whose behaviour must not depend on where the model's code runs take
    this fixture and pass ``environment=environment`` on; the kernel is a real
    ipykernel subprocess, never a mock.
    """
    return str(request.param)


def _kernel_children() -> list[str]:
    import psutil

    found = []
    for proc in psutil.Process().children(recursive=True):
        try:
            cmd = " ".join(proc.cmdline())
        except psutil.Error:
            continue
        if "ipykernel" in cmd:
            found.append(f"{proc.pid}: {cmd[:120]}")
    return found


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """After the whole suite: every kernel this run started must be gone.

    Pooled warm kernels are the pool's to end, so the pool is shut down first, as
    it is at interpreter exit; anything left after that is a leak and fails the run.
    """
    import sys
    import time

    kernel_mod = sys.modules.get("lmrepl.repl.kernel")
    pool_mod = sys.modules.get("lmrepl.repl.kernel_pool")
    if kernel_mod is not None:
        kernel_mod.close_all()
    if pool_mod is not None:
        pool_mod.shutdown_all()
    deadline = time.monotonic() + 10
    left = _kernel_children()
    while left and time.monotonic() < deadline:
        time.sleep(0.2)
        left = _kernel_children()
    if left:
        print("\nkernel processes left behind by the test run:\n  " + "\n  ".join(left))
        session.exitstatus = pytest.ExitCode.TESTS_FAILED

"""Kernel processes: secrets, the warm pool, and no orphans (even after SIGKILL)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from typing import Any

import psutil
import pytest

from lmrepl.repl.kernel import KernelREPL
from lmrepl.repl.kernel_env import kernel_environment
from lmrepl.repl.kernel_pool import KernelPool

pytestmark = pytest.mark.timeout(120)


class NullBridge:
    """Answers every host call with None."""

    def call(self, fn: str, payload: dict[str, Any]) -> Any:
        return None


def _kernels() -> set[int]:
    """Kernel processes started by this test process."""
    found = set()
    for p in psutil.Process().children(recursive=True):
        try:
            if any("ipykernel_launcher" in part for part in p.cmdline()):
                found.add(p.pid)
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            pass
    return found


def _gone(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True


def test_environment_allow_list() -> None:
    host = {
        "PATH": "/bin",
        "HOME": "/h",
        "LC_ALL": "C",
        "OPENAI_API_KEY": "x",
        "GITHUB_TOKEN": "x",
        "DB_PASSWORD": "x",
        "AWS_ACCESS_KEY_ID": "x",
        "RANDOM_SETTING": "x",
    }
    assert kernel_environment(host, {"MINE": "1"}) == {
        "PATH": "/bin",
        "HOME": "/h",
        "LC_ALL": "C",
        "MINE": "1",
    }


def test_secrets_do_not_reach_the_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    secrets = [
        "FOO_API_KEY",
        "SERVICE_TOKEN",
        "MY_SECRET",
        "DB_PASSWORD",
        "AWS_SECRET_ACCESS_KEY",
        "GOOGLE_APPLICATION_CREDENTIALS",
        "AZURE_CLIENT_SECRET",
    ]
    for name in secrets:
        monkeypatch.setenv(name, "do-not-leak")
    with KernelREPL(use_pool=False, extra_env={"LMREPL_TEST_EXTRA": "yes"}) as r:
        r.start(NullBridge())
        res = r.execute("import os\nsorted(os.environ)")
        assert res.status == "ok"
        names = eval(str(res.display))
        assert not set(secrets) & set(names)
        assert "PATH" in names and "LMREPL_TEST_EXTRA" in names
        leaked = r.execute("[k for k, v in os.environ.items() if v == 'do-not-leak']")
        assert leaked.display == "[]"


def test_pool_hands_out_fresh_ready_kernels() -> None:
    pool = KernelPool(size=1)
    try:
        pool.prewarm(2)
        deadline = time.monotonic() + 60
        while len(pool._ready) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(pool._ready) == 2
        repls = [KernelREPL(pool=pool) for _ in range(2)]
        t0 = time.monotonic()
        repls[0].start(NullBridge())
        warm_start = time.monotonic() - t0
        repls[1].start(NullBridge())
        assert warm_start < 1.0  # generous: the benchmark measures the real number
        assert repls[0].pid != repls[1].pid
        repls[0].execute("leak = 1")
        assert repls[1].execute("'leak' in globals()").display == "False"
        for r in repls:
            r.close()
    finally:
        pool.shutdown()
    assert not pool._ready


def test_no_kernel_is_left_behind() -> None:
    before = _kernels()
    with KernelREPL(use_pool=False) as r:
        r.start(NullBridge())
        assert r.execute("1").status == "ok"
        assert r.pid in _kernels()
    with pytest.raises(KeyboardInterrupt), KernelREPL(use_pool=False) as r2:
        r2.start(NullBridge())
        raise KeyboardInterrupt
    r3 = KernelREPL(use_pool=False, cell_timeout=None)
    r3.start(NullBridge())
    pid3 = r3.pid
    assert pid3 is not None
    os.kill(os.getpid(), 0)
    # A host-side interrupt while a cell runs: the cell is interrupted, then closed.
    timer = __import__("threading").Timer(0.5, __import__("_thread").interrupt_main)
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        r3.execute("import time\ntime.sleep(30)")
    r3.close()
    deadline = time.monotonic() + 10
    while _kernels() - before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _kernels() - before == set()
    assert _gone(pid3)


HOST_SCRIPT = textwrap.dedent(
    """
    import sys
    from lmrepl.repl.kernel import KernelREPL

    class Bridge:
        def call(self, fn, payload):
            return None

    r = KernelREPL(use_pool=False, cell_timeout=None)
    r.start(Bridge())
    print(r.pid, flush=True)
    r.execute("print('spinning', flush=True)\\nsum(range(10**13))")
    """
)


def test_kernel_dies_with_a_sigkilled_host() -> None:
    host = subprocess.Popen([sys.executable, "-c", HOST_SCRIPT], stdout=subprocess.PIPE, text=True)
    try:
        assert host.stdout is not None
        kernel_pid = int(host.stdout.readline())
        assert not _gone(kernel_pid)
        time.sleep(1.0)  # the kernel is now deep in the C loop
        assert psutil.Process(kernel_pid).cpu_percent(0.2) > 10
        host.send_signal(signal.SIGKILL)
        host.wait(10)
        deadline = time.monotonic() + 5
        while not _gone(kernel_pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _gone(kernel_pid)
    finally:
        if host.poll() is None:
            host.kill()
            host.wait(10)

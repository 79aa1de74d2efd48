"""``lmrepl.kernels``: what stays running after a run, sizing, idle expiry, shutdown.

Real kernels throughout; the pool under test is the process-wide one a user's RLM uses.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator

import psutil
import pytest
from attack_helpers import kernel_processes
from engine_helpers import backend, repl
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

from lmrepl import RLM, ConfigurationError, kernels
from lmrepl.repl import kernel_pool
from lmrepl.repl.kernel import KernelREPL
from lmrepl.testing import ScriptedServer


@pytest.fixture(autouse=True)
def fresh_settings() -> Iterator[None]:
    """Each test starts from the documented defaults with no warm kernel, and restores them."""
    kernels.shutdown()
    kernel_pool.SETTINGS.size, kernel_pool.SETTINGS.idle_timeout = 8, 300.0
    yield
    kernel_pool.SETTINGS.size, kernel_pool.SETTINGS.idle_timeout = 8, 300.0
    kernels.shutdown()


def until(test: Callable[[], bool], timeout: float = 60) -> bool:
    """Poll ``test`` until it holds; False after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not test():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


class NullBridge:
    def call(self, fn: str, payload: dict[str, object]) -> object:
        return None


def test_defaults_are_documented() -> None:
    doc = kernels.__doc__ or ""
    assert "default 8" in doc and "default 300" in doc
    s = kernels.stats()
    assert (s.size, s.idle_timeout) == (8, 300.0)
    assert "pool size 8" in str(s) and "300 s idle" in str(s)


def test_stats_count_ready_and_in_use_kernels_and_their_memory() -> None:
    pool = kernel_pool.default_pool()
    assert pool.wait_ready(2, timeout=90)
    s = kernels.stats()
    assert s.ready >= 2 and s.in_use == 0
    assert s.memory_mb is not None and s.memory_mb > 2 * 10  # a kernel is tens of MB
    with KernelREPL() as r:
        r.start(NullBridge())
        assert r.execute("1").display == "1"
        during = kernels.stats()
        assert during.in_use == 1
    assert until(lambda: kernels.stats().in_use == 0)


def test_shutdown_ends_warm_kernels_and_the_pool_stays_usable() -> None:
    assert kernel_pool.default_pool().wait_ready(2, timeout=90)
    before = kernel_processes()
    assert len(before) >= 2
    kernels.shutdown()
    assert until(lambda: kernels.stats().ready == 0 and kernels.stats().starting == 0)
    assert until(lambda: not (before & kernel_processes()))
    with KernelREPL() as r:  # the next REPL starts one, as on first use
        r.start(NullBridge())
        assert r.execute("2 + 2").display == "4"


def test_size_zero_keeps_nothing_running_after_a_run(scripted_server: ScriptedServer) -> None:
    kernels.configure(size=0)
    scripted_server.script([repl("FINAL(len(context))")])
    result = RLM(**backend(scripted_server)).completion("abcd", "how long?")
    assert result.response == "4"
    time.sleep(0.5)  # a refill, if one were started, would show by now
    s = kernels.stats()
    assert (s.ready, s.starting, s.in_use) == (0, 0, 0)
    assert until(lambda: not kernel_processes(), timeout=10)


def test_smaller_size_ends_the_extra_warm_kernels() -> None:
    assert kernel_pool.default_pool().wait_ready(3, timeout=120)
    kernels.configure(size=1)
    s = kernels.stats()
    assert s.ready == 1 and s.size == 1


def test_idle_kernels_expire_and_the_remembered_demand_is_dropped() -> None:
    pool = kernel_pool.default_pool()
    assert pool.wait_ready(2, timeout=90)
    kernels.configure(idle_timeout=0.5)
    assert until(lambda: kernels.stats().ready == 0, timeout=10)
    assert pool.size == 1  # a later single run refills one kernel, not the old two


def test_no_idle_timeout_keeps_warm_kernels() -> None:
    kernels.configure(idle_timeout=None)
    assert kernel_pool.default_pool().wait_ready(1, timeout=60)
    time.sleep(1.0)
    assert kernels.stats().ready == 1


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"size": -1}, "size"),
        ({"size": 2.5}, "size"),
        ({"size": True}, "size"),
        ({"idle_timeout": 0}, "idle_timeout"),
        ({"idle_timeout": "5"}, "idle_timeout"),
        ({}, "size=... or idle_timeout"),
    ],
)
def test_bad_settings_are_refused_and_change_nothing(kwargs: dict[str, object], named: str) -> None:
    with pytest.raises(ConfigurationError, match=named):
        kernels.configure(**kwargs)  # type: ignore[arg-type]
    assert (kernels.stats().size, kernels.stats().idle_timeout) == (8, 300.0)


def test_magic_shows_and_shuts_down_kernels(capsys: pytest.CaptureFixture[str]) -> None:
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "lmrepl_jupyter")
    try:
        assert kernel_pool.default_pool().wait_ready(1, timeout=60)
        shell.run_line_magic("lmrepl", "kernels")
        out = capsys.readouterr().out
        assert out.startswith("kernels: ") and "ready" in out and "in use" in out
        assert "0 ready" not in out
        shell.run_line_magic("lmrepl", "kernels shutdown")
        assert "kernels: 0 ready" in capsys.readouterr().out
        with pytest.raises(UsageError, match=r"^%lmrepl: unknown arguments 'kernel stop'"):
            shell.run_line_magic("lmrepl", "kernel stop")
    finally:
        shell.run_line_magic("unload_ext", "lmrepl_jupyter")


def test_a_script_that_ends_at_once_leaves_no_kernel_and_no_complaint(
    scripted_server: ScriptedServer,
) -> None:
    """The pool is still starting kernels at exit: they end quietly with the script."""
    script = textwrap.dedent(
        f"""
        import os
        from lmrepl import SRLM
        s = SRLM(backend="openai", n_candidates=4, candidate_parallel=4,
                 backend_kwargs={{"model_name": "m", "base_url": {scripted_server.base_url!r},
                                 "api_key": "x"}})
        print(s.completion("abcd", "how long?").response, os.getpid(), flush=True)
        """
    )
    scripted_server.script(responder=lambda req: repl("FINAL(len(context))"))
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    answer, pid = done.stdout.split()
    assert answer == "4"
    assert done.stderr == ""  # no bwrap complaint about removed folders
    assert until(lambda: not _descendants_of(int(pid)), timeout=10)


def _descendants_of(pid: int) -> list[int]:
    """Processes whose parent chain reaches ``pid`` (kernels reparented to init excluded)."""
    found = []
    for proc in psutil.process_iter(["pid", "environ"]):
        try:
            env = proc.info["environ"] or {}
        except psutil.Error:
            continue
        if env.get("JPY_PARENT_PID") == str(pid) and proc.pid != os.getpid():
            found.append(proc.pid)
    return found


def test_model_code_finds_no_debugger(scripted_server: ScriptedServer) -> None:
    """Kernels start without debugpy: model code cannot open a debug server port."""
    code = (
        "try:\n    import debugpy\n    r = 'imported'\n"
        "except ImportError:\n    r = 'absent'\nFINAL(r)"
    )
    scripted_server.script([repl(code)])
    assert RLM(**backend(scripted_server)).completion("c", "q").response == "absent"


def test_a_kernel_that_dies_while_starting_is_reported() -> None:
    from lmrepl.repl.kernel_env import kernel_environment
    from lmrepl.repl.kernel_launch import _launch
    from lmrepl.repl.sandbox import choose

    handle = _launch(kernel_environment(), choose("none"))
    handle.proc.kill()
    handle.proc.wait(5)
    try:
        with pytest.raises(RuntimeError, match="ended before it answered"):
            handle.connect(10)
    finally:
        handle.kill()


def test_the_first_host_call_of_a_fresh_kernel_is_never_lost() -> None:
    """A host call right after start: its input_request must find the host's stdin.

    Without the start-up stdin check about one fresh kernel in three lost it, and the
    cell hung to its deadline.
    """

    class Echo:
        def call(self, fn: str, payload: dict[str, object]) -> object:
            return f"host:{payload.get('prompt')}"

    for i in range(8):
        with KernelREPL(use_pool=False, cell_timeout=10) as r:
            r.start(Echo())  # type: ignore[arg-type]
            res = r.execute(f"print(llm_query('p{i}'))")
            assert res.status == "ok" and res.stdout.strip() == f"host:p{i}", res

"""The kernel REPL's cells, host calls, submissions and contexts, on a real kernel."""

from __future__ import annotations

import fractions
import os
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from lmrepl.errors import ContextError
from lmrepl.repl.kernel import KERNEL_ENVIRONMENT_KWARGS, KernelREPL

pytestmark = pytest.mark.timeout(120)


class FakeBridge:
    """Answers host calls like the engine would, and records them."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def call(self, fn: str, payload: dict[str, Any]) -> Any:
        self.calls.append((fn, payload))
        if fn == "llm_query":
            return f"echo:{payload['prompt']}"
        if fn == "llm_query_batched":
            return [p.upper() for p in payload["prompts"]]
        if fn == "tool":
            return {"tool": payload["name"], "args": payload["args"], "kwargs": payload["kwargs"]}
        raise ValueError(f"no host function {fn} here")


@pytest.fixture(scope="module")
def repl() -> Iterator[KernelREPL]:
    r = KernelREPL(use_pool=False, cell_timeout=20)
    r.start(FakeBridge())
    yield r
    r.close()


def test_kwargs_are_validated() -> None:
    assert "cell_timeout" in KERNEL_ENVIRONMENT_KWARGS
    with pytest.raises(ValueError, match="unknown environment_kwargs 'no_such_option'"):
        KernelREPL(no_such_option=1)
    with pytest.raises(ValueError, match=r"'cel_timeout' \(did you mean 'cell_timeout'\?\)"):
        KernelREPL(cel_timeout=1)
    with pytest.raises(ValueError, match="cell_timeout"):
        KernelREPL(cell_timeout=-1)
    with pytest.raises(ValueError, match="child_repls"):
        KernelREPL(child_repls="thread")
    with pytest.raises(ValueError, match="extra_env"):
        KernelREPL(extra_env={"A": 1})
    assert KernelREPL(cell_timeout=None).config.cell_timeout is None


def test_last_expression_is_echoed(repl: KernelREPL) -> None:
    assert repl.execute("1 + 1").display == "2"
    res = repl.execute("y = 5")
    assert res.status == "ok" and res.display is None
    assert repl.execute("y * 2").display == "10"
    assert repl.execute("y;").display is None


def test_stdout_and_stderr(repl: KernelREPL) -> None:
    res = repl.execute("import sys\nprint('out line')\nprint('err line', file=sys.stderr)")
    assert res.stdout == "out line\n"
    assert res.stderr == "err line\n"
    assert "out line" in res.text(1000)


def test_traceback_is_plain_and_trimmed(repl: KernelREPL) -> None:
    res = repl.execute("def f():\n    return 1 / 0\nf()")
    assert res.status == "error"
    assert res.error is not None
    assert "ZeroDivisionError: division by zero" in res.error
    assert "return 1 / 0" in res.error
    assert "\x1b" not in res.error
    assert "ipykernel" not in res.error and "lmrepl-" not in res.error
    assert repl.execute("'still fine'").display == "'still fine'"


def test_host_calls_round_trip(repl: KernelREPL) -> None:
    assert repl.execute("llm_query('hi')").display == "'echo:hi'"
    assert repl.execute("llm_query_batched(['a', 'b'])").display == "['A', 'B']"
    res = repl.execute("r = [llm_query(str(i)) for i in range(50)]\nr[-1], len(r)")
    assert res.display == "('echo:49', 50)"
    res = repl.execute(
        "from concurrent.futures import ThreadPoolExecutor\n"
        "with ThreadPoolExecutor(4) as pool:\n"
        "    got = list(pool.map(llm_query, ['t1', 't2', 't3', 't4']))\n"
        "got"
    )
    assert res.display == "['echo:t1', 'echo:t2', 'echo:t3', 'echo:t4']"  # from threads too
    # A bridge error raises RuntimeError with its text inside the kernel.
    res = repl.execute(
        "try:\n    rlm_query('q')\nexcept RuntimeError as e:\n    print('caught', e)"
    )
    assert res.stdout.strip() == "caught no host function rlm_query here"
    res = repl.execute("rlm_query('q')")
    assert res.status == "error" and "RuntimeError: no host function rlm_query" in str(res.error)


def test_tools_values_and_history(repl: KernelREPL) -> None:
    repl.set_tools({"lookup": lambda *a, **k: None, "LIMIT": 7, "TABLE": {"a": [1, 2]}})
    res = repl.execute("lookup(1, 'x', flag=True), LIMIT, TABLE['a']")
    assert (
        res.display == "({'tool': 'lookup', 'args': [1, 'x'], 'kwargs': {'flag': True}}, 7, [1, 2])"
    )
    repl.execute("LIMIT = 0")
    assert repl.execute("LIMIT").display == "7"  # tools are restored like runtime names
    repl.set_history([{"role": "user", "content": "earlier"}])
    assert repl.execute("history[0]['content']").display == "'earlier'"


def test_submission_paths_and_restore(repl: KernelREPL) -> None:
    repl.reset_submission()
    res = repl.execute("answer['content'] = 'draft'")
    assert not res.submitted and res.draft == "draft"
    res = repl.execute("answer['ready'] = True")
    assert res.submitted and res.answer == "draft"
    repl.reset_submission()
    res = repl.execute("answer = {'content': 'rebound', 'ready': True}")
    assert res.submitted and res.answer == "rebound"
    repl.reset_submission()
    res = repl.execute("FINAL(6 * 7)")
    assert res.submitted and res.answer == "42"
    repl.reset_submission()
    res = repl.execute("v = 'from var'\nFINAL_VAR('v')")
    assert res.submitted and res.answer == "from var"
    repl.reset_submission()
    assert not repl.execute("1").submitted
    # Overwritten names are back before the next cell.
    repl.execute("llm_query = None\nFINAL = 3")
    assert repl.execute("llm_query('again')").display == "'echo:again'"
    res = repl.execute("FINAL('ok')")
    assert res.submitted and res.answer == "ok"
    repl.reset_submission()


def test_user_variables(repl: KernelREPL) -> None:
    repl.execute("my_list = [1]\n_hidden = 2")
    names = repl.user_variables()
    assert names["my_list"] == "list"
    assert "_hidden" not in names and "llm_query" not in names and "open" not in names


def test_kernel_side_modules_stay_out_of_the_user_namespace(repl: KernelREPL) -> None:
    helpers = [
        "lmrepl_kernel",
        "kernel_protocol",
        "kernel_agent",
        "kernel_bounds",
        "bounds",
        "protocol",
        "Agent",
        "boot",
        "pkg",
        "modules",
        "filename",
        "source",
        "MARKER",
        "POLL_MIME",
    ]
    assert repl.execute(f"[n for n in {helpers!r} if n in globals()]").display == "[]"
    assert not set(helpers) & set(repl.user_variables())
    # The agent's relative import found the protocol module the bootstrap installed.
    code = (
        "__import__('sys').modules['lmrepl_kernel.kernel_agent'].protocol "
        "is __import__('sys').modules['lmrepl_kernel.kernel_protocol']"
    )
    assert repl.execute(code).display == "True"


def _check_contexts(r: KernelREPL) -> None:
    big = "abcdefghij" * 20_000  # ASCII, takes the direct-to-buffer path
    values: list[Any] = [
        big,
        "naïve – ünïcode ✓",
        b"\x00\x01raw bytes",
        [1, "two", {"three": 3}],
        {"k": [1.5, None]},
        fractions.Fraction(1, 3),
    ]
    for i, value in enumerate(values):
        assert r.add_context(value) == i
    assert r.execute("context is context_0 and context == 'abcdefghij' * 20_000").display == "True"
    assert r.execute("hash(context) == hash('abcdefghij' * 20_000)").display == "True"
    assert r.execute("context_1").display == repr(values[1])
    assert r.execute("context_2").display == repr(values[2])
    assert r.execute("context_3, context_4").display == repr((values[3], values[4]))
    assert r.execute("context_5").display == "Fraction(1, 3)"
    with pytest.raises(ContextError, match="lock"):
        r.add_context(threading.Lock())
    with pytest.raises(ContextError, match="function"):
        r.add_context(lambda: 1)
    assert r.execute("context_6").status == "error"  # nothing was half-added


def test_contexts_through_private_files(repl: KernelREPL) -> None:
    _check_contexts(repl)
    folder = repl.session.handle.kernel_dir
    assert not [n for n in os.listdir(folder) if n.startswith("ctx-")]  # the kernel deleted them
    assert os.stat(folder).st_mode & 0o077 == 0


def test_contexts_through_the_protocol() -> None:
    with KernelREPL(use_pool=False, local_files=False) as r:
        r.start(FakeBridge())
        _check_contexts(r)
        big = "x" * (7 << 20)  # several protocol chunks
        assert r.add_context(big) == 6
        assert r.execute("len(context_6), context_6 == 'x' * (7 << 20)").display == (
            f"({7 << 20}, True)"
        )


def test_huge_echo_and_output_are_bounded(repl: KernelREPL) -> None:
    res = repl.execute("'q' * 5_000_000")
    assert res.display is not None and len(res.display) < 200_000
    assert "more characters" in res.display
    res = repl.execute("for _ in range(20_000):\n    print('x' * 100)")
    assert len(res.stdout) < 200_000 and "characters dropped" in res.stdout
    assert res.stdout.endswith("x" * 100 + "\n")


def test_start_again_only_swaps_the_bridge(repl: KernelREPL) -> None:
    class Other:
        def call(self, fn: str, payload: dict[str, Any]) -> Any:
            return "other"

    pid = repl.pid
    repl.execute("kept_var = 1")
    repl.start(Other())
    assert repl.pid == pid
    assert repl.execute("llm_query('x'), kept_var").display == "('other', 1)"
    repl.start(FakeBridge())

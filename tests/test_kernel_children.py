"""Namespace child REPLs: they run in the parent's kernel while the parent's cell waits."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from lmrepl.repl.base import REPL
from lmrepl.repl.kernel import KernelREPL

pytestmark = pytest.mark.timeout(120)


class ChildBridge:
    """A child's own host calls."""

    def call(self, fn: str, payload: dict[str, Any]) -> Any:
        return f"child-llm:{payload.get('prompt')}"


class ParentBridge:
    """Runs ``rlm_query`` by driving a namespace child, like the engine does."""

    def __init__(self) -> None:
        self.repl: KernelREPL | None = None
        # Set for a batch: each of its children waits here until all of them are running.
        self.together: threading.Barrier | None = None
        self.active = 0
        self.max_active = 0
        self.lock = threading.Lock()

    def _child(self, prompt: str) -> str:
        assert self.repl is not None
        child = self.repl.make_child()
        assert child is not None
        with self.lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            child.start(ChildBridge())
            child.add_context(prompt)
            first = child.execute("n = len(context)\nprint('child sees', context)\nn")
            assert first.display == str(len(prompt)), first
            assert "child sees" in first.stdout
            sub = child.execute("llm_query(context)")
            assert sub.display == repr(f"child-llm:{prompt}"), sub
            if prompt == "loop":
                spin = child.execute("while True:\n    pass", timeout=0.5)
                assert spin.status == "timeout", spin
            if self.together is not None:
                self.together.wait()  # every sibling is running at this point
            res = child.execute("FINAL(f'{context}:{n}')")
            assert res.submitted, res
            return str(res.answer)
        finally:
            child.close()
            with self.lock:
                self.active -= 1

    def call(self, fn: str, payload: dict[str, Any]) -> Any:
        if fn == "rlm_query":
            return self._child(payload["prompt"])
        if fn == "rlm_query_batched":
            out: list[str | None] = [None] * len(payload["prompts"])
            self.together = threading.Barrier(len(payload["prompts"]), timeout=30)

            def run(i: int, p: str) -> None:
                out[i] = self._child(p)

            threads = [
                threading.Thread(target=run, args=(i, p)) for i, p in enumerate(payload["prompts"])
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
            self.together = None
            return out
        return f"parent-llm:{payload.get('prompt')}"


@pytest.fixture(scope="module")
def parent() -> Iterator[tuple[KernelREPL, ParentBridge]]:
    bridge = ParentBridge()
    repl = KernelREPL(use_pool=False, cell_timeout=30)
    bridge.repl = repl
    repl.start(bridge)
    yield repl, bridge
    repl.close()


def test_child_runs_while_parent_cell_waits(parent: tuple[KernelREPL, ParentBridge]) -> None:
    repl, _ = parent
    repl.execute("secret = 'parent only'")
    res = repl.execute("r = rlm_query('hello')\nprint(llm_query('after'))\nr")
    assert res.status == "ok", res
    assert res.display == "'hello:5'"
    assert res.stdout.strip() == "parent-llm:after"
    assert repl.execute("secret").display == "'parent only'"  # parent namespace untouched


def test_two_children_concurrently(parent: tuple[KernelREPL, ParentBridge]) -> None:
    repl, bridge = parent
    res = repl.execute("rlm_query_batched(['alpha', 'loop'])")
    assert res.status == "ok", res
    assert res.display == "['alpha:5', 'loop:4']"
    assert bridge.max_active == 2


def test_child_namespace_is_private(parent: tuple[KernelREPL, ParentBridge]) -> None:
    repl, _ = parent
    repl.execute("parent_var = 1")
    child = repl.make_child()
    assert child is not None
    child.start(ChildBridge())
    try:
        res = child.execute("parent_var")  # the parent is idle: runs over the shell
        assert res.status == "error" and "NameError" in str(res.error)
        assert child.execute("z = 3\nz + 1").display == "4"
        assert child.user_variables() == {"z": "int"}
        grandchild = child.make_child()
        assert isinstance(grandchild, REPL)
        grandchild.start(ChildBridge())
        assert grandchild.execute("'z' in globals()").display == "False"
        grandchild.close()
    finally:
        child.close()
    assert "z" not in repl.user_variables()


def test_kernel_children_mode_returns_none() -> None:
    assert KernelREPL(child_repls="kernel").make_child() is None


def test_child_contexts_over_the_protocol_while_parent_waits() -> None:
    bridge = ParentBridge()
    with KernelREPL(use_pool=False, local_files=False) as repl:
        bridge.repl = repl
        repl.start(bridge)
        res = repl.execute("rlm_query('over the wire')")
        assert res.status == "ok", res
        assert res.display == "'over the wire:13'"

"""Helpers of the attack suites: a scripted model whose code is the attack, leak checks.

Each attack runs through the real engine: the scripted model's first reply is a
```` ```repl ```` block holding the attack, which prints ``REPORT <json>``; its second
reply submits ``FINAL('survived')``, so a test sees both what the attack found (in the
output the model was shown) and that the run went on.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psutil
import pytest
from engine_helpers import last_user, make_rlm, repl

from lmrepl.repl.sandbox import unavailable_reason
from lmrepl.testing import ScriptedServer
from lmrepl.types import RLMChatCompletion

#: CI sets this so a machine where bubblewrap cannot run fails instead of skipping.
REQUIRE_SANDBOX = os.environ.get("LMREPL_REQUIRE_SANDBOX") == "1"

requires_sandbox = pytest.mark.skipif(
    unavailable_reason() is not None and not REQUIRE_SANDBOX,
    reason=f"bubblewrap sandboxes do not work here: {unavailable_reason()}",
)

#: Model code that talks to the host over the kernel's own channels, past the agent:
#: ``ask`` sends a raw stdin ``input_request``, ``answer`` reads the reply, ``call``
#: builds a host-call request, ``iopub`` publishes any message.
RAW_CHANNELS = """
import json, sys
kernel = get_ipython().kernel
protocol = sys.modules['lmrepl_kernel.kernel_protocol']
parent = kernel.get_parent('shell')
ident = kernel._parent_ident['shell']
def ask(prompt):
    content = {'prompt': prompt, 'password': False}
    kernel.session.send(kernel.stdin_socket, 'input_request', content, parent, ident=ident)
def answer(seconds=30):
    if not kernel.stdin_socket.poll(seconds * 1000):
        return None
    _, msg = kernel.session.recv(kernel.stdin_socket)
    return msg['content']['value']
def call(cid, ns=0, fn='llm_query', payload=None):
    return protocol.MARKER + json.dumps({'t': 'call', 'id': cid, 'wait': cid, 'cell': '',
        'ns': ns, 'fn': fn, 'payload': payload or {'prompt': 'hi', 'model': None}})
def iopub(kind, content):
    kernel.session.send(kernel.iopub_socket, kind, content, parent=parent)
"""

#: The model's second turn: the run must still be able to answer.
SURVIVED = "survived"


def run_attack(
    server: ScriptedServer, code: str, **environment_kwargs: Any
) -> tuple[RLMChatCompletion, dict[str, Any], str]:
    """Run ``code`` as the model's first cell in a sandboxed kernel.

    Returns the result, the attack's ``REPORT`` (``{}`` if it printed none) and the
    text the model was shown after the cell.
    """
    environment_kwargs.setdefault("sandbox", "bwrap")
    server.script([repl(code), repl(f"FINAL({SURVIVED!r})")])
    result = make_rlm(
        server, environment="kernel", environment_kwargs=environment_kwargs
    ).completion("attack context", root_prompt="What is in the context?")
    requests = server.model_requests()
    shown = last_user(requests[1]) if len(requests) > 1 else ""
    return result, report_in(shown), shown


def report_in(text: str) -> dict[str, Any]:
    """The JSON after ``REPORT`` in ``text`` (``{}`` when there is none)."""
    for line in text.splitlines():
        if line.startswith("REPORT "):
            found: dict[str, Any] = json.loads(line[len("REPORT ") :])
            return found
    return {}


def kernel_processes() -> set[int]:
    found = set()
    for proc in psutil.Process().children(recursive=True):
        try:
            if "ipykernel" in " ".join(proc.cmdline()):
                found.add(proc.pid)
        except psutil.Error:
            continue
    return found


def _pool_pids() -> set[int]:
    """Processes of kernels the warm pools hold (they outlive a run by design)."""
    from lmrepl.repl import kernel_pool

    pids: set[int] = set()
    for pool in list(kernel_pool._pools.values()):
        with pool._lock:
            handles = list(pool._ready)
        for handle in handles:
            pids |= {handle.proc.pid, handle.pid}
    return pids


def _pools_starting() -> int:
    from lmrepl.repl import kernel_pool

    return sum(pool._starting for pool in list(kernel_pool._pools.values()))


def _owned_by_pool(pid: int, pool: set[int]) -> bool:
    try:
        chain = [pid] + [p.pid for p in psutil.Process(pid).parents()]
    except psutil.Error:
        return True  # gone already
    return any(p in pool for p in chain)


def processes_with(marker: str) -> list[int]:
    """Processes whose command line holds ``marker`` (an attack's children)."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmd = " ".join(proc.info.get("cmdline") or [])
        if marker in cmd and proc.pid != os.getpid():
            found.append(proc.pid)
    return found


def wait_gone(check: Any, bound: float = 15.0) -> Any:
    """Poll ``check()`` until it returns something falsy; return its last value.

    ``bound`` only turns a leak into a failure instead of a hang: liveness, not speed.
    """
    deadline = time.monotonic() + bound
    value = check()
    while value and time.monotonic() < deadline:
        time.sleep(0.1)
        value = check()
    return value


@pytest.fixture
def no_leftover_kernels() -> Iterator[None]:
    """After the test, every kernel it started (and their children) is gone.

    Kernels that a warm pool holds or is starting are the pool's, not leaks.
    """
    before = kernel_processes()
    yield

    def leftovers() -> list[int]:
        if _pools_starting():
            return [-1]  # a refill is under way: wait until it settles
        pool = _pool_pids()
        return [p for p in kernel_processes() - before if not _owned_by_pool(p, pool)]

    left = wait_gone(leftovers)
    assert not left, f"kernel processes left behind: {left}"


def vm_mb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) // 1024
    raise AssertionError(f"no {field} in /proc/self/status")


@contextmanager
def peak_growth() -> Iterator[list[int]]:
    """How much this process's peak memory (VmHWM) grew while the block ran, in MB."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # the peak starts again from the current RSS
    base = vm_mb("VmHWM")
    box: list[int] = []
    yield box
    box.append(vm_mb("VmHWM") - base)

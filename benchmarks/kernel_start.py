"""Where a kernel's cold start goes, and the first SRLM search in a fresh process.

    .venv/bin/python benchmarks/kernel_start.py [--quick]

``benchmarks/kernel.py`` prints these tables too. The breakdown has two halves: inside
the kernel process (interpreter, imports, zmq sockets, IPython), measured in a fresh
``python`` that runs ipykernel's own start-up steps with a timer around each; and on the
host (fork, the handshake, installing the agent), measured on real starts.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from _common import ok, table

from lmrepl.repl.kernel_command import bootstrap_code
from lmrepl.repl.kernel_env import kernel_environment
from lmrepl.repl.kernel_launch import _launch, start_kernel
from lmrepl.repl.kernel_messages import run_silent
from lmrepl.repl.kernel_ready import await_kernel_info
from lmrepl.repl.kernel_validate import client_context
from lmrepl.repl.sandbox import Sandbox, choose, unavailable_reason
from lmrepl.testing import ScriptedRequest, ScriptedServer

# ipykernel's IPKernelApp.initialize, step by step, grouped by what the step is for.
_GROUPS = {
    "zmq sockets and connection file": (
        "init_connection_file",
        "init_poller",
        "init_sockets",
        "init_heartbeat",
        "write_connection_file",
    ),
    "IO streams and signals": ("init_pdb", "init_blackhole", "init_io", "init_signal"),
    "kernel object and IPython shell": (
        "init_kernel",
        "init_path",
        "init_shell",
        "init_gui_pylab",
        "init_extensions",
        "init_code",
    ),
}

_CHILD = r"""
import json, sys, time
t_main = time.perf_counter()
if sys.argv[1] == "1":
    sys.modules["debugpy"] = None  # as lmrepl's launch code does
from ipykernel.kernelapp import IPKernelApp
imports = time.perf_counter() - t_main
app = IPKernelApp.instance()
groups = json.loads(sys.argv[2])
spent = {g: 0.0 for g in groups}
def timed(group, fn):
    def run(*args, **kwargs):
        t = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            spent[group] += time.perf_counter() - t
    return run
for group, names in groups.items():
    for name in names:
        setattr(app, name, timed(group, getattr(app, name)))
t = time.perf_counter()
app.initialize(sys.argv[4:])
spent["traitlets configuration (the rest)"] = time.perf_counter() - t - sum(spent.values())
# Not stdout: from init_io on, ipykernel captures file descriptor 1 too.
with open(sys.argv[3], "w") as out:
    json.dump({"imports": imports, **spent}, out)
"""


def _in_kernel(block_debugpy: bool) -> dict[str, float]:
    """One fresh process: seconds per start-up step of ipykernel."""
    with tempfile.TemporaryDirectory() as folder:
        argv = [
            sys.executable,
            "-c",
            _CHILD,
            "1" if block_debugpy else "0",
            json.dumps(_GROUPS),
            f"{folder}/steps.json",
            "-f",
            f"{folder}/kernel.json",
            "--transport=ipc",
            f"--ip={folder}/ipc",
            "--HistoryManager.enabled=False",
        ]
        t = time.perf_counter()
        subprocess.run(argv, capture_output=True, check=True)
        whole = time.perf_counter() - t
        steps: dict[str, float] = json.loads(Path(folder, "steps.json").read_text())
    steps["whole process (to exit)"] = whole
    return steps


def _interpreter_start() -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    return time.perf_counter() - t


def _host_steps(sandbox: Sandbox) -> dict[str, float]:
    """One real start, timed by phase as ``start_kernel`` runs them."""
    t0 = time.perf_counter()
    handle = _launch(kernel_environment(), sandbox)
    t1 = time.perf_counter()
    try:
        handle.kc = handle.km.client(context=client_context())
        handle.kc.start_channels(hb=False)
        await_kernel_info(handle, 30)
        t2 = time.perf_counter()
        run_silent(handle, bootstrap_code(), {}, 30)
        t3 = time.perf_counter()
    finally:
        handle.kill()
    return {"fork and exec": t1 - t0, "to kernel_info reply": t2 - t1, "agent install": t3 - t2}


def _wait_for_ready_reference(sandbox: Sandbox) -> float:
    """jupyter_client's own handshake (what lmrepl used before), on a fresh kernel."""
    handle = _launch(kernel_environment(), sandbox)
    try:
        t = time.perf_counter()
        handle.kc = handle.km.client(context=client_context())
        handle.kc.start_channels(hb=False)
        handle.kc.wait_for_ready(timeout=30)
        return time.perf_counter() - t
    finally:
        handle.kill()


def breakdown(runs: int) -> None:
    """Print where a cold start's time goes (medians of ``runs``)."""
    inside: dict[str, list[float]] = {}
    for _ in range(runs):
        inside.setdefault("interpreter start (python -c pass)", []).append(_interpreter_start())
        for name, value in _in_kernel(block_debugpy=True).items():
            inside.setdefault(name, []).append(value)
        debugpy = _in_kernel(block_debugpy=False)
        inside.setdefault("  reference: kernel object with debugpy", []).append(
            debugpy["kernel object and IPython shell"]
        )
    rows = [(name, f"{statistics.median(v) * 1000:.0f} ms") for name, v in inside.items()]
    table(f"inside the kernel process (median of {runs})", ("step", "time"), rows)

    sandboxes = [choose("none")]
    if unavailable_reason() is None:
        sandboxes.append(choose("bwrap"))
    host_rows = []
    for sandbox in sandboxes:
        phases: dict[str, list[float]] = {}
        for _ in range(runs):
            for name, value in _host_steps(sandbox).items():
                phases.setdefault(name, []).append(value)
            t = time.perf_counter()
            start_kernel(sandbox=sandbox).kill()
            phases.setdefault("whole start_kernel", []).append(time.perf_counter() - t)
            phases.setdefault("  reference: jupyter_client wait_for_ready", []).append(
                _wait_for_ready_reference(sandbox)
            )
        host_rows += [
            (sandbox.kind, name, f"{statistics.median(v) * 1000:.0f} ms")
            for name, v in phases.items()
        ]
    table(f"on the host (median of {runs})", ("sandbox", "phase", "time"), host_rows)


# -- the first search in a fresh process ------------------------------------------------
STEPS = [
    '```repl\nn = len(context)\nprint(n)\n```\n{"confidence": 70}',
    '```repl\npart = context[:100]\nprint(part[:20])\n```\n{"confidence": 80}',
    '```repl\nFINAL(n)\n```\n{"confidence": 90}',
]

_SEARCH = r"""
import json, sys, time
from lmrepl import SRLM
k, url, sandbox = int(sys.argv[1]), sys.argv[2], sys.argv[3]
t = time.perf_counter()
srlm = SRLM(backend="openai", backend_kwargs={"model_name": "m", "base_url": url, "api_key": "x"},
            n_candidates=k, candidate_parallel=k, confidence_elicitation=True,
            environment_kwargs={"sandbox": sandbox})
result = srlm.completion("x" * 10_000, "How long is the context?")
took = time.perf_counter() - t
srlm.close()
assert result.response == "10000", result.response
print(json.dumps(took))
"""


def _first_search(url: str, k: int, sandbox: str) -> float:
    out = subprocess.run(
        [sys.executable, "-c", _SEARCH, str(k), url, sandbox],
        capture_output=True,
        text=True,
        check=True,
    )
    took: float = json.loads(out.stdout.strip().splitlines()[-1])
    return took


def first_search(runs: int) -> None:
    """K=1 and K=4 (4 in parallel), each the first search of a fresh process."""

    def responder(req: ScriptedRequest) -> str:
        turns = sum(1 for m in req.messages if m.get("role") == "assistant")
        return STEPS[min(turns, 2)]

    sandboxes = ["none"] + (["bwrap"] if unavailable_reason() is None else [])
    rows: list[tuple[Any, ...]] = []
    with ScriptedServer(responder=responder, latency=0.2) as server:
        for sandbox in sandboxes:
            times: dict[int, list[float]] = {1: [], 4: []}
            for _ in range(runs):
                for k in (1, 4):  # interleaved: both see the same machine load
                    times[k].append(_first_search(server.base_url, k, sandbox))
            one, four = (statistics.median(times[k]) for k in (1, 4))
            ratio = four / one
            rows.append((sandbox, f"{one:.2f} s", f"{four:.2f} s", f"{ratio:.2f}x", ok(ratio, 1.3)))
    table(
        f"first SRLM search in a fresh process, 3 steps x 200 ms (median of {runs})",
        ("sandbox", "K=1", "K=4 parallel 4", "ratio", "<= 1.3x"),
        rows,
    )


def main() -> None:
    """Print both tables."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = parser.parse_args()
    breakdown(3 if args.quick else 7)
    first_search(3 if args.quick else 5)


if __name__ == "__main__":
    main()

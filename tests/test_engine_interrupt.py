"""KeyboardInterrupt during a run: cancelled, kernels cleaned up, partial result kept.

Both REPLs (the ``environment`` fixture). The cell itself sends the host its Ctrl-C
(the host's pid is the context) once it has drafted an answer, then loops for ever: no
fixed sleep orders the events.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import os, signal, threading, psutil
    # A job started in the background by a shell inherits SIGINT ignored; Ctrl-C is the point.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    from lmrepl import RLM
    from lmrepl.testing import ScriptedServer

    loops = {"sleeping": "import time\\nwhile True: time.sleep(0.05)", "busy": "while True: pass"}
    code = ("answer['content'] = 'half-way'\\nimport os, signal\\n"
            "os.kill(int(context), signal.SIGINT)\\n" + loops[sys.argv[2]])
    with ScriptedServer(replies=["```repl\\n" + code + "\\n```"]) as srv:
        rlm = RLM(backend="openai",
                  backend_kwargs={"model_name": "m", "base_url": srv.base_url, "api_key": "x"},
                  environment=sys.argv[1],
                  # The cell signals the host, which a sandboxed kernel cannot reach.
                  environment_kwargs={"sandbox": "none"} if sys.argv[1] == "kernel" else {})
        try:
            rlm.completion(str(os.getpid()), "q")
            print("NOT INTERRUPTED")
        except KeyboardInterrupt:
            print("PARTIAL", rlm.last_partial.response)
        from lmrepl.repl.kernel_pool import shutdown_all
        shutdown_all()
        # Liveness, not speed: a kernel or cell thread still there after 5 s is a leak.
        gone, alive = psutil.wait_procs(
            [p for p in psutil.Process().children(recursive=True)
             if "ipykernel" in " ".join(p.cmdline())], timeout=5)
        print("KERNELS", len(alive))
        cells = [t for t in threading.enumerate() if "lmrepl-cell" in t.name]
        for t in cells:
            t.join(5)
        print("THREADS", sorted(t.name for t in cells if t.is_alive()))
    """
).replace("sys.argv", "__import__('sys').argv")


def _run(environment: str, loop: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, environment, loop],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return proc.stdout + proc.stderr


def test_interrupt_keeps_the_partial_and_leaves_nothing_running(environment: str) -> None:
    out = _run(environment, "sleeping")
    assert "PARTIAL half-way" in out, out
    assert "KERNELS 0" in out, out  # no kernel left (the kernel REPL's own, or the pool's)
    assert "THREADS []" in out, out  # no cell thread left (the local REPL runs cells in one)


def test_interrupt_stops_a_busy_cell(environment: str) -> None:
    out = _run(environment, "busy")
    assert "PARTIAL half-way" in out, out
    assert "KERNELS 0" in out, out
    assert "THREADS []" in out, out

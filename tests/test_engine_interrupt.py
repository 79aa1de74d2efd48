"""KeyboardInterrupt during a run: cancelled, kernels cleaned up, partial result kept."""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import os, signal, threading, psutil
    from lmrepl import RLM
    from lmrepl.testing import ScriptedServer

    code = "answer['content'] = 'half-way'\\nimport time\\nwhile True: time.sleep(0.05)"
    with ScriptedServer(replies=["```repl\\n" + code + "\\n```"]) as srv:
        rlm = RLM(backend="openai",
                  backend_kwargs={"model_name": "m", "base_url": srv.base_url, "api_key": "x"},
                  environment=sys.argv[1])
        threading.Timer(2.0, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
        try:
            rlm.completion("ctx", "q")
            print("NOT INTERRUPTED")
        except KeyboardInterrupt:
            print("PARTIAL", rlm.last_partial.response)
        from lmrepl.repl.kernel_pool import default_pool
        default_pool().shutdown()
        import time
        for _ in range(50):
            kernels = [p for p in psutil.Process().children(recursive=True)
                       if "ipykernel" in " ".join(p.cmdline())]
            if not kernels:
                break
            time.sleep(0.1)
        print("KERNELS", len(kernels))
        print("THREADS", sorted(t.name for t in threading.enumerate() if "lmrepl-cell" in t.name))
    """
).replace("sys.argv", "__import__('sys').argv")


def _run(environment: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, environment],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return proc.stdout + proc.stderr


def test_interrupt_in_the_kernel_repl() -> None:
    out = _run("kernel")
    assert "PARTIAL half-way" in out, out
    assert "KERNELS 0" in out, out


def test_interrupt_in_the_local_repl() -> None:
    out = _run("local")
    assert "PARTIAL half-way" in out, out
    assert "THREADS []" in out, out

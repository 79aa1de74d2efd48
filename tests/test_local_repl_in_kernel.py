"""The local REPL inside a Jupyter kernel must not break the kernel's own output."""

from __future__ import annotations

from lmrepl.repl.kernel_launch import start_kernel


def test_prints_still_reach_later_cells_after_a_local_run() -> None:
    from jupyter_client.blocking.client import BlockingKernelClient

    handle = start_kernel()
    try:
        kc: BlockingKernelClient = handle.kc
        code = (
            "from lmrepl.repl.local import LocalREPL\n"
            "class B:\n    def call(self, fn, payload): return ''\n"
            "r = LocalREPL(); r.start(B()); r.execute('print(1)')\n"
        )
        outputs: list[str] = []

        def collect(msg: dict) -> None:  # type: ignore[type-arg]
            if msg["msg_type"] == "stream":
                outputs.append(msg["content"]["text"])

        kc.execute_interactive(code, timeout=30, output_hook=collect)
        kc.execute_interactive("print('after')", timeout=30, output_hook=collect)
        assert "after\n" in outputs
    finally:
        handle.kill()

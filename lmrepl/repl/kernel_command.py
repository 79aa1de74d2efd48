"""What a kernel runs: its command line (in bwrap or not) and the bootstrap it is sent.

The kernel spec is built per launch (``LmreplSpecs``), never installed in a Jupyter data
folder; ``bootstrap_code`` is the one execute request that turns a fresh ipykernel into
an lmrepl kernel (the agent and the runtime, from this package's own source).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from jupyter_client.kernelspec import KernelSpec, KernelSpecManager

from lmrepl.repl import kernel_agent, kernel_bounds, kernel_strings
from lmrepl.repl import kernel_protocol as protocol
from lmrepl.repl.sandbox import LIMITS, Sandbox, bwrap_argv

# Runs before ipykernel is imported: ask for SIGKILL when the forking thread ends, quit
# at once if the host already died between fork and prctl, and set the sandbox's hard
# resource limits (soft = hard: nothing in the kernel can raise them again). debugpy is
# made unimportable: ipykernel then starts no debugger, which saved ~70 ms of CPU per
# kernel start (benchmarks/kernel.py) and leaves model code no debug server to open.
_LAUNCH_CODE = (
    "import ctypes, os, signal, resource\n"
    "try:\n"
    "    ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL), 0, 0, 0)\n"
    "except Exception:\n"
    "    pass\n"
    "_p = os.environ.get('JPY_PARENT_PID')\n"
    "if _p and os.getppid() != int(_p):\n"
    "    os._exit(1)\n"
    "for _n, _v in {rlimits!r}.items():\n"
    "    resource.setrlimit(getattr(resource, _n), (_v, _v))\n"
    "import sys\n"
    "sys.modules['debugpy'] = None\n"
    "import runpy\n"
    "runpy.run_module('ipykernel_launcher', run_name='__main__', alter_sys=True)\n"
)


def _source(module: Any) -> str:
    return Path(module.__file__).read_text(encoding="utf-8")


def bootstrap_code() -> str:
    """The code one execute request sends to make a fresh kernel ready.

    It builds the package ``lmrepl_kernel`` in the kernel's ``sys.modules`` (no files:
    ``__path__`` is empty), runs the protocol's, the string helpers' and the agent's
    source as its modules
    (so the agent's relative import of the protocol resolves there as it does on the
    host in ``lmrepl.repl``), then boots the agent with the runtime's source.
    """
    from lmrepl.repl import runtime

    modules = (
        (protocol.PROTOCOL_MODULE, protocol.PROTOCOL_FILE, _source(protocol)),
        (protocol.STRINGS_MODULE, protocol.STRINGS_FILE, _source(kernel_strings)),
        (protocol.BOUNDS_MODULE, protocol.BOUNDS_FILE, _source(kernel_bounds)),
        (protocol.AGENT_MODULE, protocol.AGENT_FILE, _source(kernel_agent)),
    )
    boot = (
        "import sys, types\n"
        f"pkg = types.ModuleType({protocol.KERNEL_PACKAGE!r})\n"
        "pkg.__path__ = []\n"
        "sys.modules[pkg.__name__] = pkg\n"
        f"for name, filename, source in {modules!r}:\n"
        "    m = types.ModuleType(name)\n"
        "    m.__package__ = pkg.__name__\n"
        # Registered before it runs, as an import would: the module may look itself up.
        "    sys.modules[name] = m\n"
        "    setattr(pkg, name.rpartition('.')[2], m)\n"
        "    exec(compile(source, filename, 'exec'), m.__dict__)\n"
        f"sys.modules[{protocol.AGENT_MODULE!r}].boot({_source(runtime)!r})\n"
    )
    # Run in a throw-away dict so no helper names land in the user namespace.
    return f"exec(compile({boot!r}, {protocol.BOOT_FILE!r}, 'exec'), {{}})"


KERNEL_NAME = "lmrepl"


class LmreplSpecs(KernelSpecManager):
    """Knows one kernel spec, built per launch rather than installed in a data dir."""

    def __init__(self, argv: list[str]) -> None:
        super().__init__()
        self._argv = argv

    def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
        """The lmrepl kernel spec, whatever the name (KernelManager asks for ``lmrepl``)."""
        return KernelSpec(
            argv=self._argv,
            display_name="lmrepl",
            language="python",
            interrupt_mode="signal",
        )


def kernel_argv(sandbox: Sandbox, kernel_dir: str, home_dir: str | None) -> list[str]:
    """The command that starts one kernel, wrapped in bwrap for a sandboxed one."""
    limits = LIMITS.as_rlimits() if sandbox.kind == "bwrap" else {}
    argv = [
        sys.executable,
        "-c",
        _LAUNCH_CODE.format(rlimits=limits),
        "-f",
        "{connection_file}",
        # No history database: model cells need no sqlite writes or startup cost.
        "--HistoryManager.enabled=False",
    ]
    if sandbox.kind == "bwrap":
        assert home_dir is not None
        return bwrap_argv(sandbox, kernel_dir=kernel_dir, home_dir=home_dir) + argv
    return argv

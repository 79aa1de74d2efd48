"""Helpers for tests of the magics: a shell with the extension on a scripted server."""

from __future__ import annotations

from collections.abc import Iterator

from IPython.core.interactiveshell import InteractiveShell

from lmrepl.testing import ScriptedServer
from lmrepl_jupyter import SRLMMagics


def magics(shell: InteractiveShell) -> SRLMMagics:
    """The shell's ``SRLMMagics`` instance."""
    inst = shell.magics_manager.registry["SRLMMagics"]
    assert isinstance(inst, SRLMMagics)
    return inst


def shell_on(server: ScriptedServer, *config: str) -> Iterator[InteractiveShell]:
    """The extension loaded with the openai backend on ``server`` and the local REPL, plus
    ``config`` lines (``SRLMMagics.x = y``); ``doc`` holds a short text. A generator for
    fixtures: unloads the extension and drops the configuration after."""
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "lmrepl_jupyter")
    shell.user_ns["doc"] = "hello world"
    kw = {"model_name": "m", "base_url": server.base_url, "api_key": "x"}
    for line in (
        "SRLMMagics.backend = 'openai'",
        f"SRLMMagics.backend_kwargs = {kw!r}",
        "SRLMMagics.environment = 'local'",
        *config,
    ):
        shell.run_line_magic("config", line)
    yield shell
    shell.run_line_magic("unload_ext", "lmrepl_jupyter")
    shell.config.pop("SRLMMagics", None)

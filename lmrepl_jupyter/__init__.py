"""IPython extension for lmrepl: ``%load_ext lmrepl_jupyter``.

Adds ``%%srlm`` (self-reflective program search with a live candidate panel),
``%%rlm`` (one trajectory) and ``%lmrepl`` (show the configuration). Defaults are
traitlets config on ``SRLMMagics`` (``%config SRLMMagics.n_candidates = 4``); they are
the magics' own, not the API's (K=3 candidates and 8 iterations, where ``SRLM()`` has
1 and 30), and ``%lmrepl`` shows each setting with where its value comes from.
``%unload_ext lmrepl_jupyter`` removes everything added here.
"""

from __future__ import annotations

from typing import Any

from lmrepl.records import MIME_TYPE, SCHEMA_VERSION, SearchRecord
from lmrepl_jupyter.magics import SRLMMagics
from lmrepl_jupyter.result import SRLMResult

__all__ = [
    "MIME_TYPE",
    "SCHEMA_VERSION",
    "SRLMMagics",
    "SRLMResult",
    "SearchRecord",
    "load_ipython_extension",
    "unload_ipython_extension",
]

#: The npm name of the JupyterLab extension built from labextension/ (the folder it is
#: installed under in share/jupyter/labextensions).
LAB_EXTENSION = "lmrepl-jupyter"


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    """Where the prebuilt JupyterLab extension is (the hook ``jupyter labextension`` reads)."""
    return [{"src": "labextension", "dest": LAB_EXTENSION}]


def load_ipython_extension(ip: Any) -> None:
    """Register ``SRLMMagics`` with the shell ``ip``."""
    ip.register_magics(SRLMMagics(shell=ip))


def unload_ipython_extension(ip: Any) -> None:
    """Remove the magics and the configurable added by ``load_ipython_extension``.

    IPython has no unregister API, so the entries are taken out of the magics
    manager's tables and the shell's configurables directly. Settings changed with
    ``%config`` are written back to ``ip.config`` so a ``%reload_ext`` keeps them.
    """
    mm = ip.magics_manager
    instance = mm.registry.pop(SRLMMagics.__name__, None)
    owned = [c for c in ip.configurables if isinstance(c, SRLMMagics)]
    if instance is not None and instance not in owned:
        owned.append(instance)
    for inst in owned:
        for kind, table in inst.magics.items():
            for name, fn in table.items():
                if mm.magics.get(kind, {}).get(name) == fn:
                    del mm.magics[kind][name]
        if inst in ip.configurables:
            ip.configurables.remove(inst)
    if instance is not None:
        _keep_settings(ip, instance)


def _keep_settings(ip: Any, instance: SRLMMagics) -> None:
    section = ip.config[SRLMMagics.__name__]
    for name, trait in instance.traits(config=True).items():
        value = getattr(instance, name)
        if value != trait.default():
            section[name] = value

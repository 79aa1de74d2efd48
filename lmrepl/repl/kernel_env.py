"""Configuration of the kernel REPL: accepted ``environment_kwargs`` and the kernel's env.

The kernel gets an environment built from an allow-list, never a copy of the host's:
model code runs there, so API keys and other secrets must not be readable from it
(SPEC §5). Model calls are proxied to the host instead.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from lmrepl import checks
from lmrepl.credentials import is_secret_name
from lmrepl.repl import settings
from lmrepl.repl.runtime import DEFAULT_MAX_PROMPT_CHARS

#: The ``environment_kwargs`` the kernel REPL accepts.
KERNEL_ENVIRONMENT_KWARGS: frozenset[str] = frozenset(settings.KERNEL)

_ALLOWED_NAMES = frozenset(
    {
        "PATH",
        "HOME",
        "USER",
        "LOGNAME",
        "SHELL",
        "LANG",
        "LANGUAGE",
        "TZ",
        "TERM",
        "TMPDIR",
        "TEMP",
        "TMP",
        "PYTHONPATH",
        "PYTHONHOME",
        "PYTHONIOENCODING",
        "PYTHONUTF8",
        "PYTHONDONTWRITEBYTECODE",
        "VIRTUAL_ENV",
        "CONDA_PREFIX",
        "CONDA_DEFAULT_ENV",
        "LD_LIBRARY_PATH",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "IPYTHONDIR",
        "MPLBACKEND",
        "MPLCONFIGDIR",
        "OMP_NUM_THREADS",
        "MKL_NUM_THREADS",
        "OPENBLAS_NUM_THREADS",
        "NUMEXPR_NUM_THREADS",
    }
)
_ALLOWED_PREFIXES = ("LC_", "XDG_", "JUPYTER_")


def kernel_environment(
    host_env: Mapping[str, str] | None = None, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment a kernel starts with: allow-listed host variables plus ``extra``.

    ``extra`` is what the user passed explicitly (``extra_env``) and is kept as given.
    """
    source = os.environ if host_env is None else host_env
    env = {
        k: v
        for k, v in source.items()
        # Checked even for allow-listed names: a name that looks like a secret never passes.
        if (k in _ALLOWED_NAMES or k.startswith(_ALLOWED_PREFIXES)) and not is_secret_name(k)
    }
    env.update(extra or {})
    return env


@dataclass(frozen=True)
class KernelConfig:
    """Validated settings of one kernel REPL (see ``KERNEL_ENVIRONMENT_KWARGS``)."""

    cell_timeout: float | None = 60.0
    max_output_chars: int = 20_000
    #: The longest prompt one sub-call may send (refused in the kernel and on the host).
    max_prompt_chars: int = DEFAULT_MAX_PROMPT_CHARS
    memory_limit_mb: int | None = None
    interrupt_grace: float = 2.0
    startup_timeout: float = 30.0
    use_pool: bool = True
    child_repls: Literal["namespace", "kernel"] = "namespace"
    extra_env: dict[str, str] = field(default_factory=dict)
    local_files: bool = True
    #: "auto" (bubblewrap when it works here), "bwrap" (required) or "none".
    sandbox: Literal["auto", "bwrap", "none"] = "auto"
    #: Sandboxed kernels reach no network (not even loopback) unless this is True.
    network: bool = False
    #: Extra host folders a sandboxed kernel may read (read-only), e.g. a data folder.
    read_only_paths: tuple[str, ...] = ()

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> KernelConfig:
        """Check ``environment_kwargs`` against their rules (``ConfigurationError``)."""
        checks.check_settings("environment_kwargs", kwargs, settings.KERNEL)
        out = dict(kwargs)
        for name in ("cell_timeout", "interrupt_grace", "startup_timeout"):
            if out.get(name) is not None:
                out[name] = float(out[name])
        out["extra_env"] = dict(out.get("extra_env") or {})
        out["read_only_paths"] = tuple(out.get("read_only_paths") or ())
        return cls(**out)

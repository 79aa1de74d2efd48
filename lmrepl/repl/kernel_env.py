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
from lmrepl.errors import ConfigurationError
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
    #: Run every kernel through this Jupyter Kernel/Enterprise Gateway (docs/gateway.md).
    gateway_url: str | None = None
    #: Sent as ``Authorization: token ...`` to the gateway; never to a kernel.
    gateway_token: str | None = field(default=None, repr=False)
    #: The gateway's kernel spec to start (None: the gateway's default).
    gateway_kernel_name: str | None = None

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> KernelConfig:
        """Check ``environment_kwargs`` against their rules (``ConfigurationError``)."""
        checks.check_settings("environment_kwargs", kwargs, settings.KERNEL)
        out = dict(kwargs)
        _check_gateway(out)
        for name in ("cell_timeout", "interrupt_grace", "startup_timeout"):
            if out.get(name) is not None:
                out[name] = float(out[name])
        out["extra_env"] = dict(out.get("extra_env") or {})
        out["read_only_paths"] = tuple(out.get("read_only_paths") or ())
        return cls(**out)


# Settings that configure this machine's own kernels and mean nothing for a gateway's: the
# gateway decides where kernels run and how they are isolated, and no file of this host
# reaches them. A value that asks for them is refused rather than silently ignored.
_LOCAL_ONLY = {
    "sandbox": ("bwrap", "the gateway decides how its kernels are isolated"),
    "local_files": (True, "contexts travel over the Jupyter protocol to a remote kernel"),
    "network": (True, "the gateway decides what its kernels reach"),
}


def _check_gateway(kwargs: dict[str, Any]) -> None:
    """Refuse settings that contradict ``gateway_url``; contexts then use the protocol."""
    if kwargs.get("gateway_url") is None:
        for name in ("gateway_token", "gateway_kernel_name"):
            if kwargs.get(name) is not None:
                raise ConfigurationError(
                    f"environment_kwargs[{name!r}] needs environment_kwargs['gateway_url']"
                )
        return
    for name, (refused, why) in _LOCAL_ONLY.items():
        if name in kwargs and kwargs[name] == refused:
            raise ConfigurationError(
                f"environment_kwargs[{name!r}]={refused!r} cannot be used with gateway_url: "
                f"{why} (docs/gateway.md)"
            )
    if kwargs.get("read_only_paths"):
        raise ConfigurationError(
            "environment_kwargs['read_only_paths'] cannot be used with gateway_url: the "
            "gateway's kernels do not see this machine's files (docs/gateway.md)"
        )
    kwargs["local_files"] = False

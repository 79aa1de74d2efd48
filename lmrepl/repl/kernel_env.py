"""Configuration of the kernel REPL: accepted ``environment_kwargs`` and the kernel's env.

The kernel gets an environment built from an allow-list, never a copy of the host's:
model code runs there, so API keys and other secrets must not be readable from it
(SPEC §5). Model calls are proxied to the host instead.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

#: The ``environment_kwargs`` the kernel REPL accepts.
KERNEL_ENVIRONMENT_KWARGS: frozenset[str] = frozenset(
    {
        "cell_timeout",
        "max_output_chars",
        "memory_limit_mb",
        "interrupt_grace",
        "startup_timeout",
        "use_pool",
        "child_repls",
        "extra_env",
        "local_files",
    }
)

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
# Checked even for allow-listed names: a name that looks like a secret never passes.
_SECRET = re.compile(
    r"(API_?KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|PRIVATE_KEY|SESSION_KEY)"
    r"|^(AWS|GOOGLE|GCLOUD|AZURE|OPENAI|ANTHROPIC|HF|HUGGING_?FACE)_",
    re.IGNORECASE,
)


def is_secret_name(name: str) -> bool:
    """True for environment variable names that may hold credentials."""
    return bool(_SECRET.search(name))


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
        if (k in _ALLOWED_NAMES or k.startswith(_ALLOWED_PREFIXES)) and not is_secret_name(k)
    }
    env.update(extra or {})
    return env


def _seconds(name: str, value: Any, *, allow_none: bool) -> float | None:
    if value is None:
        if allow_none:
            return None
        raise ValueError(f"{name} must be a number of seconds, not None")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number of seconds, got {type(value).__name__}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class KernelConfig:
    """Validated settings of one kernel REPL (see ``KERNEL_ENVIRONMENT_KWARGS``)."""

    cell_timeout: float | None = 60.0
    max_output_chars: int = 20_000
    memory_limit_mb: int | None = None
    interrupt_grace: float = 2.0
    startup_timeout: float = 30.0
    use_pool: bool = True
    child_repls: Literal["namespace", "kernel"] = "namespace"
    extra_env: dict[str, str] = field(default_factory=dict)
    local_files: bool = True

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> KernelConfig:
        """Validate ``environment_kwargs``; raises ValueError naming the bad key or value."""
        unknown = sorted(set(kwargs) - KERNEL_ENVIRONMENT_KWARGS)
        if unknown:
            known = ", ".join(sorted(KERNEL_ENVIRONMENT_KWARGS))
            raise ValueError(f"unknown kernel environment_kwargs {unknown}; accepted: {known}")
        out: dict[str, Any] = {}
        if "cell_timeout" in kwargs:
            out["cell_timeout"] = _seconds("cell_timeout", kwargs["cell_timeout"], allow_none=True)
        for name in ("interrupt_grace", "startup_timeout"):
            if name in kwargs:
                out[name] = _seconds(name, kwargs[name], allow_none=False)
        if "max_output_chars" in kwargs:
            value = kwargs["max_output_chars"]
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"max_output_chars must be a positive int, got {value!r}")
            out["max_output_chars"] = value
        if "memory_limit_mb" in kwargs:
            value = kwargs["memory_limit_mb"]
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value <= 0
            ):
                raise ValueError(f"memory_limit_mb must be a positive int or None, got {value!r}")
            out["memory_limit_mb"] = value
        for name in ("use_pool", "local_files"):
            if name in kwargs:
                if not isinstance(kwargs[name], bool):
                    raise ValueError(f"{name} must be True or False, got {kwargs[name]!r}")
                out[name] = kwargs[name]
        if "child_repls" in kwargs:
            if kwargs["child_repls"] not in ("namespace", "kernel"):
                raise ValueError(
                    f"child_repls must be 'namespace' or 'kernel', got {kwargs['child_repls']!r}"
                )
            out["child_repls"] = kwargs["child_repls"]
        if "extra_env" in kwargs:
            env = kwargs["extra_env"] or {}
            if not isinstance(env, Mapping) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in env.items()
            ):
                raise ValueError("extra_env must be a dict of str to str")
            out["extra_env"] = dict(env)
        return cls(**out)

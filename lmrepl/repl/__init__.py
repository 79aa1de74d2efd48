"""REPL environments: where model code runs (``local`` in-process, ``kernel`` ipykernel)."""

from __future__ import annotations

from typing import Any

from lmrepl import checks
from lmrepl.repl import settings
from lmrepl.repl.base import REPL, CellResult, HostBridge
from lmrepl.repl.sandbox import GATEWAY, Sandbox, choose

#: Names users may pass as ``environment``; "ipython" is lm-repl's name for the kernel.
ENVIRONMENTS = ("kernel", "ipython", "local")


def canonical_environment(environment: object) -> str:
    """Map aliases to the canonical name; ``ConfigurationError`` on an unknown one."""
    checks.check("environment", environment, checks.choice(*ENVIRONMENTS))
    return "kernel" if environment == "ipython" else str(environment)


def validate_environment(environment: object, environment_kwargs: dict[str, Any] | None) -> None:
    """Check the environment's name and settings before a run."""
    rules = settings.LOCAL if canonical_environment(environment) == "local" else settings.KERNEL
    checks.check_settings("environment_kwargs", dict(environment_kwargs or {}), rules)


def sandbox_of(environment: str, environment_kwargs: dict[str, Any] | None) -> Sandbox | None:
    """The sandbox kernels of these settings run in; None for the in-process REPL.

    ``sandbox="bwrap"`` raises ``ConfigurationError`` here when bubblewrap cannot run;
    kernels behind a Jupyter gateway (``gateway_url``) are ``GATEWAY``'s.
    """
    if canonical_environment(environment) == "local":
        return None
    from lmrepl.repl.kernel_env import KernelConfig

    cfg = KernelConfig.from_kwargs(**dict(environment_kwargs or {}))
    if cfg.gateway_url is not None:
        return GATEWAY
    return choose(cfg.sandbox, cfg.network, cfg.read_only_paths)


def sandbox_label(sandbox: Sandbox | None) -> str:
    """What a record shows: "bwrap", "bwrap+network", "none", "gateway" (kernels a Jupyter
    gateway runs) or "in-process" (local)."""
    return "in-process" if sandbox is None else sandbox.label


def make_repl(environment: str, environment_kwargs: dict[str, Any] | None = None) -> REPL:
    """Create (not start) a REPL of ``environment``."""
    env = canonical_environment(environment)
    kwargs = dict(environment_kwargs or {})
    if env == "local":
        from lmrepl.repl.local import LocalREPL

        return LocalREPL(**kwargs)
    from lmrepl.repl.kernel import KernelREPL

    return KernelREPL(**kwargs)


__all__ = [
    "REPL",
    "CellResult",
    "HostBridge",
    "Sandbox",
    "canonical_environment",
    "make_repl",
    "sandbox_label",
    "sandbox_of",
]

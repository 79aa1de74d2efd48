"""REPL environments: where model code runs (``local`` in-process, ``kernel`` ipykernel)."""

from __future__ import annotations

from typing import Any

from lmrepl import checks
from lmrepl.errors import ConfigurationError
from lmrepl.repl import settings
from lmrepl.repl.base import REPL, CellResult, HostBridge
from lmrepl.repl.sandbox import GATEWAY, Sandbox, choose

#: Names users may pass as ``environment``; "ipython" is lm-repl's name for the kernel.
ENVIRONMENTS = ("kernel", "ipython", "local")


def canonical_environment(environment: object) -> str:
    """Map aliases to the canonical name; ``ConfigurationError`` on an unknown one."""
    checks.check("environment", environment, checks.choice(*ENVIRONMENTS))
    return "kernel" if environment == "ipython" else str(environment)


def resolve_environment(
    environment: object, environment_kwargs: dict[str, Any] | None
) -> tuple[str, dict[str, Any]]:
    """The canonical environment and its settings, with lm-repl's ``kernel_mode`` applied.

    ``kernel_mode`` (lm-repl's key) chooses the environment (``settings.KERNEL_MODES``)
    and is removed from the settings the REPL receives. With ``environment="local"`` only
    ``"in_process"`` agrees; ``"subprocess"`` there is a ``ConfigurationError``.
    """
    env = canonical_environment(environment)
    kwargs = dict(environment_kwargs or {})
    if "kernel_mode" not in kwargs:
        return env, kwargs
    mode = kwargs.pop("kernel_mode")
    label = "environment_kwargs['kernel_mode']"
    checks.check(label, mode, checks.choice(*settings.KERNEL_MODES))
    chosen = settings.KERNEL_MODES[mode]
    if env == "local" and chosen != "local":
        raise ConfigurationError(
            f"{label} must be 'in_process' or absent with environment='local', got {mode!r}; "
            "for an ipykernel subprocess use environment='kernel' (or 'ipython')"
        )
    return chosen, kwargs


def validate_environment(environment: object, environment_kwargs: dict[str, Any] | None) -> None:
    """Check the environment's name and settings before a run."""
    env, kwargs = resolve_environment(environment, environment_kwargs)
    rules = settings.LOCAL if env == "local" else settings.KERNEL
    # kernel_mode was taken out above; listed so a misspelling of it finds it.
    rules = {**rules, "kernel_mode": checks.choice(*settings.KERNEL_MODES)}
    try:
        checks.check_settings("environment_kwargs", kwargs, rules)
    except ConfigurationError as exc:
        if env == canonical_environment(environment):
            raise
        raise ConfigurationError(
            f"{exc} (kernel_mode='in_process' runs model code in this process: the "
            "'local' environment, which has no kernel settings)"
        ) from None


def sandbox_of(environment: str, environment_kwargs: dict[str, Any] | None) -> Sandbox | None:
    """The sandbox kernels of these settings run in; None for the in-process REPL.

    ``sandbox="bwrap"`` raises ``ConfigurationError`` here when bubblewrap cannot run;
    kernels behind a Jupyter gateway (``gateway_url``) are ``GATEWAY``'s.
    """
    env, kwargs = resolve_environment(environment, environment_kwargs)
    if env == "local":
        return None
    from lmrepl.repl.kernel_env import KernelConfig

    cfg = KernelConfig.from_kwargs(**kwargs)
    if cfg.gateway_url is not None:
        return GATEWAY
    return choose(cfg.sandbox, cfg.network, cfg.read_only_paths)


def sandbox_label(sandbox: Sandbox | None) -> str:
    """What a record shows: "bwrap", "bwrap+network", "none", "gateway" (kernels a Jupyter
    gateway runs) or "in-process" (local)."""
    return "in-process" if sandbox is None else sandbox.label


def make_repl(environment: str, environment_kwargs: dict[str, Any] | None = None) -> REPL:
    """Create (not start) a REPL of ``environment``."""
    env, kwargs = resolve_environment(environment, environment_kwargs)
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
    "resolve_environment",
    "sandbox_label",
    "sandbox_of",
    "validate_environment",
]

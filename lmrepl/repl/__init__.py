"""REPL environments: where model code runs (``local`` in-process, ``kernel`` ipykernel)."""

from __future__ import annotations

from typing import Any

from lmrepl.repl.base import REPL, CellResult, HostBridge

#: Names users may pass as ``environment``; "ipython" is lm-repl's name for the kernel.
ENVIRONMENTS = ("kernel", "ipython", "local")


def canonical_environment(environment: str) -> str:
    """Map aliases to the canonical name; ValueError on an unknown environment."""
    if not isinstance(environment, str) or environment not in ENVIRONMENTS:
        raise ValueError(
            f"unknown environment {environment!r}; choose one of {', '.join(ENVIRONMENTS)}"
        )
    return "kernel" if environment == "ipython" else environment


def environment_kwargs_accepted(environment: str) -> frozenset[str]:
    """The ``environment_kwargs`` keys an environment accepts."""
    env = canonical_environment(environment)
    if env == "local":
        from lmrepl.repl.local import LOCAL_ENVIRONMENT_KWARGS

        return LOCAL_ENVIRONMENT_KWARGS
    from lmrepl.repl.kernel import KERNEL_ENVIRONMENT_KWARGS

    return KERNEL_ENVIRONMENT_KWARGS


def validate_environment(environment: str, environment_kwargs: dict[str, Any] | None) -> None:
    """Check names and values before a run; raises ValueError/TypeError."""
    kwargs = dict(environment_kwargs or {})
    accepted = environment_kwargs_accepted(environment)
    unknown = sorted(set(kwargs) - accepted)
    if unknown:
        raise TypeError(
            f"unknown environment_kwargs for {environment!r}: {', '.join(unknown)} "
            f"(accepted: {', '.join(sorted(accepted))})"
        )
    timeout = kwargs.get("cell_timeout")
    if timeout is not None and (not isinstance(timeout, (int, float)) or timeout <= 0):
        raise ValueError("environment_kwargs['cell_timeout'] must be a positive number or None")
    moc = kwargs.get("max_output_chars")
    if moc is not None and (not isinstance(moc, int) or moc <= 0):
        raise ValueError("environment_kwargs['max_output_chars'] must be a positive integer")
    if canonical_environment(environment) == "kernel":
        from lmrepl.repl.kernel_env import KernelConfig

        KernelConfig.from_kwargs(**kwargs)  # every kernel setting, checked before a run


def make_repl(environment: str, environment_kwargs: dict[str, Any] | None = None) -> REPL:
    """Create (not start) a REPL of ``environment``."""
    env = canonical_environment(environment)
    kwargs = dict(environment_kwargs or {})
    if env == "local":
        from lmrepl.repl.local import LocalREPL

        return LocalREPL(**kwargs)
    from lmrepl.repl.kernel import KernelREPL

    return KernelREPL(**kwargs)


__all__ = ["REPL", "CellResult", "HostBridge", "canonical_environment", "make_repl"]

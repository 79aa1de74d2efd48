"""The ``environment_kwargs`` each environment accepts, with one rule per setting."""

from __future__ import annotations

from lmrepl import checks
from lmrepl.checks import Rule

#: Settings every environment has.
COMMON: dict[str, Rule] = {
    "cell_timeout": checks.seconds(optional=True),
    "max_output_chars": checks.integer(1),
    "max_prompt_chars": checks.integer(1),  # per sub-call prompt, see lmrepl.repl.runtime
}

#: The kernel REPL's settings (see ``KernelConfig`` for their meaning and defaults).
KERNEL: dict[str, Rule] = {
    **COMMON,
    "memory_limit_mb": checks.integer(1, optional=True),
    "interrupt_grace": checks.seconds(),
    "startup_timeout": checks.seconds(),
    "use_pool": checks.boolean(),
    "child_repls": checks.choice("namespace", "kernel"),
    "extra_env": checks.mapping(str_to_str=True),
    "local_files": checks.boolean(),
    "sandbox": checks.choice("auto", "bwrap", "none"),
    "network": checks.boolean(),
    "read_only_paths": checks.paths(),
}

#: The in-process REPL's settings.
LOCAL: dict[str, Rule] = dict(COMMON)

"""The ``environment_kwargs`` each environment accepts, with one rule per setting."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from lmrepl import checks
from lmrepl.checks import Rule


def _gateway_url(value: Any) -> bool:
    """An http(s) URL with a host; no query or fragment, since API paths are appended."""
    if not isinstance(value, str):
        return False
    try:
        parts = urlsplit(value)
        _ = parts.port  # a port out of range raises ValueError only when read
    except ValueError:
        return False
    return (
        parts.scheme in ("http", "https")
        and bool(parts.hostname)
        and not parts.query
        and not parts.fragment
    )


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
    # Kernels through a Jupyter Kernel Gateway / Enterprise Gateway (docs/gateway.md).
    "gateway_url": Rule(
        "an http:// or https:// URL of a Jupyter gateway (no query) or None",
        lambda v: v is None or _gateway_url(v),
    ),
    "gateway_token": checks.text(optional=True, empty=False),
    "gateway_kernel_name": checks.text(optional=True, empty=False),
}

#: The in-process REPL's settings.
LOCAL: dict[str, Rule] = dict(COMMON)

#: lm-repl's ``environment_kwargs["kernel_mode"]`` (of its "ipython" environment), and
#: the environment each value means here: "subprocess" is an ipykernel process, which is
#: our kernel REPL; "in_process" runs code in the caller's process with soft timeouts
#: only, which is our local REPL (plain ``exec``: no IPython magics).
KERNEL_MODES: dict[str, str] = {"subprocess": "kernel", "in_process": "local"}

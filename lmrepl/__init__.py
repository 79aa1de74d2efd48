"""lmrepl: Recursive Language Models with self-reflective program search.

``RLM(...).completion(context, question)`` runs one trajectory; ``SRLM`` runs K
candidates and picks the answer by self-consistency and VC·Len.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lmrepl.errors import (
    AllCandidatesFailed,
    BackendError,
    BudgetExceeded,
    ConfigurationError,
    ContextError,
    ErrorLimitExceeded,
    LimitExceeded,
    LMReplError,
    RunCancelled,
    RunInterrupted,
    RunStopped,
    TimeoutExceeded,
    TokenLimitExceeded,
)
from lmrepl.records import SearchRecord
from lmrepl.rlm import RLM
from lmrepl.types import ModelUsageSummary, RLMChatCompletion, UsageSummary

if TYPE_CHECKING:  # loaded lazily at run time (``__getattr__``); typed as themselves
    from lmrepl.logger import RLMLogger, read_log
    from lmrepl.srlm import SRLM

__version__ = "0.1.0"

__all__ = [
    "RLM",
    "SRLM",
    "AllCandidatesFailed",
    "BackendError",
    "BudgetExceeded",
    "ConfigurationError",
    "ContextError",
    "ErrorLimitExceeded",
    "LMReplError",
    "LimitExceeded",
    "ModelUsageSummary",
    "RLMChatCompletion",
    "RLMLogger",
    "RunCancelled",
    "RunInterrupted",
    "RunStopped",
    "SearchRecord",
    "TimeoutExceeded",
    "TokenLimitExceeded",
    "UsageSummary",
    "read_log",
]


#: Names loaded on first use (module, attribute): SRLM pulls in the selection code and
#: the logger the event parser, which ``import lmrepl`` should not pay for.
_LAZY = {
    "SRLM": ("lmrepl.srlm", "SRLM"),
    "RLMLogger": ("lmrepl.logger", "RLMLogger"),
    "read_log": ("lmrepl.logger", "read_log"),
}


def __getattr__(name: str) -> object:
    """Load a lazy public name (``from lmrepl import SRLM`` and ``import *`` use it)."""
    if name in _LAZY:
        import importlib

        module, attribute = _LAZY[name]
        value = getattr(importlib.import_module(module), attribute)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module 'lmrepl' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The module's names, the lazy ones included."""
    return sorted({*globals(), *__all__})

"""lmrepl: Recursive Language Models with self-reflective program search.

``RLM(...).completion(context, question)`` runs one trajectory; ``SRLM`` runs K
candidates and picks the answer by self-consistency and VC·Len.
"""

from __future__ import annotations

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
    RunStopped,
    TimeoutExceeded,
    TokenLimitExceeded,
)
from lmrepl.rlm import RLM
from lmrepl.types import ModelUsageSummary, RLMChatCompletion, UsageSummary

__version__ = "0.1.0"

__all__ = [
    "RLM",
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
    "RunCancelled",
    "RunStopped",
    "TimeoutExceeded",
    "TokenLimitExceeded",
    "UsageSummary",
]


def __getattr__(name: str) -> object:
    # SRLM and the logger import selection code; load them on first use.
    if name == "SRLM":
        from lmrepl.srlm import SRLM

        return SRLM
    if name == "RLMLogger":
        from lmrepl.logger import RLMLogger

        return RLMLogger
    raise AttributeError(name)

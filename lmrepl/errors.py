"""Exceptions raised by lmrepl; each carries what a user needs to act on it."""

from __future__ import annotations

from typing import Any

from lmrepl.records import SearchRecord
from lmrepl.types import UsageSummary


class LMReplError(Exception):
    """Base class of every lmrepl error."""


class BackendError(LMReplError):
    """A model call failed for good (after retries), naming backend, model and status."""

    def __init__(
        self, message: str, *, backend: str, model: str, status: int | None = None
    ) -> None:
        super().__init__(message)
        self.backend = backend
        self.model = model
        self.status = status


class ConfigurationError(LMReplError, ValueError, TypeError):
    """Bad configuration found before a run starts: a bad argument, a missing key, an
    unreachable server. A ``ValueError`` and a ``TypeError`` too, so code that caught
    either keeps working."""


class ContextError(LMReplError, TypeError):
    """The context cannot be shipped to the REPL (for example, not picklable)."""


class RunStopped(LMReplError):
    """A run ended before an answer; carries the best partial answer and usage so far.

    ``metadata`` is what the result's metadata would have been, and ``record`` the
    run's ``SearchRecord`` (None when the run stopped before it had one).
    """

    def __init__(
        self,
        message: str,
        *,
        partial_answer: str | None = None,
        usage: UsageSummary | None = None,
        metadata: dict[str, Any] | None = None,
        record: SearchRecord | None = None,
    ) -> None:
        super().__init__(message)
        self.partial_answer = partial_answer
        self.usage = usage if usage is not None else UsageSummary()
        self.metadata = metadata if metadata is not None else {}
        self.record = record


class LimitExceeded(RunStopped):
    """A hard limit (budget, tokens, time, errors) stopped the run."""

    limit: str = "limit"


class BudgetExceeded(LimitExceeded):
    """``max_budget`` (USD) was reached."""

    limit = "max_budget"


class TokenLimitExceeded(LimitExceeded):
    """``max_tokens`` (input + output, all depths) was reached."""

    limit = "max_tokens"


class TimeoutExceeded(LimitExceeded):
    """``max_timeout`` (seconds of wall time) was reached."""

    limit = "max_timeout"


class ErrorLimitExceeded(LimitExceeded):
    """``max_errors`` consecutive failed cells or model calls."""

    limit = "max_errors"


class RunCancelled(RunStopped):
    """The run was cancelled (interrupt, early stop of an SRLM candidate)."""


class RunInterrupted(RunCancelled, KeyboardInterrupt):
    """Ctrl-C (SIGINT) stopped the run: the ``RunCancelled`` that ``cancel()`` raises,
    with the same partial answer, usage and metadata.

    It is a ``KeyboardInterrupt`` too, so code that let Ctrl-C end a script (or caught
    ``KeyboardInterrupt``) behaves as before.
    """


class AllCandidatesFailed(RunStopped):
    """Every SRLM candidate failed; ``errors`` holds each candidate's error text."""

    def __init__(self, message: str, *, errors: list[str], **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.errors = errors

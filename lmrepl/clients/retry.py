"""One retry policy for every HTTP model client.

Retried: HTTP 429, 5xx, timeouts and connection errors. Not retried: any other 4xx
(the request itself is wrong; sending it again cannot help). A ``Retry-After`` header
is honoured, and no sleep ever runs past the call's deadline. After the last attempt a
:class:`~lmrepl.errors.BackendError` names backend, model, status and the server's text.
"""

from __future__ import annotations

import email.utils
import random
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from lmrepl.errors import BackendError

T = TypeVar("T")

#: Longest single backoff sleep; a server asking for longer is still obeyed up to the deadline.
MAX_BACKOFF_S = 30.0
#: Longest ``Retry-After`` wait obeyed; the SDKs use the same bound.
MAX_RETRY_AFTER_S = 60.0
#: Server error text beyond this is cut so error messages stay readable.
MAX_ERROR_TEXT = 500


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry one model call."""

    #: Retries after the first attempt (0 = one attempt only).
    max_retries: int = 4
    #: First backoff in seconds; doubles each retry, with jitter.
    base_delay: float = 0.5
    max_delay: float = MAX_BACKOFF_S

    def backoff(self, retry_index: int) -> float:
        """Sleep before retry number ``retry_index`` (0-based), without a server hint."""
        cap = min(self.max_delay, self.base_delay * (2**retry_index))
        # "Equal jitter": keeps at least half the delay so bursts still spread out.
        return float(cap / 2 + random.uniform(0, cap / 2))


@dataclass(frozen=True)
class Failure:
    """A classified failure of one attempt."""

    #: "status", "timeout" or "connection".
    kind: str
    retryable: bool
    status: int | None = None
    retry_after: float | None = None
    text: str = ""

    def describe(self) -> str:
        """Short label for messages: ``HTTP 503``, ``timeout``, ``connection refused``."""
        if self.kind == "status":
            return f"HTTP {self.status}" if self.status is not None else "invalid response"
        return self.kind if self.kind == "timeout" else self.text or "connection error"


def parse_retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds a server asked us to wait (``retry-after-ms`` or ``Retry-After``), if any."""
    if not headers:
        return None
    lowered = {k.lower(): v for k, v in headers.items()}
    raw_ms = lowered.get("retry-after-ms")
    if raw_ms is not None:
        try:
            return max(0.0, float(raw_ms) / 1000.0)
        except ValueError:
            pass
    raw = lowered.get("retry-after")
    if raw is None:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def error_text(body: object, fallback: str = "") -> str:
    """The human-readable part of an error body (OpenAI and Anthropic shapes)."""
    text: object = None
    if isinstance(body, dict):
        err = body.get("error", body)
        text = (err.get("message") or err.get("detail") or err) if isinstance(err, dict) else err
        if text is None:
            text = body.get("message")
    elif body is not None:
        text = body
    out = str(text).strip() if text not in (None, "") else fallback
    return out if len(out) <= MAX_ERROR_TEXT else out[:MAX_ERROR_TEXT] + "…"


def _is_refused(exc: BaseException) -> bool:
    """True when the cause chain holds a refused TCP connection."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, ConnectionRefusedError) or "connection refused" in str(cur).lower():
            return True
        cur = cur.__cause__ or cur.__context__
    return False


def _sdk_error_classes() -> tuple[tuple[type[Exception], ...], ...]:
    """(status, timeout, connection, other API) exception classes of the loaded SDKs.

    Only SDKs already imported can have raised, and importing one costs a second or more.
    """
    sdks = [sys.modules[name] for name in ("openai", "anthropic") if name in sys.modules]
    return tuple(
        tuple(getattr(sdk, cls) for sdk in sdks)
        for cls in ("APIStatusError", "APITimeoutError", "APIConnectionError", "APIError")
    )


def classify(exc: BaseException) -> Failure | None:
    """Map an SDK exception to a :class:`Failure`; None for exceptions that are not API errors."""
    status_cls, timeout_cls, conn_cls, api_cls = _sdk_error_classes()
    if isinstance(exc, status_cls):
        status = int(getattr(exc, "status_code", 0) or 0)
        response = getattr(exc, "response", None)
        headers = dict(response.headers) if response is not None else None
        text = error_text(getattr(exc, "body", None), fallback=str(exc))
        retryable = status == 429 or status == 408 or status >= 500
        return Failure("status", retryable, status, parse_retry_after(headers), text)
    if isinstance(exc, (*timeout_cls, TimeoutError)):
        return Failure("timeout", True, text="timeout")
    if isinstance(exc, (*conn_cls, ConnectionError)):
        label = "connection refused" if _is_refused(exc) else f"connection error: {exc}"
        return Failure("connection", True, text=label)
    if isinstance(exc, api_cls):
        return Failure("status", False, None, text=str(exc))
    return None


def call_with_retries(
    attempt: Callable[[float | None], T],
    *,
    backend: str,
    model: str,
    policy: RetryPolicy,
    request_timeout: float | None,
    total_timeout: float | None = None,
    endpoint: str | None = None,
    sleep: Callable[[float], Any] = time.sleep,
) -> T:
    """Run ``attempt(timeout_s)`` until it succeeds or the policy gives up.

    ``request_timeout`` bounds one attempt; ``total_timeout`` bounds the whole call,
    retries and sleeps included, and each attempt's timeout shrinks to what is left.
    ``endpoint`` (a URL) is named in the final error when given.
    """
    start = time.monotonic()
    deadline = start + total_timeout if total_timeout is not None else None
    tries = 0
    while True:
        timeout = request_timeout
        if deadline is not None:
            left = deadline - time.monotonic()
            timeout = left if timeout is None else min(timeout, left)
            if timeout <= 0:
                # Only a sleep that overshot gets here; no time is left for another attempt.
                late = Failure("timeout", False, text="timeout")
                raise _give_up(late, backend, model, endpoint, tries, time.monotonic() - start)
        tries += 1
        try:
            return attempt(timeout)
        except Exception as exc:
            failure = classify(exc)
            if failure is None:
                raise
            last_exc = exc
        if failure.retry_after is not None:
            # A server hint is obeyed up to a sane bound (a misconfigured proxy may say hours).
            delay = min(failure.retry_after, MAX_RETRY_AFTER_S)
        else:
            delay = policy.backoff(tries - 1)
        out_of_time = deadline is not None and time.monotonic() + delay >= deadline
        if not failure.retryable or tries > policy.max_retries or out_of_time:
            elapsed = time.monotonic() - start
            raise _give_up(failure, backend, model, endpoint, tries, elapsed) from last_exc
        sleep(delay)


def _give_up(
    failure: Failure, backend: str, model: str, endpoint: str | None, tries: int, elapsed: float
) -> BackendError:
    """The final error after ``tries`` attempts."""
    label = failure.describe()
    detail = failure.text if failure.kind == "status" else ""
    attempts = "1 attempt" if tries == 1 else f"{tries} attempts"
    where = f" at {endpoint}" if endpoint else ""
    msg = f"{backend} backend{where}, model {model!r}: {label}"
    if detail:
        msg += f": {detail}"
    msg += f" (after {attempts}, {elapsed:.1f}s)"
    return BackendError(msg, backend=backend, model=model, status=failure.status)

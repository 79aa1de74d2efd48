"""Admission of model requests: the sub-call gate and the token and cost reservations.

**Admission.** Every model request is admitted by ``LimitGuard.admit`` before it is
sent and settled after it (``Admission``):

- *The gate.* Sub-call requests take a slot of one semaphore per run, sized by
  ``max_concurrent_subcalls``. "Per run" is per ``RLM.completion()`` /
  ``SRLM.completion()`` call: the root guard owns the semaphore and every derived
  guard (SRLM candidates, child RLMs) shares it, so K candidates together never have
  more than ``max_concurrent_subcalls`` sub-call requests in flight. Only the model
  request itself holds a slot: an ``rlm_query`` waiting for its child holds none, so
  the child's own requests can always get one (no deadlock at any depth or width).
- *Reservations.* With ``max_tokens`` (or ``max_budget`` and a client whose prices are
  known), a request reserves its input estimate plus the output cap it will send,
  and the cap is cut to what is left, so that usage plus everything reserved never
  passes the limit. When the request ends, the reservation is replaced by the real
  usage in one step. A request that does not fit waits while other requests hold
  reservations (they usually end below them) and is refused with the matching
  ``LimitExceeded`` only when nothing else is in flight and not even one output
  token fits.

**Where the guarantee is exact.** Recorded tokens stay within ``max_tokens`` whenever
each provider reports at most the estimated input tokens (``estimate_request_tokens``:
a quarter of the characters plus a per-message allowance for the chat template)
and at most the output cap it was sent. A tokenizer that needs more tokens than the
estimate (unusual scripts, adversarial text), or a provider that ignores the cap, can
push the total past the limit by at most that excess, summed over the requests in
flight at the time; every later request is refused once the limit is reached. The
budget is exact in the same sense when cost comes from the client's configured
``prices``; when only the server reports cost (no prices known), nothing can be
reserved and ``max_budget`` is checked between requests only.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping

from lmrepl.clients.base import Completion, Message, estimate_tokens
from lmrepl.errors import LMReplError
from lmrepl.usage import UsageTracker

#: Output tokens reserved for a request that has no cap of its own (no
#: ``max_reply_tokens``, no client default) while a token or priced budget limit is
#: set; it is also the cap sent then, so such replies end at this length.
DEFAULT_OUTPUT_RESERVE = 8192
#: Tokens allowed per message for the chat template (role markers, separators), and
#: for the reply's priming, on top of the text's own estimate.
MESSAGE_OVERHEAD_TOKENS = 4
REQUEST_OVERHEAD_TOKENS = 3
#: How often a waiting request looks again at cancellation and the deadline (s).
POLL_S = 0.02


class CellAbandoned(LMReplError):
    """A sub-call belongs to a cell that already ended."""


def estimate_request_tokens(messages: list[Message]) -> int:
    """Input tokens a request of ``messages`` is expected to count.

    Each message's text at ~4 characters a token (the estimate the clients use when a
    server reports no usage), plus ``MESSAGE_OVERHEAD_TOKENS`` per message and
    ``REQUEST_OVERHEAD_TOKENS`` per request. It is an estimate, not a bound: see the
    module docstring for what the ``max_tokens`` guarantee rests on.
    """
    text = sum(estimate_tokens(str(m.get("content", ""))) for m in messages)
    return text + MESSAGE_OVERHEAD_TOKENS * len(messages) + REQUEST_OVERHEAD_TOKENS


def per_token_prices(prices: Mapping[str, float] | None) -> tuple[float, float] | None:
    """(USD per input token, USD per output token) from per-million prices, or None."""
    if not prices:
        return None
    return float(prices.get("input", 0.0)) / 1e6, float(prices.get("output", 0.0)) / 1e6


class SharedLimits:
    """What every guard of one run shares: open reservations and the sub-call gate."""

    def __init__(self, max_concurrent: int | None) -> None:
        self.cond = threading.Condition()
        #: Tokens and USD reserved by requests in flight, and how many hold any.
        self.tokens = 0
        self.cost = 0.0
        self.open = 0
        self.gate = threading.BoundedSemaphore(max_concurrent) if max_concurrent else None


class Admission:
    """One admitted model request: its gate slot (if any) and its reservation.

    Ended exactly once, by ``settle`` (the request returned a completion) or ``release``
    (it failed), from whichever thread saw the request end; later calls do nothing.
    A request abandoned on a cancel or timeout keeps its slot and reservation until its
    thread really ends, so the gate and the limits count it while it still runs.
    """

    def __init__(
        self,
        shared: SharedLimits,
        *,
        slot: bool,
        output_cap: int | None,
        tokens: int = 0,
        cost: float = 0.0,
        reserved: bool = False,
    ) -> None:
        self._shared = shared
        self._slot = slot
        self._reserved = reserved
        self.tokens = tokens
        self.cost = cost
        #: The ``CallOptions.max_tokens`` to send (None: the client's default).
        self.output_cap = output_cap
        self._started = False
        self._ended = False
        self._end_lock = threading.Lock()

    def begin(self) -> bool:
        """Mark the request as sent; False if the admission already ended (do not send)."""
        with self._end_lock:
            if self._ended:
                return False
            self._started = True
            return True

    def drop_unstarted(self) -> None:
        """``release()`` unless the request began: then its own thread ends the admission."""
        with self._end_lock:
            if self._started or self._ended:
                return
            self._ended = True
        self._free(None, None)

    def settle(self, completion: Completion, usage: UsageTracker) -> None:
        """Record ``completion`` in ``usage`` and drop the reservation, as one step."""
        if self._claim():
            self._free(completion, usage)

    def release(self) -> None:
        """Drop the reservation and the slot without recording usage (the request failed)."""
        if self._claim():
            self._free(None, None)

    def _claim(self) -> bool:
        with self._end_lock:
            if self._ended:
                return False
            self._ended = True
            return True

    def _free(self, completion: Completion | None, usage: UsageTracker | None) -> None:
        shared = self._shared
        try:
            with shared.cond:
                # Under the lock, so no other request sees the tokens neither reserved
                # nor recorded in between.
                if completion is not None and usage is not None:
                    usage.record(completion)
                if self._reserved:
                    shared.open -= 1
                    shared.tokens -= self.tokens
                    # Sums of floats drift; with nothing open the true sum is zero.
                    shared.cost = shared.cost - self.cost if shared.open else 0.0
                shared.cond.notify_all()
        finally:
            if self._slot and shared.gate is not None:
                shared.gate.release()

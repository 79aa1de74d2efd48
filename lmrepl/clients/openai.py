"""The ``openai`` backend: OpenAI and every OpenAI-compatible server (vLLM, llama-server, …)."""

from __future__ import annotations

import os
import socket
import ssl
import threading
from typing import Any
from urllib.parse import urlsplit

from lmrepl.clients.base import CallOptions, Completion, Message, ModelClient, merge_same_role
from lmrepl.clients.base import estimate_tokens as _estimate
from lmrepl.clients.retry import RetryPolicy, call_with_retries
from lmrepl.errors import BackendError, ConfigurationError

#: Sent as the key to servers that need none (llama-server, vLLM without --api-key).
PLACEHOLDER_API_KEY = "not-needed"
#: The real endpoint's host: the only one that certainly needs a key.
OFFICIAL_HOST = "api.openai.com"
#: How long ``check()`` waits for a TCP connection to a configured ``base_url``.
CHECK_CONNECT_TIMEOUT_S = 2.0


def price_cost(
    prices: dict[str, float] | None, input_tokens: int, output_tokens: int
) -> float | None:
    """USD for a call from ``{"input": usd_per_Mtok, "output": usd_per_Mtok}``, or None."""
    if not prices:
        return None
    return (
        input_tokens * float(prices.get("input", 0.0))
        + output_tokens * float(prices.get("output", 0.0))
    ) / 1_000_000


def resolve_options(
    options: CallOptions | None,
    *,
    default_extra_body: dict[str, Any] | None,
    default_temperature: float | None,
) -> tuple[dict[str, Any], float | None, int | None]:
    """Merge per-call options over client defaults: (extra_body, temperature, max_tokens).

    Temperature precedence, highest first: ``CallOptions.temperature``, a temperature in
    ``CallOptions.extra_body``, the client's ``temperature``, one in ``default_extra_body``.
    The winner is removed from the extra body, because the SDK lets extra-body keys
    overwrite named parameters (the old package's bug: the default silently won).
    """
    opts = options or CallOptions()
    call_extra = dict(opts.extra_body or {})
    extra = {**(default_extra_body or {}), **call_extra}
    temperature: float | None = opts.temperature
    if temperature is None and "temperature" in call_extra:
        temperature = call_extra["temperature"]
    if temperature is None:
        temperature = default_temperature
    if temperature is None and default_extra_body:
        temperature = default_extra_body.get("temperature")
    extra.pop("temperature", None)
    max_tokens = opts.max_tokens
    if max_tokens is None and "max_tokens" in extra:
        max_tokens = extra["max_tokens"]
    extra.pop("max_tokens", None)
    return extra, temperature, max_tokens


def estimate_input_tokens(messages: list[Message]) -> int:
    """Rough prompt size of ``messages`` for servers that report no usage."""
    return _estimate("\n".join(str(m.get("content", "")) for m in messages))


def check_reachable(base_url: str) -> None:
    """Raise ``ConfigurationError`` unless ``base_url``'s host:port accepts a TCP connection."""
    parts = urlsplit(base_url)
    host = parts.hostname
    if not host:
        raise ConfigurationError(f"base_url {base_url!r} has no host")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=CHECK_CONNECT_TIMEOUT_S):
            pass
    except OSError as exc:
        raise ConfigurationError(
            f"model server at {base_url} is unreachable ({host}:{port}: {exc}); "
            "start it or fix base_url"
        ) from exc


_ssl_lock = threading.Lock()
_ssl_context: ssl.SSLContext | None = None


def shared_ssl_context() -> ssl.SSLContext:
    """One verified TLS context for every client of the process.

    Loading the CA certificates takes 30–45 ms; a new SDK client would pay it each
    time (every RLM, every SRLM candidate set), inside the first model call.
    """
    global _ssl_context
    with _ssl_lock:
        if _ssl_context is None:
            _ssl_context = ssl.create_default_context()
        return _ssl_context


class OpenAIClient(ModelClient):
    """Chat completions through the official ``openai`` SDK's sync client.

    One SDK client per instance; httpx's connection pool makes it safe to share
    between threads. SDK retries are off: :mod:`lmrepl.clients.retry` retries instead.

    For subclasses (the ``local`` backend): the SDK client is built on the first call, so
    ``base_url`` may be set after ``__init__``; override ``check()`` when the server is
    started on demand rather than expected to be listening already.
    """

    backend = "openai"
    #: Today's common window for OpenAI-compatible chat models; set
    #: ``backend_kwargs["context_window"]`` for a smaller server (a vLLM or llama-server).
    default_context_window = 128_000
    #: Environment variable holding the key for the real endpoint.
    api_key_env = "OPENAI_API_KEY"

    def __init__(
        self,
        model_name: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        default_extra_body: dict[str, Any] | None = None,
        default_headers: dict[str, str] | None = None,
        timeout: float = 600.0,
        max_retries: int = 4,
        retry_base_delay: float = 0.5,
        prices: dict[str, float] | None = None,
        response_format: dict[str, Any] | None = None,
        temperature: float | None = None,
    ) -> None:
        super().__init__(model_name)
        self.base_url = base_url or os.environ.get("OPENAI_BASE_URL") or None
        #: The variable ``base_url`` came from, named by errors about it (None: an argument).
        self.base_url_origin = "OPENAI_BASE_URL" if self.base_url and not base_url else None
        key = api_key or os.environ.get(self.api_key_env) or None
        #: True when the real endpoint would be called without a key (custom servers need none).
        official = self.base_url is None or urlsplit(self.base_url).hostname == OFFICIAL_HOST
        self.missing_api_key = key is None and official
        self._api_key = key if key is not None else PLACEHOLDER_API_KEY
        self.default_extra_body = dict(default_extra_body or {})
        self.default_headers = dict(default_headers or {})
        self.timeout = float(timeout)
        self.retry_policy = RetryPolicy(max_retries=max_retries, base_delay=retry_base_delay)
        self.prices = dict(prices) if prices else None
        self.response_format = response_format
        self.temperature = temperature
        self._lock = threading.Lock()
        self._sdk_client: Any = None
        #: Set by ``close()``; subclasses may refuse further calls once it is set.
        self._closed = threading.Event()

    @property
    def _client(self) -> Any:
        """The SDK client, built on first use.

        Built late so that construction stays cheap (importing the SDK and loading TLS
        certificates take ~0.7 s) and network-free, and so that a subclass may settle
        ``base_url`` first or assign its own client (e.g. after starting a server).
        """
        with self._lock:
            if self._sdk_client is None:
                import openai

                self._sdk_client = openai.OpenAI(
                    api_key=self._api_key,
                    base_url=self.base_url,
                    timeout=self.timeout,
                    max_retries=0,
                    default_headers=self.default_headers or None,
                    http_client=openai.DefaultHttpxClient(verify=shared_ssl_context()),
                )
            return self._sdk_client

    @_client.setter
    def _client(self, client: Any) -> None:
        with self._lock:
            self._sdk_client = client

    def check(self) -> None:
        """``ConfigurationError``: no key for the real endpoint, or ``base_url`` refuses TCP."""
        if self.missing_api_key:
            raise ConfigurationError(
                f"{self.backend} backend: no API key; set {self.api_key_env} in the environment "
                "or pass backend_kwargs={'api_key': ...} (or a base_url for a local server)"
            )
        if self.base_url is not None:
            try:
                check_reachable(self.base_url)
            except ConfigurationError as exc:
                if self.base_url_origin is None:
                    raise
                raise ConfigurationError(
                    f"{exc} (base_url was set by {self.base_url_origin})"
                ) from None

    def complete(self, messages: list[Message], options: CallOptions | None = None) -> Completion:
        """One chat completion, retried per the client's policy."""
        if self.missing_api_key:
            raise BackendError(
                f"{self.backend} backend, model {self.model_name!r}: no API key "
                f"(set {self.api_key_env})",
                backend=self.backend,
                model=self.model_name,
            )
        merged = merge_same_role(messages)
        extra, temperature, max_tokens = resolve_options(
            options,
            default_extra_body=self.default_extra_body,
            default_temperature=self.temperature,
        )
        opts = options or CallOptions()
        params: dict[str, Any] = {"model": self.model_name, "messages": merged}
        if temperature is not None:
            params["temperature"] = temperature
        if max_tokens is not None:
            # OpenAI's own API deprecates ``max_tokens`` (its reasoning models refuse
            # it); compatible servers (llama.cpp, vLLM, ...) know ``max_tokens``.
            official = self.base_url is None or "api.openai.com" in self.base_url
            params["max_completion_tokens" if official else "max_tokens"] = max_tokens
        response_format = opts.response_format or self.response_format
        if response_format is not None:
            params["response_format"] = response_format
        # The SDK's typed ``chat.completions.create`` re-walks the whole request through
        # its TypedDict transform (~1–3 ms of CPU under the GIL per call, measured);
        # with 16 sub-calls in flight that alone cost ~10 % of fan-out speed. Its
        # documented low-level ``post`` sends the same JSON through the same client
        # (auth, base_url, headers, timeouts) without that walk.
        body = {**params, **extra}
        sdk = self._client
        from openai.types.chat import ChatCompletion

        def attempt(timeout: float | None) -> Any:
            return sdk.post(
                "/chat/completions",
                body=body,
                cast_to=ChatCompletion,
                options={"timeout": timeout if timeout is not None else self.timeout},
            )

        response = call_with_retries(
            attempt,
            backend=self.backend,
            model=self.model_name,
            policy=self.retry_policy,
            request_timeout=self.timeout,
            total_timeout=opts.timeout,
            endpoint=self.base_url,
        )
        return self._to_completion(response, merged)

    def _to_completion(self, response: Any, messages: list[Message]) -> Completion:
        """Text, token counts and cost from a chat-completion response."""
        choices = getattr(response, "choices", None) or []
        message = getattr(choices[0], "message", None) if choices else None
        text = getattr(message, "content", None) or ""
        if not isinstance(text, str):
            text = str(text)
        usage = getattr(response, "usage", None)
        prompt = int(getattr(usage, "prompt_tokens", 0) or 0)
        completion = int(getattr(usage, "completion_tokens", 0) or 0)
        reported = usage is not None and (prompt > 0 or completion > 0)
        if not reported:
            prompt, completion = estimate_input_tokens(messages), _estimate(text)
        cost = _reported_cost(usage)
        if cost is None:
            cost = price_cost(self.prices, prompt, completion)
        # Usage is keyed by the configured name, not the server's dated variant of it.
        return Completion(
            text=text,
            model=self.model_name,
            input_tokens=prompt,
            output_tokens=completion,
            cost=cost,
            usage_reported=reported,
        )

    def close(self) -> None:
        """Close the SDK's connection pool (idempotent; a later call opens a new one)."""
        self._closed.set()
        with self._lock:
            client, self._sdk_client = self._sdk_client, None
        if client is not None:
            client.close()


def _reported_cost(usage: Any) -> float | None:
    """``usage.cost`` as OpenRouter and some proxies report it, else None."""
    if usage is None:
        return None
    cost = getattr(usage, "cost", None)
    if cost is None:
        extra = getattr(usage, "model_extra", None) or {}
        cost = extra.get("cost")
    try:
        return float(cost) if cost is not None else None
    except (TypeError, ValueError):
        return None

"""The ``anthropic`` backend: the Messages API through the official ``anthropic`` SDK."""

from __future__ import annotations

import os
import threading
from typing import Any

from lmrepl.clients.base import (
    CallOptions,
    Completion,
    Message,
    ModelClient,
    estimate_tokens,
    merge_same_role,
)
from lmrepl.clients.openai import (
    check_reachable,
    estimate_input_tokens,
    price_cost,
    resolve_options,
)
from lmrepl.clients.retry import RetryPolicy, call_with_retries
from lmrepl.errors import BackendError, ConfigurationError

#: Sent first when a conversation would otherwise open with an assistant turn.
LEADING_USER_MESSAGE = "Continue."


def to_anthropic_messages(messages: list[Message]) -> tuple[str | None, list[Message]]:
    """Split out the system prompt and shape the rest as the Messages API requires.

    System messages (anywhere) are joined into ``system``; other roles than ``assistant``
    become ``user``; same-role neighbours are merged; the first message is a user turn.
    """
    system_parts = [m["content"] for m in messages if m["role"] == "system"]
    rest = [
        {"role": "assistant" if m["role"] == "assistant" else "user", "content": m["content"]}
        for m in messages
        if m["role"] != "system"
    ]
    if not rest or rest[0]["role"] != "user":
        rest.insert(0, {"role": "user", "content": LEADING_USER_MESSAGE})
    system = "\n\n".join(system_parts) if system_parts else None
    return system, merge_same_role(rest)


def output_config_for(response_format: dict[str, Any] | None) -> dict[str, Any] | None:
    """Translate an OpenAI-style ``json_schema`` response_format to Anthropic's output_config."""
    if not response_format or response_format.get("type") != "json_schema":
        return None
    schema = response_format.get("schema")
    if schema is None:
        schema = (response_format.get("json_schema") or {}).get("schema")
    if schema is None:
        return None
    return {"format": {"type": "json_schema", "schema": schema}}


class AnthropicClient(ModelClient):
    """Claude models through the ``anthropic`` SDK's sync client (thread-safe, one per instance)."""

    backend = "anthropic"
    #: The window of current Claude models.
    default_context_window = 200_000
    api_key_env = "ANTHROPIC_API_KEY"

    def __init__(
        self,
        model_name: str,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        max_tokens: int = 4096,
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
        self.base_url = base_url
        key = api_key or os.environ.get(self.api_key_env) or None
        self.missing_api_key = key is None and base_url is None
        self._api_key = key or "not-needed"
        self.max_tokens = int(max_tokens)
        self.default_extra_body = dict(default_extra_body or {})
        self.default_headers = dict(default_headers or {})
        self.timeout = float(timeout)
        self.retry_policy = RetryPolicy(max_retries=max_retries, base_delay=retry_base_delay)
        self.prices = dict(prices) if prices else None
        self.response_format = response_format
        self.temperature = temperature
        self._lock = threading.Lock()
        self._client: Any = None

    def _sdk(self) -> Any:
        """The SDK client, built on first use (importing ``anthropic`` takes seconds)."""
        with self._lock:
            if self._client is None:
                import anthropic

                self._client = anthropic.Anthropic(
                    api_key=self._api_key,
                    base_url=self.base_url,
                    timeout=self.timeout,
                    max_retries=0,
                    default_headers=self.default_headers or None,
                )
            return self._client

    def check(self) -> None:
        """Missing ``ANTHROPIC_API_KEY`` or an unreachable ``base_url``: ``ConfigurationError``."""
        if self.missing_api_key:
            raise ConfigurationError(
                f"{self.backend} backend: no API key; set {self.api_key_env} in the environment "
                "or pass backend_kwargs={'api_key': ...}"
            )
        if self.base_url is not None:
            check_reachable(self.base_url)

    def complete(self, messages: list[Message], options: CallOptions | None = None) -> Completion:
        """One Messages API call, retried per the client's policy."""
        if self.missing_api_key:
            raise BackendError(
                f"{self.backend} backend, model {self.model_name!r}: no API key "
                f"(set {self.api_key_env})",
                backend=self.backend,
                model=self.model_name,
            )
        system, shaped = to_anthropic_messages(messages)
        extra, temperature, max_tokens = resolve_options(
            options,
            default_extra_body=self.default_extra_body,
            default_temperature=self.temperature,
        )
        opts = options or CallOptions()
        params: dict[str, Any] = {
            "model": self.model_name,
            "messages": shaped,
            "max_tokens": max_tokens if max_tokens is not None else self.max_tokens,
        }
        if system is not None:
            params["system"] = system
        if temperature is not None:
            # This SDK version has no named temperature parameter; the API still takes it.
            extra["temperature"] = temperature
        output_config = output_config_for(opts.response_format or self.response_format)
        if output_config is not None and "output_config" not in extra:
            params["output_config"] = output_config
        if extra:
            params["extra_body"] = extra

        sdk = self._sdk()

        def attempt(timeout: float | None) -> Any:
            return sdk.messages.create(
                **params, timeout=timeout if timeout is not None else self.timeout
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
        return self._to_completion(response, shaped, system)

    def _to_completion(
        self, response: Any, messages: list[Message], system: str | None
    ) -> Completion:
        """Concatenated text blocks plus usage (estimated when the server sends none)."""
        blocks = getattr(response, "content", None) or []
        text = "".join(
            str(getattr(b, "text", "") or "") for b in blocks if getattr(b, "type", "") == "text"
        )
        usage = getattr(response, "usage", None)
        # Cached prompt tokens are billed input too; count them so budgets stay honest.
        prompt = sum(
            int(getattr(usage, name, 0) or 0)
            for name in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
        )
        completion = int(getattr(usage, "output_tokens", 0) or 0)
        reported = usage is not None and (prompt > 0 or completion > 0)
        if not reported:
            sys_msgs: list[Message] = [{"role": "system", "content": system}] if system else []
            prompt = estimate_input_tokens(sys_msgs + messages)
            completion = estimate_tokens(text)
        return Completion(
            text=text,
            model=self.model_name,
            input_tokens=prompt,
            output_tokens=completion,
            cost=price_cost(self.prices, prompt, completion),
            usage_reported=reported,
        )

    def close(self) -> None:
        """Close the SDK's connection pool (idempotent; a later call opens a new one)."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

"""The ``local`` backend: the embedded model (SPEC §10) behind the normal OpenAI client path.

Constructing a :class:`LocalClient` is cheap and touches no model: the shared llama.cpp
server (:func:`lmrepl.local.server.get_server`) starts on the first :meth:`complete`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
import urllib.request
from collections import OrderedDict
from pathlib import Path
from typing import Any

from lmrepl.clients.base import CallOptions, Completion, Message
from lmrepl.clients.openai import PLACEHOLDER_API_KEY, OpenAIClient
from lmrepl.errors import ConfigurationError
from lmrepl.local.weights import MODEL_NAME, ModelFileError, locate_parts
from lmrepl.local.weights import model_path as embedded_model_path

__all__ = ["DEFAULT_MAX_TOKENS", "LocalClient"]

#: Reply cap when the caller sets none: greedy small-model replies can otherwise run on
#: to the end of the context.
DEFAULT_MAX_TOKENS = 1024


class LocalClient(OpenAIClient):
    """Chat completions from a GGUF served in-process by llama.cpp (default: the embedded one).

    All clients of a process share one server per model file; ``n_parallel`` and ``n_ctx``
    (per slot) only take effect for the client that starts it.
    """

    backend = "local"

    def __init__(
        self,
        model_name: str = MODEL_NAME,
        *,
        model_path: str | os.PathLike[str] | None = None,
        n_parallel: int = 4,
        n_ctx: int | None = None,
        max_tokens_default: int | None = DEFAULT_MAX_TOKENS,
        default_extra_body: dict[str, Any] | None = None,
        default_headers: dict[str, str] | None = None,
        timeout: float = 600.0,
        max_retries: int = 2,
        retry_base_delay: float = 0.5,
        response_format: dict[str, Any] | None = None,
        temperature: float | None = None,
    ) -> None:
        # The real URL and key exist only once the server runs; this placeholder is never used.
        super().__init__(
            model_name,
            base_url="http://127.0.0.1:9/v1",
            api_key=PLACEHOLDER_API_KEY,
            default_extra_body=default_extra_body,
            default_headers=default_headers,
            timeout=timeout,
            max_retries=max_retries,
            retry_base_delay=retry_base_delay,
            response_format=response_format,
            temperature=temperature,
        )
        self.model_path = Path(model_path).expanduser() if model_path is not None else None
        self.n_parallel = n_parallel
        self.n_ctx = n_ctx
        self.max_tokens_default = max_tokens_default
        self._bound: Any = None
        self._bind_lock = threading.Lock()
        # Conversations resend the same messages every turn: count each text once.
        self._token_counts: OrderedDict[str, int] = OrderedDict()
        self._counts_lock = threading.Lock()

    @property
    def context_window(self) -> int | None:
        """The server's per-slot context (``n_ctx``), or a smaller configured window."""
        from lmrepl.local.server import DEFAULT_N_CTX

        server = self._bound
        slot = server.n_ctx if server is not None else (self.n_ctx or DEFAULT_N_CTX)
        configured = self._context_window
        return min(slot, configured) if configured else int(slot)

    @context_window.setter
    def context_window(self, tokens: int | None) -> None:
        self._context_window = tokens

    def count_tokens(self, text: str) -> int:
        """Exact tokens of ``text`` by the served model's own tokenizer (``/tokenize``)."""
        if not text:
            return 0
        with self._counts_lock:
            if text in self._token_counts:
                self._token_counts.move_to_end(text)
                return self._token_counts[text]
        try:
            self._ensure_server()
            n = self._tokenize(text)
        except Exception:
            return super().count_tokens(text)  # the estimate errs high: still safe
        with self._counts_lock:
            self._token_counts[text] = n
            while len(self._token_counts) > 256:
                self._token_counts.popitem(last=False)
        return n

    def _tokenize(self, text: str) -> int:
        server = self._bound
        request = urllib.request.Request(
            server.url + "/tokenize",
            data=json.dumps({"content": text}).encode(),
            headers={"Content-Type": "application/json"}
            | ({"Authorization": f"Bearer {server.api_key}"} if server.api_key else {}),
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return len(json.loads(response.read())["tokens"])

    def check(self) -> None:
        """``ConfigurationError`` if xllamacpp or the model file is missing (loads nothing)."""
        try:
            import xllamacpp  # noqa: F401
        except ImportError as exc:
            raise ConfigurationError(
                f'local backend needs xllamacpp ({exc}); install: pip install "lmrepl[local]"'
            ) from exc
        if self.model_path is not None:
            if not self.model_path.is_file():
                raise ConfigurationError(f"local backend: model file not found: {self.model_path}")
        elif not embedded_model_path().is_file():
            try:
                locate_parts()
            except ModelFileError as exc:
                raise ConfigurationError(f"local backend: {exc}") from exc

    def complete(self, messages: list[Message], options: CallOptions | None = None) -> Completion:
        """Start (or reuse) the shared server, then one chat completion through it."""
        self._ensure_server()
        if self.max_tokens_default is not None and not self._caps_tokens(options):
            options = dataclasses.replace(
                options or CallOptions(), max_tokens=self.max_tokens_default
            )
        return super().complete(messages, options)

    def _caps_tokens(self, options: CallOptions | None) -> bool:
        if options is not None and options.max_tokens is not None:
            return True
        extra = {**self.default_extra_body, **((options and options.extra_body) or {})}
        return extra.get("max_tokens") is not None

    def _ensure_server(self) -> None:
        import openai

        from lmrepl.local.server import get_server

        with self._bind_lock:
            if self._closed.is_set():
                raise ConfigurationError("local backend: the client is closed")
            server = get_server(self.n_parallel, self.model_path, self.n_ctx)
            if server is self._bound:
                return
            # A new server (first call, or the old one was stopped) has a new port and key.
            old = self._client
            self.base_url = server.base_url
            self._client = openai.OpenAI(
                api_key=server.api_key or PLACEHOLDER_API_KEY,
                base_url=server.base_url,
                timeout=self.timeout,
                max_retries=0,
                default_headers=self.default_headers or None,
            )
            self._bound = server
            old.close()

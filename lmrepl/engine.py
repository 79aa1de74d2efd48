"""What every trajectory of one ``completion()`` shares: settings, clients, events."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lmrepl.clients.base import ModelClient
from lmrepl.events import EventBus
from lmrepl.repl import REPL, make_repl

#: The window assumed for compaction when the root client knows none (tokens).
DEFAULT_CONTEXT_WINDOW = 32_768


@dataclass
class EngineSettings:
    """Validated run settings (built by ``RLM``)."""

    environment: str = "kernel"
    environment_kwargs: dict[str, Any] = field(default_factory=dict)
    #: Which sandbox the REPL's kernels run in (``lmrepl.repl.sandbox_label``).
    sandbox: str = "in-process"
    max_depth: int = 1
    max_iterations: int = 30
    child_max_iterations: int | None = None
    max_errors: int | None = None
    max_output_chars: int = 20_000
    max_concurrent_subcalls: int = 8
    custom_system_prompt: str | None = None
    child_system_prompt: str | None = None
    tools: dict[str, Any] = field(default_factory=dict)
    tool_descriptions: dict[str, str] = field(default_factory=dict)
    sub_tools: dict[str, Any] = field(default_factory=dict)
    sub_tool_descriptions: dict[str, str] = field(default_factory=dict)
    compaction: bool = False
    compaction_threshold_pct: float = 0.85
    context_window_tokens: int = DEFAULT_CONTEXT_WINDOW
    confidence_instruction: str | None = None
    temperature: float | None = None
    max_reply_tokens: int | None = None
    #: Hold a constant FINAL submitted next to output the model has not read (hygiene).
    hold_unseen_final: bool = True


class Engine:
    """Clients and settings for the trajectories of one ``completion()``."""

    def __init__(
        self,
        settings: EngineSettings,
        root_client: ModelClient,
        other_clients: list[ModelClient],
        bus: EventBus,
        backend: str,
    ) -> None:
        self.settings = settings
        self.root_client = root_client
        self.other_clients = other_clients
        self.bus = bus
        self.backend = backend

    def all_clients(self) -> list[ModelClient]:
        """The root client and the other backends' clients."""
        return [self.root_client, *self.other_clients]

    def subcall_client(self, model: str | None) -> ModelClient:
        """The client for ``llm_query(..., model=model)``.

        No model: the first of ``other_backends`` if any, else the root model.
        A named model must match one configured client's ``model_name`` — unless only
        one model is configured: then there is nothing to choose, and small models
        that name one they know from training (``"gpt-4"``) still get an answer.
        """
        if model is None or not self.other_clients:
            return self.other_clients[0] if self.other_clients else self.root_client
        for client in self.all_clients():
            if client.model_name == model:
                return client
        known = ", ".join(c.model_name for c in self.all_clients())
        raise ValueError(f"unknown model {model!r} for a sub-call (configured: {known})")

    def new_repl(self) -> REPL:
        """A fresh, unstarted REPL of the configured environment."""
        return make_repl(self.settings.environment, self.settings.environment_kwargs)

"""The names model code sees (SPEC §4), installed into a REPL namespace.

This module is stdlib-only and self-contained on purpose: the kernel REPL ships
its source to the kernel, which may run on another machine without lmrepl.
``install(ns, host_call)`` returns the ``Runtime`` that owns the protected names.

A prompt longer than ``max_prompt_chars`` (an ``environment_kwargs`` setting) is
refused here, before anything is sent; the host checks again, since model code can
send host calls without this module.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

HostCall = Callable[[str, dict[str, Any]], Any]

#: Default of ``max_prompt_chars``: the longest prompt one sub-call may send (about
#: 250k tokens, beyond any model's window; a larger one is a bug or an attack).
DEFAULT_MAX_PROMPT_CHARS = 1_000_000
#: The cap of runtimes created without one (a kernel's ``config`` operation sets it
#: for every namespace of that kernel).
max_prompt_chars = DEFAULT_MAX_PROMPT_CHARS


def set_max_prompt_chars(cap: int) -> None:
    """Set the cap of every runtime in this process that has none of its own."""
    global max_prompt_chars
    max_prompt_chars = int(cap)


def prompt_too_long(fn: str, prompt: str, cap: int) -> str | None:
    """The error text for a prompt over ``cap`` characters, or None if it fits."""
    if len(prompt) <= cap:
        return None
    return (
        f"{fn}: the prompt has {len(prompt):,} characters; one sub-call may send at most "
        f"{cap:,} (environment_kwargs max_prompt_chars). Send smaller pieces, e.g. "
        "chunks of the context."
    )


BASE_NAMES = (
    "llm_query",
    "llm_query_batched",
    "rlm_query",
    "rlm_query_batched",
    "answer",
    "FINAL",
    "FINAL_VAR",
    "SHOW_VARS",
    "history",
    "context",
)


def as_text(value: Any) -> str:
    """The text of a submitted value (strings as they are, others by ``str``)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


class Runtime:
    """Owns the protected names of one namespace and the submission state."""

    def __init__(
        self, ns: dict[str, Any], host_call: HostCall, prompt_cap: int | None = None
    ) -> None:
        self.ns = ns
        self.host_call = host_call
        #: This runtime's ``max_prompt_chars`` (None: the module's ``max_prompt_chars``).
        self.prompt_cap = prompt_cap
        self.contexts: list[Any] = []
        self.tools: dict[str, Any] = {}
        self.history: list[Any] = []
        self.answer: dict[str, Any] = {"content": "", "ready": False}
        self.final: str | None = None
        self.restore()

    # -- functions model code calls ------------------------------------------------
    def llm_query(self, prompt: Any, model: str | None = None) -> str:
        """One plain language-model call; returns the reply text."""
        return self._one("llm_query", prompt, model)

    def llm_query_batched(self, prompts: Any, model: str | None = None) -> list[str]:
        """Concurrent calls; replies in input order, an error string in a failed slot."""
        return self._batch("llm_query_batched", "llm_query", prompts, model)

    def rlm_query(self, prompt: Any, model: str | None = None) -> str:
        """A recursive child RLM on ``prompt``; returns its answer."""
        return self._one("rlm_query", prompt, model)

    def rlm_query_batched(self, prompts: Any, model: str | None = None) -> list[str]:
        """Concurrent child RLMs; answers in input order."""
        return self._batch("rlm_query_batched", "rlm_query", prompts, model)

    def _cap(self) -> int:
        return self.prompt_cap if self.prompt_cap is not None else max_prompt_chars

    def _one(self, fn: str, prompt: Any, model: str | None) -> str:
        text = as_text(prompt)
        too_long = prompt_too_long(fn, text, self._cap())
        if too_long is not None:
            raise ValueError(too_long)
        return str(self.host_call(fn, {"prompt": text, "model": model}))

    def _batch(self, fn: str, single: str, prompts: Any, model: str | None) -> list[str]:
        items = [as_text(p) for p in _as_list(prompts, fn)]
        cap = self._cap()
        # An oversize prompt fails in its own slot, like any failed prompt of a batch;
        # only the others are sent.
        out: list[str | None] = [None] * len(items)
        send: list[int] = []
        for i, text in enumerate(items):
            too_long = prompt_too_long(single, text, cap)
            if too_long is None:
                send.append(i)
            else:
                out[i] = "Error: " + too_long
        if send:
            replies = self.host_call(fn, {"prompts": [items[i] for i in send], "model": model})
            for i, reply in zip(send, replies, strict=False):
                out[i] = str(reply)
        return [r if r is not None else "Error: no reply" for r in out]

    def FINAL(self, value: Any) -> None:
        """Submit ``value`` as the final answer (returns None so a bare call echoes nothing)."""
        self.final = as_text(value)
        self.answer["content"] = self.final
        self.answer["ready"] = True

    def FINAL_VAR(self, name: Any) -> None:
        """Submit the value of the variable called ``name``."""
        if isinstance(name, str):
            key = name.strip().strip("'\"")
            if key not in self.ns:
                known = ", ".join(sorted(self.user_variables())) or "none"
                raise NameError(f"FINAL_VAR: no variable named {key!r} (variables: {known})")
            self.FINAL(self.ns[key])
            return
        self.FINAL(name)

    def SHOW_VARS(self) -> dict[str, str]:
        """The variables the model created, with their type names."""
        return self.user_variables()

    # -- host side ------------------------------------------------------------------
    def protected(self) -> dict[str, Any]:
        """Every protected name with the value it must have before a cell."""
        names: dict[str, Any] = {
            "llm_query": self.llm_query,
            "llm_query_batched": self.llm_query_batched,
            "rlm_query": self.rlm_query,
            "rlm_query_batched": self.rlm_query_batched,
            "answer": self.answer,
            "FINAL": self.FINAL,
            "FINAL_VAR": self.FINAL_VAR,
            "SHOW_VARS": self.SHOW_VARS,
            "history": self.history,
        }
        if self.contexts:
            names["context"] = self.contexts[0]
        for i, ctx in enumerate(self.contexts):
            names[f"context_{i}"] = ctx
        names.update(self.tools)
        return names

    def restore(self) -> None:
        """Re-bind protected names that model code overwrote (keeps a draft answer)."""
        current = self.ns.get("answer")
        if current is not self.answer and isinstance(current, dict):
            self.answer["content"] = current.get("content", self.answer["content"])
            self.answer["ready"] = bool(current.get("ready", False))
        self.ns.update(self.protected())

    def poll(self) -> dict[str, Any]:
        """After a cell: was an answer submitted, and what is the current draft."""
        current = self.ns.get("answer")
        submitted: str | None = None
        draft: str | None = None
        if isinstance(current, dict):
            if current.get("ready") is True:
                submitted = as_text(current.get("content", ""))
            content = current.get("content")
            draft = as_text(content) if content not in (None, "") else None
        if submitted is None and self.final is not None:
            submitted = self.final
        self.restore()
        return {"submitted": submitted is not None, "answer": submitted, "draft": draft}

    def reset_submission(self) -> None:
        """Clear the ready flag and FINAL slot; the draft content stays."""
        self.final = None
        self.answer["ready"] = False
        self.restore()

    def add_context(self, value: Any) -> int:
        """Append a context; returns its index."""
        self.contexts.append(value)
        self.restore()
        return len(self.contexts) - 1

    def set_history(self, history: list[Any]) -> None:
        """Replace ``history`` in place (model code holding a reference sees it)."""
        self.history[:] = list(history)
        self.restore()

    def set_tools(self, values: dict[str, Any], proxied: list[str]) -> None:
        """Bind tool values and host-proxied tool functions."""
        self.tools = dict(values)
        for name in proxied:
            self.tools[name] = self._proxy(name)
        self.restore()

    def _proxy(self, name: str) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            return self.host_call("tool", {"name": name, "args": list(args), "kwargs": kwargs})

        call.__name__ = name
        call.__doc__ = f"Custom tool {name!r} (runs on the host)."
        return call

    def user_variables(self) -> dict[str, str]:
        """Names not protected and not private, with type names."""
        skip = set(self.protected()) | {"In", "Out", "exit", "quit", "get_ipython"}
        out: dict[str, str] = {}
        for key, value in self.ns.items():
            if key.startswith("_") or key in skip:
                continue
            if type(value).__name__ == "module":
                continue
            out[key] = type(value).__name__
        return out


def _as_list(prompts: Any, fn: str) -> list[Any]:
    if isinstance(prompts, (str, bytes)):
        raise TypeError(f"{fn} takes a list of prompts, not a single string")
    try:
        return list(prompts)
    except TypeError:
        raise TypeError(f"{fn} takes a list of prompts, got {type(prompts).__name__}") from None


def install(ns: dict[str, Any], host_call: HostCall, prompt_cap: int | None = None) -> Runtime:
    """Install the REPL names into ``ns`` and return their owner.

    ``prompt_cap``: this namespace's ``max_prompt_chars`` (None: the process-wide one).
    """
    return Runtime(ns, host_call, prompt_cap)

"""The host↔kernel protocol of the kernel REPL: every name and message shape in one place.

Stdlib-only and self-contained, like ``runtime.py`` and ``kernel_agent.py``: the host
ships this file's text to the kernel (``bootstrap_code()`` in ``kernel_launch``), where it
becomes ``lmrepl_kernel.kernel_protocol``, so both sides read the same constants and the
kernel needs no lmrepl. The ``TypedDict``s document each message; at runtime they are
plain dicts carried as JSON.

**Operations (host → kernel).** The host asks the kernel's agent to do something (load
a context, create a child namespace, run a child's cell, …) with an *operation*: a dict
``{"op": <name>, "ns": <namespace>, ...}``. When the kernel is idle, the operation rides
in the metadata (under ``OP_METADATA_KEY``) of a silent ``execute_request`` on the
**shell** channel whose code is ``META_OP_CODE``; context bytes travel as the message's
first binary buffer (``"buffer": true``). The agent stores the JSON ``OpResult`` and the
host reads it back through the request's ``user_expressions`` (``OP_RESULT_EXPRESSION``).

**Requests (kernel → host).** Model code's host calls (``llm_query``, ``rlm_query``,
custom tools, see ``HOST_FUNCTIONS``) cannot use the shell channel: a cell is running.
The agent calls ``input()`` with a prompt of ``MARKER`` followed by a JSON *request*; it
arrives as an ``input_request`` on the **stdin** channel, and the host answers with an
``input_reply`` whose value is a JSON *reply*. A ``call`` request carries the function
and payload; the reply is a ``CallResult`` (or an ``AbortReply`` once the host has
interrupted the cell). A plain ``input()`` from model code (no MARKER) is answered with
an empty line.

**Instructions on pending calls.** While a cell is blocked in a host call (say
``rlm_query``, whose child REPL is a namespace in the same kernel), the shell channel is
deaf, so operations for that kernel wait on the host's queue. The host sends one as the
reply to the pending request instead of the call's result: an ``ExecInstruction``
(``"t": "exec"``). The agent runs it and reports with a ``done`` request carrying the
``OpResult``; the host replies with the next instruction or with the call's result.
Every request names the call it still waits for (``wait``); a reply for another id gets
a ``wait`` request back, so a stale reply is never taken for the result. Instructions
carry context bytes base64-encoded in ``data`` (stdin replies are text only).

**After each cell.** The agent publishes a ``display_data`` message on the **IOPub**
channel with the MIME type ``POLL_MIME`` and a ``Poll`` (was an answer submitted, the
draft); the host takes it out of the cell's output.
"""

from __future__ import annotations

from typing import Any, Final, Literal, NotRequired, TypedDict

# -- transport ----------------------------------------------------------------------
#: Starts the prompt of every kernel → host request (an ``input()`` on the stdin channel).
MARKER: Final = "\x1elmrepl:"
#: MIME type of the display message with the runtime's ``Poll`` after each cell.
POLL_MIME: Final = "application/x-lmrepl-poll+json"
#: Key in an ``execute_request``'s metadata that holds an ``Op``.
OP_METADATA_KEY: Final = "lmrepl_op"

# -- how the kernel side is installed (see ``kernel_launch.bootstrap_code``) -----------
#: The package the kernel-side modules live in, in the kernel's ``sys.modules``.
KERNEL_PACKAGE: Final = "lmrepl_kernel"
PROTOCOL_MODULE: Final = KERNEL_PACKAGE + ".kernel_protocol"
AGENT_MODULE: Final = KERNEL_PACKAGE + ".kernel_agent"
STRINGS_MODULE: Final = KERNEL_PACKAGE + ".kernel_strings"
BOUNDS_MODULE: Final = KERNEL_PACKAGE + ".kernel_bounds"
#: The runtime module (the names of SPEC §4); its name shows in reprs model code sees.
RUNTIME_MODULE: Final = "lmrepl_runtime"
# File names of shipped code; the host hides frames whose file starts with "<lmrepl-".
BOOT_FILE: Final = "<lmrepl-boot>"
PROTOCOL_FILE: Final = "<lmrepl-protocol>"
AGENT_FILE: Final = "<lmrepl-agent>"
STRINGS_FILE: Final = "<lmrepl-strings>"
BOUNDS_FILE: Final = "<lmrepl-bounds>"
RUNTIME_FILE: Final = "<lmrepl-runtime>"
#: An expression for the kernel's ``Agent`` (no name of it lands in the user namespace).
AGENT_EXPRESSION: Final = f"__import__('sys').modules[{AGENT_MODULE!r}].agent"
#: The code of an operation's execute request: run the ``Op`` in the request's metadata.
META_OP_CODE: Final = AGENT_EXPRESSION + ".meta_op()"
#: A user expression whose ``text/plain`` is the repr of the last ``OpResult``'s JSON.
OP_RESULT_EXPRESSION: Final = AGENT_EXPRESSION + ".result"

# -- operation names (``Op["op"]``) ---------------------------------------------------
OP_CONFIG: Final = "config"
OP_NEW_NS: Final = "new_ns"
OP_DROP_NS: Final = "drop_ns"
OP_CTX_FILE: Final = "ctx_file"
OP_CTX_CHUNK: Final = "ctx_chunk"
OP_CTX_END: Final = "ctx_end"
OP_TOOLS: Final = "tools"
OP_HISTORY: Final = "history"
OP_RESET: Final = "reset"
OP_VARS: Final = "vars"
OP_POLL: Final = "poll"
OP_CELL: Final = "cell"
#: Every operation the agent runs (its handler is ``Agent.op_<name>``).
OPERATIONS: Final = (
    OP_CONFIG,
    OP_NEW_NS,
    OP_DROP_NS,
    OP_CTX_FILE,
    OP_CTX_CHUNK,
    OP_CTX_END,
    OP_TOOLS,
    OP_HISTORY,
    OP_RESET,
    OP_VARS,
    OP_POLL,
    OP_CELL,
)

# -- how a context value is encoded (``CtxFileOp["kind"]``, ``CtxEndOp["kind"]``) ------
CTX_ASCII: Final = "ascii"  # an ASCII str; read straight into a new str's buffer
CTX_UTF8: Final = "utf8"  # any other str, UTF-8 encoded
CTX_BYTES: Final = "bytes"  # bytes as they are
CTX_PICKLE: Final = "pickle"  # anything else, pickled by the host
CONTEXT_KINDS: Final = (CTX_ASCII, CTX_UTF8, CTX_BYTES, CTX_PICKLE)

# -- request kinds (kernel → host, ``Request["t"]``) ----------------------------------
REQ_CALL: Final = "call"
REQ_DONE: Final = "done"
REQ_WAIT: Final = "wait"
REQUEST_KINDS: Final = (REQ_CALL, REQ_DONE, REQ_WAIT)

# -- reply kinds (host → kernel) ------------------------------------------------------
#: ``ExecInstruction["t"]``; call results and aborts have no ``t`` (told apart by keys).
REPLY_EXEC: Final = "exec"

# -- host functions (``CallRequest["fn"]``) -------------------------------------------
FN_LLM_QUERY: Final = "llm_query"
FN_LLM_QUERY_BATCHED: Final = "llm_query_batched"
FN_RLM_QUERY: Final = "rlm_query"
FN_RLM_QUERY_BATCHED: Final = "rlm_query_batched"
FN_TOOL: Final = "tool"
#: Functions that model code may call on the host; ``HostBridge.call`` receives one.
HOST_FUNCTIONS: Final = (
    FN_LLM_QUERY,
    FN_LLM_QUERY_BATCHED,
    FN_RLM_QUERY,
    FN_RLM_QUERY_BATCHED,
    FN_TOOL,
)


class QueryPayload(TypedDict):
    """``llm_query`` / ``rlm_query`` → the reply text (str)."""

    prompt: str
    model: str | None


class BatchedQueryPayload(TypedDict):
    """``llm_query_batched`` / ``rlm_query_batched`` → replies in order (list[str])."""

    prompts: list[str]
    model: str | None


class ToolPayload(TypedDict):
    """``tool``: a host-proxied custom tool call → its JSON result."""

    name: str
    args: list[Any]
    kwargs: dict[str, Any]


#: The payload shape of each host function.
HOST_FUNCTION_PAYLOADS: Final[dict[str, type]] = {
    FN_LLM_QUERY: QueryPayload,
    FN_LLM_QUERY_BATCHED: BatchedQueryPayload,
    FN_RLM_QUERY: QueryPayload,
    FN_RLM_QUERY_BATCHED: BatchedQueryPayload,
    FN_TOOL: ToolPayload,
}


# -- operation payloads (host → kernel) -----------------------------------------------
class Op(TypedDict):
    """Fields of every operation; alone, the payload of new_ns/drop_ns/reset/vars/poll."""

    op: str
    #: The namespace: 0 is the main one (the user namespace), others are children.
    ns: NotRequired[int]
    #: Set by the host on the shell path: True when bytes ride as the first buffer.
    buffer: NotRequired[bool]
    #: Bytes in base64, when an instruction carries them (the kernel is busy).
    data: NotRequired[str]


class ConfigOp(Op):
    """``config`` → ``{"pid": int}``: environment, echo cap and memory limit."""

    memory_limit_mb: int | None
    env: dict[str, str]
    display_cap: int
    #: The longest prompt one sub-call may send (the runtime refuses longer ones).
    max_prompt_chars: NotRequired[int]


class CtxFileOp(Op):
    """``ctx_file`` → the context's index: read a FIFO or private file, then unlink it."""

    path: str
    kind: str  # one of CONTEXT_KINDS
    size: int  # bytes; -1 when unknown (a UTF-8 FIFO)


class CtxChunkOp(Op):
    """``ctx_chunk`` → None: append bytes (buffer or ``data``) to the upload ``key``."""

    key: str


class CtxEndOp(Op):
    """``ctx_end`` → the context's index: decode the upload ``key`` as ``kind``."""

    key: str
    kind: str


class ToolsOp(Op):
    """``tools`` → None: tool values (base64 pickle of a dict) and proxied tool names."""

    values: str | None
    proxied: list[str]


class HistoryOp(Op):
    """``history`` → None: bind ``history``."""

    history: list[Any]


class CellOp(Op):
    """``cell`` → ``CellOutcome``: run a child namespace's cell (soft ``timeout``, s)."""

    code: str
    timeout: float | None


# -- results --------------------------------------------------------------------------
class OpResult(TypedDict):
    """What an operation returned: ``value`` when ``ok``, else ``error`` text."""

    ok: bool
    value: NotRequired[Any]
    error: NotRequired[str]


class ConfigResult(TypedDict):
    """The result of ``config``."""

    pid: int


class Poll(TypedDict):
    """A namespace's submission state (``poll``, the POLL_MIME display, cell outcomes)."""

    submitted: bool
    answer: str | None
    draft: str | None


class CellOutcome(Poll):
    """The result of ``cell``: captured streams (capped), echo, traceback, status."""

    stdout: str
    stderr: str
    display: str | None
    error: str | None
    status: Literal["ok", "error", "timeout"]


# -- requests (kernel → host, JSON after MARKER) ---------------------------------------
class Request(TypedDict):
    """Fields of every request; alone, a ``wait`` request (a reply for another call)."""

    t: str
    #: The id of the call whose result the kernel waits for.
    wait: str
    #: The msg_id of the shell request the kernel is running (informational).
    cell: str


class CallRequest(Request):
    """``call``: run host function ``fn`` for namespace ``ns``; ``id`` equals ``wait``."""

    id: str
    ns: int
    fn: str
    payload: dict[str, Any]


class DoneRequest(Request):
    """``done``: the instruction ``id`` ran, with ``result``."""

    id: str
    result: OpResult


# -- replies (host → kernel, the JSON value of an input_reply) -------------------------
class ExecInstruction(TypedDict):
    """Run ``op`` now and report it with a ``done`` request (``t`` is ``REPLY_EXEC``)."""

    t: str
    id: str
    op: Op


class CallResult(TypedDict):
    """The result of call ``id``: ``value`` when ``ok``, else ``error`` (raised in the kernel)."""

    id: str
    ok: bool
    value: NotRequired[Any]
    error: NotRequired[str]


class AbortReply(TypedDict):
    """The host interrupted the cell: the pending call raises KeyboardInterrupt."""

    id: str
    abort: bool

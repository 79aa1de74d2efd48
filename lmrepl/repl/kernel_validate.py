"""Shape and size checks for every message the host reads from a kernel (SPEC §8).

Model code in the kernel can reach ``get_ipython().kernel``, its session and sockets, so
anything a kernel sends is untrusted input: it may be malformed, of the wrong types, or
huge. The host reads each message through ``recv`` (bounded: frames past
``MAX_MESSAGE_BYTES`` are dropped unread) and checks the fields it uses with the pydantic
models below before acting on them. A message that fails is a ``BadMessage``: the driver
reports it to the model as a fault of the running cell and goes on.

Host-only: ``kernel_protocol`` is stdlib-only because it is shipped to the kernel, so the
models mirror its ``TypedDict``s here.
"""

from __future__ import annotations

import ast
import json
import threading
from typing import Annotated, Any, Literal

import zmq
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from lmrepl.repl import kernel_protocol as protocol
from lmrepl.repl.kernel_bounds import MAX_MESSAGE_BYTES

__all__ = [
    "MAX_MESSAGE_BYTES",
    "BadMessage",
    "CallRequest",
    "DoneRequest",
    "WaitRequest",
    "client_context",
    "content",
    "envelope",
    "op_result",
    "op_value",
    "poll",
    "recv",
    "request",
]

#: A Jupyter message has a few identity frames, a delimiter, a signature, four JSON
#: dicts and its buffers; the kernel never sends the host buffers.
MAX_FRAMES = 32
#: Ids, namespaces' function names and similar short strings the host keeps around.
MAX_ID_CHARS = 256


class BadMessage(ValueError):
    """A kernel message the host refuses: oversized, undecodable or of the wrong shape."""


class _Strict(BaseModel):
    # Strict: a kernel that sends "1" for a namespace or 1 for a flag is malformed, not
    # coerced. Unknown fields are ignored: only the fields the host reads are checked.
    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


_Id = Annotated[str, Field(max_length=MAX_ID_CHARS)]


# -- the envelope and the contents the driver reads ------------------------------------
class _Header(_Strict):
    msg_type: _Id


class _ParentHeader(_Strict):
    msg_id: _Id | None = None


class _Envelope(_Strict):
    header: _Header
    parent_header: _ParentHeader
    content: dict[str, Any]


class StreamContent(_Strict):
    """``stream``: text written to stdout or stderr."""

    name: str
    text: str


class StatusContent(_Strict):
    """``status``: busy / idle."""

    execution_state: str


class ExecuteReplyContent(_Strict):
    """``execute_reply``: the end of an execute request."""

    status: str
    user_expressions: dict[str, Any] = Field(default_factory=dict)


class MimeContent(_Strict):
    """``execute_result`` / ``display_data``: a MIME bundle."""

    data: dict[str, Any]


class ErrorContent(_Strict):
    """``error``: the traceback of a cell that raised."""

    ename: str
    traceback: list[str]


class InputRequestContent(_Strict):
    """``input_request``: a prompt on the stdin channel (``MARKER`` + JSON for requests)."""

    prompt: str


_CONTENTS: dict[str, type[_Strict]] = {
    "stream": StreamContent,
    "status": StatusContent,
    "execute_reply": ExecuteReplyContent,
    "execute_result": MimeContent,
    "display_data": MimeContent,
    "error": ErrorContent,
    "input_request": InputRequestContent,
}


# -- requests (kernel_protocol.Request and its kinds) -----------------------------------
class _OpResult(_Strict):
    ok: bool
    value: Any = None
    error: str | None = None


class CallRequest(_Strict):
    """``call``: run host function ``fn`` for namespace ``ns``."""

    t: Literal["call"]
    id: _Id
    wait: _Id
    cell: _Id = ""
    ns: int = Field(ge=0)
    fn: _Id
    payload: dict[str, Any]


class DoneRequest(_Strict):
    """``done``: instruction ``id`` ran with ``result``."""

    t: Literal["done"]
    id: _Id
    wait: _Id
    cell: _Id = ""
    result: _OpResult

    def op_result(self) -> protocol.OpResult:
        """The result as the protocol's plain dict."""
        return _as_op_result(self.result)


class WaitRequest(_Strict):
    """``wait``: the kernel still waits for call ``wait``."""

    t: Literal["wait"]
    wait: _Id
    cell: _Id = ""


_REQUEST: TypeAdapter[CallRequest | DoneRequest | WaitRequest] = TypeAdapter(
    Annotated[CallRequest | DoneRequest | WaitRequest, Field(discriminator="t")]
)


# -- values of operations (what ``KernelSession.op`` returns) ----------------------------
class _Poll(_Strict):
    submitted: bool
    answer: str | None
    draft: str | None


class _CellOutcome(_Poll):
    stdout: str
    stderr: str
    display: str | None
    error: str | None
    status: Literal["ok", "error", "timeout"]


class _Config(_Strict):
    pid: int


_VALUES: dict[str, TypeAdapter[Any]] = {
    protocol.OP_CONFIG: TypeAdapter(_Config),
    protocol.OP_NEW_NS: TypeAdapter(Annotated[int, Field(strict=True)]),
    protocol.OP_CTX_FILE: TypeAdapter(Annotated[int, Field(strict=True)]),
    protocol.OP_CTX_END: TypeAdapter(Annotated[int, Field(strict=True)]),
    protocol.OP_VARS: TypeAdapter(
        dict[Annotated[str, Field(strict=True)], Annotated[str, Field(strict=True)]]
    ),
    protocol.OP_POLL: TypeAdapter(_Poll),
    protocol.OP_CELL: TypeAdapter(_CellOutcome),
}


# -- checks ---------------------------------------------------------------------------
def _summary(exc: ValidationError) -> str:
    """The first problems, by field, without echoing the (attacker's) input values."""
    parts = []
    for err in exc.errors(include_url=False, include_input=False)[:3]:
        where = ".".join(str(p)[:40] for p in err.get("loc", ())) or "message"
        parts.append(f"{where}: {str(err.get('msg', 'invalid'))[:120]}")
    return "; ".join(parts)


def _check(model: type[_Strict], data: Any, what: str) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise BadMessage(f"{what}: {_summary(exc)}") from None


def envelope(msg: dict[str, Any]) -> tuple[str, str | None, dict[str, Any]]:
    """A deserialized message's ``(msg_type, parent msg_id, content)``, checked."""
    env = _check(_Envelope, msg, "message")
    return env.header.msg_type, env.parent_header.msg_id, env.content


def content(kind: str, data: dict[str, Any]) -> Any:
    """The checked content of a ``kind`` message (one of the models above)."""
    model = _CONTENTS.get(kind)
    if model is None:
        raise BadMessage(f"unexpected message type {kind[:40]!r}")
    return _check(model, data, kind)


def request(prompt: str) -> CallRequest | DoneRequest | WaitRequest:
    """The request after ``MARKER`` in an ``input_request`` prompt, checked."""
    text = prompt[len(protocol.MARKER) :]
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise BadMessage(f"host request: not JSON ({str(exc)[:80]})") from None
    if not isinstance(data, dict):
        raise BadMessage(f"host request: a JSON object was expected, got {type(data).__name__}")
    try:
        return _REQUEST.validate_python(data)
    except ValidationError as exc:
        raise BadMessage(f"host request: {_summary(exc)}") from None


def _as_op_result(result: _OpResult) -> protocol.OpResult:
    if result.ok:
        return protocol.OpResult(ok=True, value=result.value)
    return protocol.OpResult(ok=False, error=result.error or "the operation failed")


def op_result(reply: dict[str, Any], expression: str) -> protocol.OpResult:
    """The ``OpResult`` in an execute reply's user expression ``expression``, checked.

    The agent stores the result's JSON; the expression's ``text/plain`` is its repr.
    """
    shown = reply.get("user_expressions", {}).get(expression)
    if not isinstance(shown, dict) or not isinstance(shown.get("data"), dict):
        raise BadMessage("operation result: missing")
    text = shown["data"].get("text/plain")
    if not isinstance(text, str):
        raise BadMessage("operation result: no text")
    try:
        data = json.loads(ast.literal_eval(text))
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError) as exc:
        raise BadMessage(f"operation result: undecodable ({type(exc).__name__})") from None
    if data is None:
        # The agent stored no result (its meta_op never ran).
        return protocol.OpResult(ok=False, error="no result")
    return _as_op_result(_check(_OpResult, data, "operation result"))


def poll(data: Any) -> dict[str, Any]:
    """A ``Poll`` (the POLL_MIME display after a cell), checked."""
    found: dict[str, Any] = _check(_Poll, data, "poll").model_dump()
    return found


def op_value(op: str, value: Any) -> Any:
    """``value`` if it has the shape operation ``op`` returns (plain data), else raise."""
    adapter = _VALUES.get(op)
    if adapter is None:
        return value
    try:
        checked = adapter.validate_python(value, strict=True)
    except ValidationError as exc:
        raise BadMessage(f"result of {op!r}: {_summary(exc)}") from None
    return checked.model_dump() if isinstance(checked, BaseModel) else checked


# -- transport ------------------------------------------------------------------------
_context_lock = threading.Lock()
_context: zmq.Context[Any] | None = None


def client_context() -> zmq.Context[Any]:
    """The zmq context for kernel clients: sockets it makes drop oversized messages.

    ``MAXMSGSIZE`` makes libzmq refuse any inbound frame over ``MAX_MESSAGE_BYTES``
    before reading it: the connection to the kernel is dropped for good (libzmq treats
    it as a protocol error and does not reconnect), which the driver notices through a
    socket monitor and answers by replacing the kernel. One context for all clients,
    so there is no context (and IO thread) per kernel to close.
    """
    global _context
    with _context_lock:
        if _context is None or _context.closed:
            ctx: zmq.Context[Any] = zmq.Context()
            ctx.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)
            _context = ctx
        return _context


def recv(channel: Any) -> dict[str, Any] | None:
    """The channel's next message if one is waiting, else None (never blocks).

    Frames are read one at a time: once a message passes ``MAX_MESSAGE_BYTES`` in all
    (or ``MAX_FRAMES``), its remaining frames are read and dropped, so a message of many
    frames cannot land whole in memory either. Raises ``BadMessage`` for such a message
    and for one that does not decode (bad signature, bad JSON); it is consumed either way.
    """
    sock = channel.socket
    try:
        first: bytes = sock.recv(zmq.NOBLOCK)
    except zmq.Again:
        return None
    frames, total, dropped = [first], len(first), False
    # The frames of a multipart message arrive together: the rest never blocks.
    while sock.getsockopt(zmq.RCVMORE):
        part: bytes = sock.recv(zmq.NOBLOCK)
        total += len(part)
        if dropped or total > MAX_MESSAGE_BYTES or len(frames) >= MAX_FRAMES:
            dropped = True
            frames.clear()
            continue
        frames.append(part)
    if dropped:
        raise BadMessage(
            f"a message of {total:,} bytes in {MAX_FRAMES}+ parts or over the "
            f"{MAX_MESSAGE_BYTES:,}-byte limit was dropped"
        )
    try:
        _, rest = channel.session.feed_identities(frames)
        msg: dict[str, Any] = channel.session.deserialize(rest)
    except Exception as exc:
        raise BadMessage(f"undecodable message ({type(exc).__name__})") from None
    return msg

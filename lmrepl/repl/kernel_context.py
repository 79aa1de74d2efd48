"""Shipping contexts and tool values from the host to a kernel.

Two paths. For a local kernel, a str or bytes value streams through a private named
pipe (mode 0600 in the kernel's own 0700 folder) that the host writes while the kernel reads, so
neither a file copy nor a second full copy in the host exists: an ASCII str is written
straight from its own buffer and read straight into the new string's buffer; other
str go as UTF-8 encoded in chunks; bytes raw. Other values are pickled into a private
file that the kernel reads once and deletes. For a kernel elsewhere (or
``local_files=False``), the same bytes travel base64-encoded in chunks inside
operations over the Jupyter protocol: as binary message buffers on the shell
channel, or base64 inside instructions while the kernel is busy (a child's context).
"""

from __future__ import annotations

import base64
import contextlib
import io
import os
import pickle
import threading
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from lmrepl.errors import ContextError
from lmrepl.repl import kernel_protocol as protocol
from lmrepl.repl.kernel_strings import ascii_view

if TYPE_CHECKING:
    from lmrepl.repl.kernel_session import KernelSession

_CHUNK_CHARS = 1 << 20
_PROTOCOL_CHUNK = 3 << 20


def _kind(value: Any) -> str:
    if isinstance(value, str):
        return protocol.CTX_ASCII if value.isascii() else protocol.CTX_UTF8
    if isinstance(value, bytes):
        return protocol.CTX_BYTES
    return protocol.CTX_PICKLE


def _pickled(value: Any) -> bytes:
    try:
        return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:
        raise ContextError(
            f"a context of type {type(value).__name__} cannot be sent to the kernel: "
            f"it is not picklable ({exc})"
        ) from None


def _pieces(value: Any, kind: str, size: int) -> Iterator[bytes | memoryview]:
    """The value's bytes in pieces of about ``size``, without a full second copy."""
    view = ascii_view(value) if kind == protocol.CTX_ASCII else None
    if view is not None:
        # The caller keeps ``value`` alive while the pieces are written.
        for i in range(0, len(view), size):
            yield view[i : i + size]
    elif kind in (protocol.CTX_ASCII, protocol.CTX_UTF8):
        for i in range(0, len(value), size):
            yield value[i : i + size].encode("utf-8")
    elif kind == protocol.CTX_BYTES:
        view = memoryview(value)
        for i in range(0, len(view), size):
            yield view[i : i + size]
    else:
        data = _pickled(value)
        view = memoryview(data)
        for i in range(0, len(view), size):
            yield view[i : i + size]


def write_file(value: Any, folder: str) -> tuple[str, str, int]:
    """Write ``value`` to a new private file in ``folder``; returns (path, kind, size)."""
    kind = _kind(value)
    path = os.path.join(folder, f"ctx-{uuid.uuid4().hex}")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    size = 0
    try:
        with io.FileIO(fd, "w") as f:
            if kind == protocol.CTX_PICKLE:
                # Streams to the file: the pickle is never held in memory as a whole.
                try:
                    pickle.dump(value, f, protocol=pickle.HIGHEST_PROTOCOL)
                except Exception as exc:
                    raise ContextError(
                        f"a context of type {type(value).__name__} cannot be sent to the "
                        f"kernel: it is not picklable ({exc})"
                    ) from None
                size = f.tell()
            else:
                for piece in _pieces(value, kind, _CHUNK_CHARS):
                    size += f.write(piece)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise
    return path, kind, size


class _Fifo:
    """A named pipe the host writes while the kernel reads: no file copy, both at once."""

    def __init__(self, value: Any, kind: str, folder: str) -> None:
        self.path = os.path.join(folder, f"ctx-{uuid.uuid4().hex}")
        os.mkfifo(self.path, 0o600)
        self.size = len(value) if kind in (protocol.CTX_ASCII, protocol.CTX_BYTES) else -1
        self._thread = threading.Thread(
            target=self._write, args=(value, kind), name="lmrepl-context-writer", daemon=True
        )
        self._thread.start()

    def _write(self, value: Any, kind: str) -> None:
        with contextlib.suppress(OSError), open(self.path, "wb", buffering=0) as f:
            for piece in _pieces(value, kind, _CHUNK_CHARS):
                f.write(piece)

    def finish(self) -> None:
        """Unblock and end the writer (the kernel may have failed before reading)."""
        while self._thread.is_alive():
            with contextlib.suppress(OSError):
                os.close(os.open(self.path, os.O_RDONLY | os.O_NONBLOCK))
            self._thread.join(0.05)
        with contextlib.suppress(OSError):
            os.unlink(self.path)


def ship_context(
    session: KernelSession, ns: int, value: Any, *, local_files: bool, timeout: float | None
) -> int:
    """Load ``value`` as the next context of namespace ``ns``; returns its index."""
    kind = _kind(value)
    # The kernel's own private folder: a sandboxed kernel sees nothing else of the host.
    # A remote kernel (behind a gateway) has none: its contexts use the protocol.
    folder = session.handle.kernel_dir
    if local_files and folder and kind != protocol.CTX_PICKLE and hasattr(os, "mkfifo"):
        fifo = _Fifo(value, kind, folder)
        try:
            op = protocol.CtxFileOp(
                op=protocol.OP_CTX_FILE, ns=ns, path=fifo.path, kind=kind, size=fifo.size
            )
            return int(session.op(op, timeout))
        finally:
            fifo.finish()
    if local_files and folder:
        path, kind, size = write_file(value, folder)
        try:
            op = protocol.CtxFileOp(op=protocol.OP_CTX_FILE, ns=ns, path=path, kind=kind, size=size)
            return int(session.op(op, timeout))
        finally:
            with contextlib.suppress(OSError):
                os.unlink(path)  # the kernel deletes it; this covers a failed load
    key = uuid.uuid4().hex
    for piece in _pieces(value, kind, _PROTOCOL_CHUNK):
        session.op(protocol.CtxChunkOp(op=protocol.OP_CTX_CHUNK, key=key), timeout, data=piece)
    return int(
        session.op(protocol.CtxEndOp(op=protocol.OP_CTX_END, ns=ns, key=key, kind=kind), timeout)
    )


def tool_values(tools: dict[str, Any]) -> tuple[str | None, list[str]]:
    """Split tools into a pickled dict of values (base64) and the names of callables."""
    proxied = sorted(name for name, v in tools.items() if callable(v))
    values = {name: v for name, v in tools.items() if not callable(v)}
    if not values:
        return None, proxied
    try:
        blob = pickle.dumps(values, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:
        raise ContextError(f"custom tool values cannot be sent to the kernel: {exc}") from None
    return base64.b64encode(blob).decode("ascii"), proxied

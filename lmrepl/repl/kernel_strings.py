"""Zero-copy access to the characters of an ASCII ``str`` (CPython), for big contexts.

Stdlib-only: the host uses it to write a context from its own buffer, and the kernel
(which gets this file's source as ``lmrepl_kernel.kernel_strings``) to read one straight
into a new string's buffer, so a 100 MB context exists once on each side.
"""

from __future__ import annotations

import ctypes
import os
import sys


def str_data_offset() -> int | None:
    """Where a compact ASCII str keeps its characters (CPython), verified, or None."""
    if sys.implementation.name != "cpython":
        return None
    try:
        offset = sys.getsizeof("") - 1
        probe = "lmrepl-probe-" + str(os.getpid())
        if ctypes.string_at(id(probe) + offset, len(probe)) != probe.encode():
            return None
        new = ctypes.pythonapi.PyUnicode_New
        new.restype = ctypes.py_object
        new.argtypes = [ctypes.c_ssize_t, ctypes.c_uint32]
        return offset
    except Exception:
        return None


#: This interpreter's offset (None: not CPython, or the layout was not as expected).
ASCII_OFFSET = str_data_offset()


def ascii_view(value: str) -> memoryview | None:
    """A view of an ASCII str's characters without copying them, or None.

    The caller keeps ``value`` alive while it uses the view.
    """
    if ASCII_OFFSET is None or not value:
        return None
    buf = (ctypes.c_char * len(value)).from_address(id(value) + ASCII_OFFSET)
    return memoryview(buf).cast("B")


def read_ascii(path: str, size: int) -> str | None:
    """Read an ASCII file straight into a new str's buffer (one copy in memory), or None
    when this interpreter cannot."""
    if ASCII_OFFSET is None:
        return None
    text: str = ctypes.pythonapi.PyUnicode_New(size, 127)
    buf = (ctypes.c_char * size).from_address(id(text) + ASCII_OFFSET)
    view = memoryview(buf).cast("B")
    with open(path, "rb", buffering=0) as f:
        got = 0
        while got < size:
            n = f.readinto(view[got:])
            if not n:
                raise EOFError(f"context file ended after {got} of {size} bytes")
            got += n
    return text

"""Traceback text for the model: only the frames of its own code, no ANSI colours."""

from __future__ import annotations

import os
import re
import traceback

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")

#: File name given to compiled cells, so their frames can be told from ours.
CELL_FILENAME = "<cell>"

# Frames inside lmrepl itself (the runtime behind llm_query, the REPL) mean nothing
# to the model; only its own code and the libraries it called are shown.
_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def strip_ansi(text: str) -> str:
    """Remove terminal colour codes."""
    return _ANSI.sub("", text)


def format_cell_exception(exc: BaseException, source: str) -> str:
    """A traceback that starts at the first frame of the cell's own code."""
    frames = traceback.extract_tb(exc.__traceback__)
    start = next((i for i, f in enumerate(frames) if f.filename == CELL_FILENAME), None)
    lines = source.splitlines()
    out = ["Traceback (most recent call last):"]
    if start is not None:
        for f in frames[start:]:
            if f.filename == CELL_FILENAME:
                lineno = f.lineno or 0
                out.append(f"  Cell line {lineno}, in {f.name}")
                if 0 < lineno <= len(lines):
                    out.append(f"    {lines[lineno - 1].strip()}")
            elif not os.path.abspath(f.filename).startswith(_PACKAGE_DIR + os.sep):
                out.append(f'  File "{f.filename}", line {f.lineno}, in {f.name}')
                if f.line:
                    out.append(f"    {f.line.strip()}")
    out.extend(traceback.format_exception_only(type(exc), exc))
    return strip_ansi("\n".join(s.rstrip("\n") for s in out))

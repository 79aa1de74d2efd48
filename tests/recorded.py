"""The event logs and records recorded from real runs (tests/files/record_events.py)."""

from __future__ import annotations

import json
from pathlib import Path

from lmrepl.events import Event
from lmrepl.logger import read_log
from lmrepl.records import SearchRecord, parse_record

FILES = Path(__file__).resolve().parent / "files"


def events(name: str) -> list[Event]:
    """The events of recorded run ``name`` (srlm_search, rlm_run, srlm_direct)."""
    return read_log(FILES / f"{name}.jsonl")


def record(name: str) -> SearchRecord:
    """The record the engine returned for recorded run ``name``."""
    return parse_record(json.loads((FILES / f"{name}.record.json").read_text("utf-8")))


def until(evs: list[Event], stop: type[Event], candidate: int | None = None) -> list[Event]:
    """``evs`` up to and including the first ``stop`` event (of ``candidate``, if given)."""
    for i, event in enumerate(evs):
        if isinstance(event, stop) and (candidate is None or event.candidate == candidate):
            return evs[: i + 1]
    raise AssertionError(f"no {stop.__name__} in the recorded events")

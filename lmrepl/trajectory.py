"""A saved search record: one JSON document per run, readable without lmrepl running.

The document follows the trajectory schema (version "1", docs/trajectory-schema.md)
that the notebook extension also writes, so a file saved by a script opens in the
same viewers as a notebook's ``application/vnd.lmrepl.trajectory+json`` output.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from lmrepl.types import RLMChatCompletion

SCHEMA_VERSION = "1"


def trajectory_document(
    result: RLMChatCompletion,
    *,
    backend: str,
    environment: str,
    n_candidates: int = 1,
    candidate_parallel: int = 1,
) -> dict[str, Any]:
    """The schema-1 record of an ``RLM``/``SRLM`` result."""
    meta = result.metadata
    usage = result.usage_summary
    if "candidates" in meta:
        kind = "srlm"
        candidates = meta["candidates"]
        clusters = meta.get("clusters", [])
        winner = meta.get("winner")
    else:  # a single RLM trajectory is candidate 0
        kind = "rlm"
        candidates = [
            {
                "index": 0,
                "status": "done" if result.response else "failed",
                "answer": result.response or None,
                "steps": meta.get("steps", []),
                "length": meta.get("length", 0),
            }
        ]
        clusters = [{"answer": result.response, "members": [0], "votes": 1}]
        winner = 0 if result.response else None
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": kind,
        "question": meta.get("question", ""),
        "context_info": meta.get("context_info"),
        "mode": meta.get("mode", "rlm"),
        "status": "done" if winner is not None else "failed",
        "answer": result.response or None,
        "winner": winner,
        "backend": backend,
        "model": result.root_model,
        "environment": environment,
        "n_candidates": n_candidates,
        "candidate_parallel": candidate_parallel,
        "finished_at": time.time(),
        "execution_time": result.execution_time,
        "model_calls": usage.total_calls,
        "input_tokens": usage.total_input_tokens,
        "output_tokens": usage.total_output_tokens,
        "cost": usage.total_cost,
        "usage": usage.to_dict(),
        "clusters": clusters,
        "candidates": candidates,
    }


def save_trajectory(document: dict[str, Any], path: str | Path) -> Path:
    """Write ``document`` as JSON (parent folders created)."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(document, indent=1, default=str), encoding="utf-8")
    return out

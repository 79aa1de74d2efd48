"""The embedded model on needle-in-a-haystack tasks (SPEC §10, issue: local model).

    .venv/bin/python benchmarks/local_model.py [--tasks 20] [--k 4] [--environment kernel]

Each task hides one line "The secret code is NNNN." in 8K–64K characters of filler
and asks for the code. For a plain RLM and an SRLM with K candidates it prints the
share of runs that submitted an answer, the share that were right, the model's
output tokens per second, and the wall time per run.
"""

from __future__ import annotations

import argparse
import random
import re
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from _common import table

from lmrepl import RLM, SRLM, LMReplError
from lmrepl.events import Event, ModelCallFinished

WORDS = [
    "river",
    "stone",
    "cloud",
    "maple",
    "quiet",
    "amber",
    "lantern",
    "harbor",
    "meadow",
    "copper",
]


def make_task(rng: random.Random, size: int) -> tuple[str, str]:
    """(context, code) with the needle at a random line."""
    lines = []
    total = 0
    while total < size:
        line = " ".join(rng.choice(WORDS) for _ in range(9)) + "."
        lines.append(line)
        total += len(line) + 1
    code = str(rng.randint(1000, 9999))
    lines[rng.randrange(len(lines))] = f"The secret code is {code}."
    return "\n".join(lines), code


def is_right(answer: str | None, code: str) -> bool:
    """The answer names the code and little else (submitting the context is not right)."""
    return answer is not None and len(answer) <= 64 and code in re.findall(r"\d+", answer)


def run_one(kind: str, k: int, env: str, context: str) -> tuple[str | None, float, int, float]:
    """(answer or None, wall s, output tokens, seconds inside model calls)."""
    common: dict[str, Any] = {
        "backend": "local",
        "backend_kwargs": {"max_tokens_default": 200},
        "environment": env,
        "environment_kwargs": {"cell_timeout": 30},
        "max_iterations": 4,
        "max_timeout": 900,
    }
    model_time = 0.0

    def on_event(e: Event) -> None:
        nonlocal model_time
        if isinstance(e, ModelCallFinished):
            model_time += e.duration

    if kind == "rlm":
        runner: RLM = RLM(**common)
    else:
        runner = SRLM(
            n_candidates=k,
            candidate_parallel=k,
            candidate_temperature=0.7,
            confidence_elicitation=True,
            **common,
        )
    runner.subscribe(on_event)
    started = time.perf_counter()
    try:
        result = runner.completion(context, "What is the secret code? Answer with the number.")
        answer: str | None = result.response or None
        tokens = result.usage_summary.total_output_tokens
    except LMReplError as exc:
        answer = None
        tokens = (
            getattr(exc, "usage", None).total_output_tokens if getattr(exc, "usage", None) else 0
        )
    finally:
        runner.close()
    return answer, time.perf_counter() - started, tokens, model_time


def main(argv: list[str] | None = None) -> None:
    """Print the table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=20)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--environment", default="kernel")
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    sizes = [8_000 + (56_000 * i) // max(args.tasks - 1, 1) for i in range(args.tasks)]
    tasks = [make_task(rng, s) for s in sizes]
    rows = []
    for kind in ("rlm", "srlm"):
        submitted = right = tokens = 0
        wall = model = 0.0
        for context, code in tasks:
            answer, w, t, m = run_one(kind, args.k, args.environment, context)
            submitted += answer is not None
            right += is_right(answer, code)
            tokens += t
            wall += w
            model += m
            shown = answer if answer is None or len(answer) <= 60 else answer[:57] + "..."
            print(f"{kind} {len(context):>6} chars: {shown!r} (want {code}) {w:.1f} s", flush=True)
        n = len(tasks)
        label = "RLM" if kind == "rlm" else f"SRLM K={args.k}"
        rows.append(
            [
                label,
                f"{submitted / n:.0%}",
                f"{right / n:.0%}",
                f"{tokens / max(wall, 1e-9):.1f}",
                f"{wall / n:.1f} s",
            ]
        )
    table(
        f"Embedded model, {len(tasks)} needle tasks of 8K–64K characters ({args.environment})",
        ["runner", "submitted", "right", "output tok/s (wall)", "wall per run"],
        rows,
    )


if __name__ == "__main__":
    main()

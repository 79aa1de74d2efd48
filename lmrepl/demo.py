"""``make demo``: an SRLM search on the embedded local model, offline.

    python -m lmrepl.demo [--candidates 5] [--lines 1500] [--environment kernel]

It generates a long service log, asks how many of its lines are errors, and runs
K candidate trajectories in parallel with live progress, then prints the
candidates, the answer clusters, the VC·Len scores and the winner, whether the
winner is right against the known count, and writes the whole search to ``runs/``
(a trajectory JSON file and per-candidate JSONL logs).

The embedded model (Qwen2.5-Coder-0.5B) is small: 22 of 50 of its single
trajectories got this count right, and the search over five of them was right in
8 of 10 runs (measured on 2 cores; notebook 02 says more). Point ``--backend openai --model
NAME`` at a real model to compare.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

from rich.console import Console

from lmrepl.errors import AllCandidatesFailed, LMReplError
from lmrepl.eval.scoring import first_number
from lmrepl.logger import RLMLogger
from lmrepl.progress import TerminalProgress
from lmrepl.records import SearchRecord
from lmrepl.srlm import SRLM

SERVICES = ("api", "auth", "billing", "search", "worker")
MESSAGES = (
    "request served",
    "cache hit",
    "cache miss",
    "connection reused",
    "job finished",
    "health check passed",
)


def make_log(lines: int, errors: int, seed: int = 7) -> str:
    """A synthetic service log with exactly ``errors`` lines at level ERROR."""
    rng = random.Random(seed)
    error_at = set(rng.sample(range(lines), errors))
    out = []
    for i in range(lines):
        ts = f"2026-11-30 {8 + i // 3600:02d}:{i // 60 % 60:02d}:{i % 60:02d}"
        service = rng.choice(SERVICES)
        if i in error_at:
            out.append(f"{ts} ERROR service={service} request failed: upstream timeout")
        else:
            level = rng.choice(("INFO", "INFO", "INFO", "DEBUG", "WARN"))
            out.append(f"{ts} {level} service={service} {rng.choice(MESSAGES)}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    """Run the demo; returns the process exit code."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--candidates", type=int, default=5, help="K candidate trajectories")
    parser.add_argument("--lines", type=int, default=1500, help="lines in the generated log")
    parser.add_argument("--environment", default="kernel", choices=("kernel", "local"))
    parser.add_argument("--backend", default="local", help="model backend (default: embedded)")
    parser.add_argument("--model", default=None, help="model name for --backend openai/anthropic")
    # Five turns, the last of which asks for the answer (max_iterations counts it).
    parser.add_argument("--max-iterations", type=int, default=5)
    parser.add_argument("--out", default="runs", help="folder for the trajectory and logs")
    args = parser.parse_args(argv)
    console = Console()
    errors = max(3, args.lines // 60)
    log = make_log(args.lines, errors)
    question = "How many lines of the log contain the word ERROR? Answer with a number."
    console.print(
        f"[bold]lmrepl demo[/]: {args.candidates} candidates in parallel on the "
        f"{'embedded local model' if args.backend == 'local' else args.backend} over a "
        f"{len(log):,}-character log.\nQuestion: {question}\n"
    )
    out_dir = Path(args.out)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    logger = RLMLogger(out_dir, file_name=f"demo-{stamp}")
    backend_kwargs = {"model_name": args.model} if args.model else {}
    srlm = SRLM(
        backend=args.backend,
        backend_kwargs=backend_kwargs,
        environment=args.environment,
        environment_kwargs={"cell_timeout": 30},
        n_candidates=args.candidates,
        candidate_parallel=args.candidates,
        candidate_temperature=0.7,
        confidence_elicitation=True,
        max_iterations=args.max_iterations,
        max_timeout=900,
        logger=logger,
    )
    progress = TerminalProgress(console=console)
    srlm.subscribe(progress)
    started = time.perf_counter()
    record: SearchRecord | None
    try:
        result = srlm.completion(log, question)
        record, answer = result.record, result.response
    except AllCandidatesFailed as exc:
        record, answer = exc.record, None
    except LMReplError as exc:
        progress.close()
        console.print(f"[red]The demo could not run:[/] {exc}")
        return 1
    finally:
        progress.close()
        logger.close()
        srlm.close()
    elapsed = time.perf_counter() - started
    if answer is None:
        console.print(
            "\n[yellow]No candidate submitted an answer[/] — the small model often fails;"
        )
        console.print("that is what the recorded trajectories show. Try again or use a real model.")
    else:
        correct = first_number(answer) == errors
        verdict = (
            f"[green]right[/] (the log has {errors})"
            if correct
            else f"[yellow]wrong[/] (the log has {errors})"
        )
        console.print(f"\nWinning answer: [bold]{answer}[/] — {verdict}")
    if record is not None:
        path = record.save(out_dir / f"demo-trajectory-{stamp}.json")
        console.print(f"Trajectory: {path}")
        # One unbroken line, so the command can be copied as it is.
        console.print(f"See it in a browser: .venv/bin/lmrepl view --open {path}", soft_wrap=True)
        console.print("(or in JupyterLab: right-click the file → Open With → lmrepl trajectory)")
    console.print(f"Event logs: {', '.join(str(p) for p in logger.paths)}")
    console.print(f"Wall time: {elapsed:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

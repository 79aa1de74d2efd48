"""Command line for the embedded model: ``python -m lmrepl.local {serve,path,check}``.

``lmrepl serve`` and ``lmrepl model ...`` (:mod:`lmrepl.cli`) reuse these commands.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from collections.abc import Sequence
from types import FrameType
from typing import TYPE_CHECKING

from lmrepl.errors import ConfigurationError

if TYPE_CHECKING:
    from lmrepl.local.server import LocalServer

__all__ = [
    "PASTE_PREFIX",
    "add_model_commands",
    "add_serve_arguments",
    "backend_arguments",
    "main",
    "run_check",
    "run_path",
    "run_serve",
]


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``serve``."""
    parser.add_argument("--port", type=int, default=0, help="TCP port (default: a free one)")
    parser.add_argument("--parallel", type=int, default=4, help="parallel slots (default 4)")
    parser.add_argument("--ctx", type=int, default=8192, help="context tokens per slot (8192)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: all)")
    parser.add_argument("--model", default=None, help="a GGUF file (default: the embedded model)")
    parser.add_argument(
        "--model-name", default=None, help="name the server reports (default: the model's)"
    )
    parser.add_argument(
        "--api-key",
        default=None,
        help="require this bearer token (default: a random one, printed; '' for none)",
    )
    parser.add_argument("--verbose", action="store_true", help="show llama.cpp's log")
    parser.set_defaults(func=run_serve)


#: How ``serve``'s paste line starts (the rest is ``backend_kwargs``' dict literal).
PASTE_PREFIX = 'backend="openai", backend_kwargs='


def backend_arguments(server: LocalServer) -> str:
    """The ``backend=..., backend_kwargs={...}`` text that points an RLM at ``server``.

    ``backend_kwargs`` is a dict literal (``ast.literal_eval`` reads it). A server that
    requires no key still gets a placeholder: the OpenAI SDK refuses an empty one.
    """
    from lmrepl.clients.openai import PLACEHOLDER_API_KEY

    kwargs = {
        "model_name": server.model_name,
        "base_url": server.base_url,
        "api_key": server.api_key or PLACEHOLDER_API_KEY,
    }
    return PASTE_PREFIX + json.dumps(kwargs)


def add_model_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``path`` and ``check`` to ``subparsers``."""
    path = subparsers.add_parser("path", help="join the model if needed and print its path")
    path.add_argument("--cache-dir", default=None, help="cache directory (default: XDG cache)")
    path.set_defaults(func=run_path)
    check = subparsers.add_parser("check", help="hash the joined model again (rebuild if bad)")
    check.add_argument("--cache-dir", default=None, help="cache directory (default: XDG cache)")
    check.set_defaults(func=run_check)


def run_serve(args: argparse.Namespace) -> int:
    """Serve in the foreground until Ctrl-C or SIGTERM."""
    from lmrepl.local.server import LocalServer
    from lmrepl.local.weights import MODEL_NAME

    name = args.model_name or (MODEL_NAME if args.model is None else _stem(args.model))
    server = LocalServer(
        args.model,
        n_parallel=args.parallel,
        n_ctx=args.ctx,
        n_threads=args.threads,
        port=args.port,
        api_key=args.api_key,
        model_name=name,
        verbose=args.verbose,
    )
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = signal.signal(signal.SIGTERM, on_signal)
    try:
        server.start()
        print(f"serving {server.model_name} ({server.model_path})", flush=True)
        print(f"base URL: {server.base_url}", flush=True)
        if server.api_key:
            print(f"API key: {server.api_key}", flush=True)
        print(
            f"{server.n_parallel} slots x {server.n_ctx} tokens, {server.n_threads} threads, "
            f"loaded in {server.load_seconds or 0.0:.1f} s; Ctrl-C stops",
            flush=True,
        )
        # What a user pastes: the name the server reports in /v1/models, and the rest.
        print(f"model name: {server.model_name}", flush=True)
        print("in RLM(...) or SRLM(...):", flush=True)
        print(backend_arguments(server), flush=True)
        # Short waits keep the main thread responsive to Ctrl-C.
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.stop()
    print("stopped", flush=True)
    return 0


def run_path(args: argparse.Namespace) -> int:
    """Print the joined model's path, joining and verifying it first if needed."""
    from lmrepl.local.weights import ensure_model

    print(ensure_model(args.cache_dir))
    return 0


def run_check(args: argparse.Namespace) -> int:
    """Hash the joined model again; rebuild it from the parts if it does not match."""
    from lmrepl.local.weights import MODEL_SHA256, MODEL_SIZE, verify_model

    started = time.perf_counter()
    path = verify_model(args.cache_dir)
    elapsed = time.perf_counter() - started
    print(f"ok: {path} ({MODEL_SIZE:,} bytes, sha256 {MODEL_SHA256}) verified in {elapsed:.1f} s")
    return 0


def _stem(path: str) -> str:
    name = path.replace("\\", "/").rsplit("/", 1)[-1]
    return name[: -len(".gguf")] if name.lower().endswith(".gguf") else name


def build_parser(prog: str = "python -m lmrepl.local") -> argparse.ArgumentParser:
    """The parser of ``python -m lmrepl.local``."""
    parser = argparse.ArgumentParser(prog=prog, description="The embedded model (SPEC §10).")
    sub = parser.add_subparsers(dest="command", required=True)
    add_serve_arguments(sub.add_parser("serve", help="serve the model (OpenAI-compatible API)"))
    add_model_commands(sub)
    return parser


def dispatch(args: argparse.Namespace) -> int:
    """Run the command chosen in ``args``; a setup problem prints one line and returns 1."""
    try:
        code: int = args.func(args)
    except (ConfigurationError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m lmrepl.local``."""
    return dispatch(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())

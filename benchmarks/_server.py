"""A ScriptedServer in its own process, so a benchmark's client does not share its GIL.

    python benchmarks/_server.py --latency 0.2 --reply r

Prints the base URL on the first line, serves until stdin closes.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

from lmrepl.testing import ScriptedServer


def main() -> None:
    """Serve a fixed reply with a fixed latency until stdin closes."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--reply", default="r")
    args = parser.parse_args()
    reply = args.reply
    with ScriptedServer(responder=lambda req: reply, latency=args.latency) as server:
        print(server.base_url, flush=True)
        sys.stdin.read()


class ServerProcess:
    """Start ``_server.py`` as a child process; ``base_url`` once it listens."""

    def __init__(self, latency: float, reply: str = "r") -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--latency", str(latency), "--reply", reply],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.base_url = self.proc.stdout.readline().strip()

    def close(self) -> None:
        """Stop the server process."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(10)

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


if __name__ == "__main__":
    main()

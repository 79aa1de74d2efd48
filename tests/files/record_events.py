"""Record the event fixtures in this folder from real runs.

    .venv/bin/python tests/files/record_events.py

Each fixture is the main JSONL log that ``RLMLogger`` wrote while the real engine ran
against the loopback scripted model server, in the kernel REPL:

- ``srlm_search.jsonl``: an SRLM search, K=3 run one at a time with confidence
  elicitation. Candidate 0 measures the context, calls ``llm_query`` and a child RLM
  (``rlm_query``) and answers 42; candidate 1 answers 42.0 in fewer tokens; candidate 2
  fails (the server answers HTTP 500). The 42 cluster wins by VC·Len.
- ``rlm_run.jsonl``: one RLM trajectory whose first cell times out (a REPL notice) and
  whose second submits.
- ``srlm_direct.jsonl``: an SRLM whose short context gets one direct model call.

Run it again whenever the event or record models change; the tests read these files
and check them against the records the engine returned (saved next to them as
``*.record.json``).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import threading
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from engine_helpers import backend, repl  # noqa: E402

from lmrepl import RLM, SRLM  # noqa: E402
from lmrepl.logger import RLMLogger  # noqa: E402
from lmrepl.records import SearchRecord  # noqa: E402
from lmrepl.testing import ScriptedReply, ScriptedRequest, ScriptedServer  # noqa: E402

CONTEXT = "The answer to the question is hidden in this text: forty-two.\n" * 3

ROOT_PLANS: list[list[str | ScriptedReply]] = [
    [
        repl("n = len(context)\nprint(n)", 70),
        repl(
            "hint = llm_query('Say hi.')\nprint(hint)\n"
            "sub = rlm_query('What is 6 * 7?')\nprint(sub)",
            80,
        ),
        repl("FINAL(42)", 90),
    ],
    [repl("print(context[:40])", 60), repl("FINAL('42.0')", 95)],
    [ScriptedReply(status=500, text="the model server broke")],
]


def search_responder() -> object:
    """Root requests follow ROOT_PLANS candidate by candidate; sub-calls get short replies."""
    lock = threading.Lock()
    state = {"candidate": -1}

    def respond(req: ScriptedRequest) -> str | ScriptedReply:
        system = str(req.messages[0].get("content", "")) if req.messages else ""
        if req.messages[0].get("role") != "system":
            return "Hi."  # llm_query
        if "helper working on one sub-task" in system:
            return repl("FINAL(6 * 7)")  # the child RLM
        turn = sum(1 for m in req.messages if m.get("role") == "assistant")
        with lock:
            if turn == 0:  # a new candidate (the failing one's retries stay on it)
                state["candidate"] = min(state["candidate"] + 1, len(ROOT_PLANS) - 1)
            plan = ROOT_PLANS[state["candidate"]]
        return plan[min(turn, len(plan) - 1)]

    return respond


def record(name: str, run: object, server: ScriptedServer) -> None:
    """Run ``run(logger)`` and keep its log and its returned record under ``name``."""
    tmp = Path(tempfile.mkdtemp())
    logger = RLMLogger(tmp, file_name=name)
    try:
        result: SearchRecord = run(logger)  # type: ignore[operator]
    finally:
        logger.close()
    shutil.copy(logger.path, HERE / f"{name}.jsonl")
    (HERE / f"{name}.record.json").write_text(result.to_json(), encoding="utf-8")
    shutil.rmtree(tmp)
    print(f"{name}: {logger.events_written} events")


def main() -> None:
    with ScriptedServer() as server:
        server.script(responder=search_responder())  # type: ignore[arg-type]

        def search(logger: RLMLogger) -> SearchRecord:
            srlm = SRLM(
                **backend(server),
                environment="kernel",
                n_candidates=3,
                candidate_parallel=1,
                confidence_elicitation=True,
                logger=logger,
            )
            with srlm:
                result = srlm.completion(CONTEXT, "What is the answer?")
            assert result.record is not None
            return result.record

        record("srlm_search", search, server)

        server.script([repl("import time\ntime.sleep(30)"), repl("print('short')\nFINAL('done')")])

        def rlm_run(logger: RLMLogger) -> SearchRecord:
            rlm = RLM(
                **backend(server),
                environment="kernel",
                environment_kwargs={"cell_timeout": 1},
                logger=logger,
            )
            with rlm:
                result = rlm.completion(CONTEXT, "Does it finish?")
            assert result.record is not None
            return result.record

        record("rlm_run", rlm_run, server)

        server.script(["Forty-two."])

        def direct(logger: RLMLogger) -> SearchRecord:
            srlm = SRLM(**backend(server), direct_threshold=10_000, logger=logger)
            with srlm:
                result = srlm.completion(CONTEXT, "What is the answer?")
            assert result.record is not None
            return result.record

        record("srlm_direct", direct, server)


if __name__ == "__main__":
    main()

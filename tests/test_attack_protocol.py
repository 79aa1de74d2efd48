"""Attacks on the host↔kernel protocol by model code (SPEC §8, issue 10): every message
from a kernel is untrusted input.

Model code can reach ``get_ipython().kernel``, its session and its sockets, so it can
send the host any Jupyter message: malformed ones, huge ones, floods of host calls,
terminal escapes. Each attack runs through the real engine: the scripted model's first
reply is a ```` ```repl ```` block holding the attack (it prints ``REPORT <json>`` where
it can); its second reply submits ``FINAL('survived')``. Each test asserts the secure
outcome, that the model was told what happened, and that the run went on.
"""

from __future__ import annotations

from typing import Any

import pytest
from attack_helpers import RAW_CHANNELS, peak_growth, report_in
from engine_helpers import is_root, last_user, make_rlm, repl, turns

from lmrepl.repl.kernel_bounds import MAX_MESSAGE_BYTES
from lmrepl.testing import ScriptedRequest, ScriptedServer
from lmrepl.types import RLMChatCompletion

SURVIVED = "survived"
#: Host memory an attack may add at its peak (the attacks send 200 MB).
MAX_GROWTH_MB = 100

RAW = RAW_CHANNELS


def _attack(
    server: ScriptedServer, code: str, environment: str = "kernel", **kwargs: Any
) -> tuple[RLMChatCompletion, dict[str, Any], str]:
    """Run ``code`` as the model's first cell; the result, its REPORT and what the model
    was shown after the cell. Sub-calls (not the root's) are answered "sub"."""

    def responder(req: ScriptedRequest) -> str:
        if not is_root(req):
            return "sub"
        return repl(code) if turns(req) == 0 else repl(f"FINAL({SURVIVED!r})")

    server.script(responder=responder)
    rlm = make_rlm(server, environment=environment, **kwargs)
    result = rlm.completion("attack context", root_prompt="What is in the context?")
    second = [r for r in server.model_requests() if is_root(r) and turns(r) == 1]
    shown = last_user(second[0]) if second else ""
    return result, report_in(shown), shown


# -- malformed messages: a fault of the cell, never an exception out of completion() ----
MALFORMED = {
    "bad JSON in a host call": (
        'ask(protocol.MARKER + \'{"t": "call", "id": \')\n'
        "print('REPORT ' + json.dumps({'reply': answer()}))",
        "host request: not JSON",
    ),
    "a JSON list for a host call": (
        "ask(protocol.MARKER + json.dumps(['call', 'c1']))\n"
        "print('REPORT ' + json.dumps({'reply': answer()}))",
        "a JSON object was expected, got list",
    ),
    "a namespace given as a string": (
        "ask(call('c1').replace('\"ns\": 0', '\"ns\": \"0\"'))\n"
        "print('REPORT ' + json.dumps({'reply': answer()}))",
        "host request: call.ns: Input should be a valid integer",
    ),
    "a prompt that is not a string": (
        "ask(5)\nprint('REPORT ' + json.dumps({'reply': answer()}))",
        "input_request: prompt: Input should be a valid string",
    ),
    "a stream message without text": (
        "iopub('stream', {'name': 'stdout'})\nprint('REPORT ' + json.dumps({'sent': True}))",
        "stream: text: Field required",
    ),
    "a status of the wrong type": (
        "iopub('status', {'execution_state': 5})\nprint('REPORT ' + json.dumps({'sent': True}))",
        "status: execution_state: Input should be a valid string",
    ),
    "an echo that is not text": (
        "iopub('execute_result', {'data': {'text/plain': 7}, 'metadata': {},"
        " 'execution_count': 1})\nprint('REPORT ' + json.dumps({'sent': True}))",
        "execute_result: text/plain must be a string",
    ),
    "a submission of the wrong shape": (
        "iopub('display_data', {'data': {protocol.POLL_MIME: {'submitted': 'yes'}},"
        " 'metadata': {}})\nprint('REPORT ' + json.dumps({'sent': True}))",
        "poll: submitted: Input should be a valid boolean",
    ),
}


@pytest.mark.parametrize("attack", list(MALFORMED), ids=list(MALFORMED))
def test_malformed_messages_are_faults_of_the_cell(
    scripted_server: ScriptedServer, attack: str
) -> None:
    code, fault = MALFORMED[attack]
    result, report, shown = _attack(scripted_server, RAW + code)
    # Today's failure: the host raised out of completion().
    assert result.response == SURVIVED
    assert report, shown  # the cell ran on after the bad message
    assert "[lmrepl] the kernel sent a malformed message" in shown
    assert fault in shown
    if "reply" in report:
        # Whoever waited on stdin got an answer instead of hanging.
        assert report["reply"] is not None
    assert "kernel was stopped" not in shown  # a bad message costs no restart


def test_unknown_namespace_gets_an_error_result(scripted_server: ScriptedServer) -> None:
    code = RAW + (
        "ask(call('c1', ns=99))\nreply = json.loads(answer())\nprint('REPORT ' + json.dumps(reply))"
    )
    result, report, shown = _attack(scripted_server, code)
    assert result.response == SURVIVED
    assert report["id"] == "c1" and report["ok"] is False
    assert report["error"] == "there is no namespace 99"
    assert "[lmrepl] a host call was refused: there is no namespace 99" in shown
    assert [r for r in scripted_server.model_requests() if not is_root(r)] == []


# -- one host call in flight per namespace ------------------------------------------------
FLOOD = """
ids = [f'raw{i}' for i in range(40)]
for cid in ids:
    ask(call(cid, payload={'prompt': 'RAW ' + cid, 'model': None}))
got = {}
end = time.monotonic() + 60
while len(got) < len(ids) and time.monotonic() < end:
    ask(protocol.MARKER + json.dumps({'t': 'wait', 'cell': '',
        'wait': next(c for c in ids if c not in got)}))
    value = answer(5)
    reply = json.loads(value) if value else None
    if isinstance(reply, dict) and reply.get('id') in ids:
        got[reply['id']] = reply
errors = [r['error'] for r in got.values() if not r['ok']]
print('REPORT ' + json.dumps({'answered': len(got), 'ok': len(got) - len(errors),
                              'errors': errors[:1]}))
"""


def test_forty_raw_host_calls_run_one_at_a_time(scripted_server: ScriptedServer) -> None:
    def responder(req: ScriptedRequest) -> str:
        if not is_root(req):
            # Held while alone: a second call let through meanwhile shows in the peak.
            scripted_server.hold_at_peak(1, grace=2.0, timeout=10.0)
            return "sub"
        return repl(RAW + "import time\n" + FLOOD) if turns(req) == 0 else repl("FINAL('done')")

    scripted_server.concurrency_filter = lambda req: not is_root(req)
    scripted_server.script(responder=responder)
    rlm = make_rlm(scripted_server, environment="kernel")
    result = rlm.completion("attack context", root_prompt="What is in the context?")
    second = [r for r in scripted_server.model_requests() if is_root(r) and turns(r) == 1]
    shown = last_user(second[0])
    report = report_in(shown)
    assert result.response == "done"
    # Every call got its own answer; all but the first were refused without running.
    assert report["answered"] == 40, shown
    assert report["ok"] >= 1
    assert "already has a host call running" in report["errors"][0]
    subcalls = [r for r in scripted_server.model_requests() if not is_root(r)]
    assert len(subcalls) == report["ok"]
    assert scripted_server.peak_concurrency == 1
    assert "[lmrepl] a host call was refused: namespace 0 already has" in shown


# -- bounded memory whatever a cell sends -----------------------------------------------
def test_a_200_mb_print_is_bounded_in_the_kernel(scripted_server: ScriptedServer) -> None:
    code = "print('a' + 'x' * 200_000_000 + 'z')\nprint('REPORT ' + json.dumps({'after': 1}))"
    with peak_growth() as grew:
        result, report, shown = _attack(scripted_server, "import json\n" + code)
    # Today's failure: the whole print reached the host (+570 MB).
    assert grew[0] < MAX_GROWTH_MB
    assert result.response == SURVIVED
    assert report == {"after": 1}  # the kernel kept going: no restart
    assert "ax" in shown and "xz" in shown  # the head and the tail
    assert "characters dropped" in shown or "characters truncated" in shown


def test_a_200_mb_raw_stream_message_is_dropped(scripted_server: ScriptedServer) -> None:
    code = RAW + "iopub('stream', {'name': 'stdout', 'text': 'y' * 200_000_000})\n"
    with peak_growth() as grew:
        result, _, shown = _attack(scripted_server, code)
    assert grew[0] < MAX_GROWTH_MB
    assert result.response == SURVIVED
    assert f"over the {MAX_MESSAGE_BYTES:,}-byte limit on its iopub channel" in shown
    assert "A fresh kernel was started" in shown


def test_a_200_mb_raw_host_call_is_dropped(scripted_server: ScriptedServer) -> None:
    code = RAW + (
        "ask(call('big', payload={'prompt': 'z' * 200_000_000, 'model': None}))\n"
        "print('REPORT ' + json.dumps({'reply': answer(20)}))"
    )
    with peak_growth() as grew:
        result, _, shown = _attack(scripted_server, code)
    assert grew[0] < MAX_GROWTH_MB
    assert result.response == SURVIVED
    assert f"over the {MAX_MESSAGE_BYTES:,}-byte limit on its stdin channel" in shown
    assert [r for r in scripted_server.model_requests() if not is_root(r)] == []


def test_a_message_of_many_large_parts_is_dropped(scripted_server: ScriptedServer) -> None:
    # Each part is under the per-frame limit; together they are over it.
    part = MAX_MESSAGE_BYTES // 2 - 1000
    code = RAW + (
        f"kernel.session.send(kernel.iopub_socket, 'stream', {{'name': 'stdout', 'text': 'hi'}},"
        f" parent=parent, buffers=[b'p' * {part}] * 3)\n"
        "print('REPORT ' + json.dumps({'sent': True}))"
    )
    result, report, shown = _attack(scripted_server, code)
    assert result.response == SURVIVED
    assert report == {"sent": True}
    assert "the kernel sent a malformed message (a message of" in shown


def test_the_agent_refuses_a_request_over_the_limit(scripted_server: ScriptedServer) -> None:
    code = (
        "import json\n"
        "raw = llm_query.__self__.host_call\n"
        "prompts = ['q' * 900_000] * 80\n"
        "try:\n"
        "    raw('llm_query_batched', {'prompts': prompts, 'model': None})\n"
        "    out = 'sent'\n"
        "except Exception as exc:\n"
        "    out = f'{type(exc).__name__}: {exc}'\n"
        "print('REPORT ' + json.dumps({'error': out}))"
    )
    result, report, _ = _attack(scripted_server, code)
    assert result.response == SURVIVED
    assert report["error"].startswith("ValueError: llm_query_batched: the request takes")
    assert "split a batch" in report["error"]
    assert [r for r in scripted_server.model_requests() if not is_root(r)] == []


# -- terminal escapes never reach the model ----------------------------------------------
ESCAPES = r"""
import sys
print('\x1b[31mRED\x1b[0m \x1b]0;evil title\x07after-osc \x1b[2J\x1b[Hcleared')
print('bell\x07 nul\x00 c1\x9b31m csi8 back\x08space', file=sys.stderr)
print('progress 10%\rprogress 100%\r\nnext line')
'\x1b[32mecho\x1b[0m'
"""


def test_control_characters_never_reach_the_model(
    scripted_server: ScriptedServer, environment: str
) -> None:
    result, _, shown = _attack(scripted_server, ESCAPES, environment=environment)
    assert result.response == SURVIVED
    for visible in ("RED", "after-osc", "cleared", "bell", "csi8", "progress 100%", "echo"):
        assert visible in shown, visible
    assert "evil title" not in shown
    for control in ("\x1b", "\x07", "\x00", "\x9b", "\x08", "\r"):
        assert control not in shown, repr(control)
    assert "progress 10%\nprogress 100%\nnext line" in shown


def test_escapes_in_a_traceback_are_removed(
    scripted_server: ScriptedServer, environment: str
) -> None:
    code = "raise ValueError('\\x1b[1;31mboom\\x1b[0m \\x1b]8;;http://x\\x07link')"
    result, _, shown = _attack(scripted_server, code, environment=environment)
    assert result.response == SURVIVED
    assert "ValueError: boom link" in shown
    assert "\x1b" not in shown and "\x07" not in shown


def test_the_local_repl_keeps_only_the_head_and_tail_of_a_big_print() -> None:
    from lmrepl.repl.local import LocalREPL

    class Bridge:
        def call(self, fn: str, payload: dict[str, Any]) -> Any:
            return "sub"

    with LocalREPL(max_output_chars=1000) as local:
        local.start(Bridge())
        res = local.execute("print('a' + 'x' * 10_000_000 + 'z')")
    assert res.stdout.startswith("ax") and res.stdout.endswith("xz\n")
    assert "characters dropped" in res.stdout
    assert len(res.stdout) < 100_000 + 100

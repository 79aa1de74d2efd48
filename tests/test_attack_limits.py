"""Attacks on the run's limits by model code (SPEC §8.1): floods of host calls, raw
kernel messages that bypass the runtime, oversize prompts and malformed payloads.

Each attack runs through the real engine: the scripted model's first reply is a
```` ```repl ```` block holding the attack, which prints ``REPORT <json>``; its second
reply submits ``FINAL('survived')``, so a test sees what the attack achieved (in the
output the model was shown) and that the run went on. Model calls go to the loopback
``ScriptedServer``, which reports usage honestly and counts concurrent sub-calls.

The floods are sized so that about ten sub-calls fit under ``max_tokens`` and the
root still has room for its next turn: the first root request tells the scripted
model how big the root's own prompt is, and the attack's prompts are cut to match.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from attack_helpers import RAW_CHANNELS, report_in
from engine_helpers import is_root, last_user, make_rlm, repl, turns

from lmrepl.calls import ModelCaller, Publisher
from lmrepl.clients.openai import OpenAIClient
from lmrepl.events import EventBus
from lmrepl.limits import LimitGuard
from lmrepl.subcalls import BadHostCall, SubcallBridge
from lmrepl.testing import ScriptedRequest, ScriptedServer, count_tokens
from lmrepl.usage import UsageTracker

LIMIT = 120_000
#: Tokens the flood leaves for the root's next turn (its prompt is ~1-2k tokens).
HEADROOM = 8_000
GATE = 4
SURVIVED = "survived"

# 40 threads, each one llm_query at once; the cell reports what came back.
THREAD_FLOOD = """
import json, threading
ok, errors = [], []
lock = threading.Lock()
def work(i):
    try:
        reply = llm_query(f'THR{{i:02d}}' + 'y' * {chars})
        with lock:
            ok.append(reply)
    except Exception as exc:
        with lock:
            errors.append(str(exc))
threads = [threading.Thread(target=work, args=(i,)) for i in range(40)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print('REPORT ' + json.dumps({{'ok': len(ok), 'errors': len(errors), 'error': errors[:1]}}))
"""

# 40 host calls written straight onto the kernel's stdin channel, past the runtime and
# the agent, then collected by asking for each result as the agent would.
RAW_FLOOD = (
    RAW_CHANNELS.replace("{", "{{").replace("}", "}}")
    + """
import time
def send(request):
    ask(protocol.MARKER + json.dumps(request))
ids = [f'raw{{i}}' for i in range(40)]
for i, cid in enumerate(ids):
    payload = {{'prompt': f'RAW{{i:02d}}' + 'y' * {chars}, 'model': None}}
    send({{'t': 'call', 'id': cid, 'wait': cid, 'cell': '', 'ns': 0, 'fn': 'llm_query',
          'payload': payload}})
got = {{}}
end = time.monotonic() + 40
while len(got) < len(ids) and time.monotonic() < end:
    send({{'t': 'wait', 'wait': next(c for c in ids if c not in got), 'cell': ''}})
    if not kernel.stdin_socket.poll(5000):
        continue
    _, msg = kernel.session.recv(kernel.stdin_socket)
    try:
        reply = json.loads(msg['content']['value'])
    except Exception:
        continue
    if isinstance(reply, dict) and reply.get('id') in ids:
        got[reply['id']] = reply
errors = [str(r.get('error')) for r in got.values() if not r.get('ok')]
print('REPORT ' + json.dumps({{'answered': len(got), 'errors': len(errors), 'error': errors[:1]}}))
"""
)


def _flood_chars(req: ScriptedRequest, prefix: int) -> int:
    """Characters of filler per sub-call so that ~10 fit and HEADROOM stays for the root."""
    root_in = count_tokens("\n".join(str(m.get("content")) for m in req.messages))
    # Tokens one sub-call really uses (its prompt plus the one-token reply "x"); the
    # 200 covers the root's own reply.
    per_call = (LIMIT - root_in - 200 - HEADROOM) // 10
    return 4 * (per_call - 1) - prefix


class FloodModel:
    """The scripted model: the flood first, then FINAL; sub-calls answer "x".

    With ``rendezvous`` the first GATE sub-calls are held until more than GATE are in
    flight, or GATE have been for a while: a gate that let more through would show it
    in the peak instead of slipping past by timing.
    """

    def __init__(
        self, server: ScriptedServer, code: str, *, rendezvous: bool, hold_s: float
    ) -> None:
        self.server = server
        self.code = code
        self.rendezvous = rendezvous
        self.hold_s = hold_s
        self.lock = threading.Lock()
        self.subcalls = 0

    def __call__(self, req: ScriptedRequest) -> str:
        if not is_root(req):
            with self.lock:
                self.subcalls += 1
                early = self.subcalls <= GATE
            if self.rendezvous and early:
                self.server.hold_at_peak(GATE, timeout=self.hold_s)
            return "x"
        if turns(req) == 0:
            return repl(self.code.format(chars=_flood_chars(req, prefix=5)))
        return repl(f"FINAL({SURVIVED!r})")


def _run_flood(
    server: ScriptedServer, code: str, environment: str, *, rendezvous: bool, hold_s: float = 30
) -> tuple[Any, dict[str, Any], str]:
    server.concurrency_filter = lambda req: not is_root(req)
    server.script(responder=FloodModel(server, code, rendezvous=rendezvous, hold_s=hold_s))
    rlm = make_rlm(
        server,
        environment=environment,
        max_tokens=LIMIT,
        max_concurrent_subcalls=GATE,
        environment_kwargs={"cell_timeout": 120},
    )
    result = rlm.completion("attack context", "What is in the context?")
    second = [r for r in server.model_requests() if is_root(r) and turns(r) == 1]
    shown = last_user(second[0]) if second else ""
    return result, report_in(shown), shown


def _total(result: Any) -> int:
    usage = result.usage_summary
    return int(usage.total_input_tokens + usage.total_output_tokens)


# -- (a) threads ------------------------------------------------------------------------
def test_forty_threads_of_llm_query_hold_the_gate_and_max_tokens(
    scripted_server: ScriptedServer, environment: str
) -> None:
    # In the kernel the agent sends one host call at a time; in-process the 40 threads
    # reach the bridge at once, so only there must the gate hold GATE requests open.
    local = environment == "local"
    result, report, shown = _run_flood(scripted_server, THREAD_FLOOD, environment, rendezvous=local)
    assert result.response == SURVIVED
    # Today's failure: every one of the 40 calls ran, ~4x the limit.
    assert _total(result) <= LIMIT
    assert report["ok"] + report["errors"] == 40
    assert 1 <= report["ok"] < 40
    assert "max_tokens" in report["error"][0]
    assert "max_tokens" in shown  # the model saw why its calls failed
    subcalls = [r for r in scripted_server.model_requests() if not is_root(r)]
    assert len(subcalls) == report["ok"]
    if local:
        assert scripted_server.peak_concurrency == GATE
    else:
        assert 1 <= scripted_server.peak_concurrency <= GATE


# -- (b) raw stdin messages ---------------------------------------------------------------
def test_raw_stdin_host_calls_hold_the_gate_and_max_tokens(
    scripted_server: ScriptedServer,
) -> None:
    # Held briefly: however many calls the host lets run at once, a fifth past the gate
    # would show in the peak (a host that runs one at a time only costs the hold).
    result, report, shown = _run_flood(
        scripted_server, RAW_FLOOD, "kernel", rendezvous=True, hold_s=3
    )
    assert result.response == SURVIVED
    assert _total(result) <= LIMIT
    raw = [
        r
        for r in scripted_server.model_requests()
        if not is_root(r) and str(r.messages[0].get("content", "")).startswith("RAW")
    ]
    # The bypass reached the host (whatever the host lets through, the limits hold).
    assert raw, shown
    assert report.get("answered", 0) >= 1, shown
    assert scripted_server.peak_concurrency <= GATE


# -- (c) oversize prompts -------------------------------------------------------------------
CAP = 1000

OVERSIZE = f"""
import json
out = {{}}
try:
    llm_query('x' * {CAP + 1})
except Exception as exc:
    out['runtime'] = type(exc).__name__ + ': ' + str(exc)
out['batch'] = llm_query_batched(['fits', 'x' * {CAP + 1}])
# Past the runtime: the namespace's raw host call, as the kernel agent sends it.
raw = llm_query.__self__.host_call
try:
    raw('llm_query', {{'prompt': 'z' * {CAP + 1}, 'model': None}})
except Exception as exc:
    out['host'] = str(exc)
out['host_batch'] = raw('llm_query_batched', {{'prompts': ['fits', 'z' * {CAP + 1}]}})
for name, payload in [('llm_query', {{'prompt': 7}}), ('llm_query_batched', {{'prompts': 'ab'}}),
                      ('tool', {{'name': 'nope', 'args': 'x'}}), ('no_such_fn', {{}})]:
    try:
        raw(name, payload)
    except Exception as exc:
        out.setdefault('malformed', []).append(str(exc))
print('REPORT ' + json.dumps(out))
"""


def test_oversize_prompts_are_refused_in_the_repl_and_on_the_host(
    scripted_server: ScriptedServer, environment: str
) -> None:
    def responder(req: ScriptedRequest) -> str:
        if not is_root(req):
            return "answered"
        return repl(OVERSIZE) if turns(req) == 0 else repl(f"FINAL({SURVIVED!r})")

    scripted_server.script(responder=responder)
    rlm = make_rlm(
        scripted_server, environment=environment, environment_kwargs={"max_prompt_chars": CAP}
    )
    result = rlm.completion("attack context", "What is in the context?")
    assert result.response == SURVIVED
    shown = last_user(scripted_server.model_requests()[-1])
    report = report_in(shown)
    assert report, shown
    # Refused inside the REPL, with a message the model can act on.
    assert report["runtime"].startswith("ValueError: llm_query: the prompt has 1,001 characters")
    assert "max_prompt_chars" in report["runtime"]
    assert report["batch"][0] == "answered"
    assert report["batch"][1].startswith("Error: llm_query: the prompt has 1,001")
    # Refused again on the host when the runtime is bypassed; a batch keeps its slots.
    assert "max_prompt_chars" in report["host"]
    assert report["host_batch"][0] == "answered"
    assert "max_prompt_chars" in report["host_batch"][1]
    malformed = report["malformed"]
    assert "'prompt' must be a string" in malformed[0]
    assert "'prompts' must be a list of strings" in malformed[1]
    assert "'args' must be a list" in malformed[2]
    assert "unknown host function 'no_such_fn'" in malformed[3]
    # No oversize prompt ever reached the model server.
    sent = [r for r in scripted_server.model_requests() if not is_root(r)]
    assert [r.messages[0]["content"] for r in sent] == ["fits", "fits"]
    # The runtime's refusals never reached the host; the host's were recorded.
    assert result.record is not None
    records = result.record.candidates[0].subcalls
    refused = [r for r in records if r.error and "max_prompt_chars" in r.error]
    assert [r.prompt[:1] for r in refused] == ["z", "z"]


# -- the bridge alone: every malformed payload is a BadHostCall ----------------------------
@pytest.mark.parametrize(
    ("fn", "payload", "message"),
    [
        ("llm_query", None, "payload must be a JSON object, got NoneType"),
        ("llm_query", ["prompt", "x"], "payload must be a JSON object, got list"),
        ("llm_query", {}, "'prompt' must be a string, got NoneType"),
        ("rlm_query", {"prompt": b"x"}, "'prompt' must be a string"),
        ("llm_query", {"prompt": "x", "model": 3}, "'model' must be a string or None"),
        ("llm_query_batched", {"prompts": [1, 2]}, "'prompts' must be a list of strings"),
        ("rlm_query_batched", {}, "'prompts' must be a list of strings"),
        ("tool", {"args": []}, "'name' must be a string"),
        ("tool", {"name": "t", "kwargs": []}, "'kwargs' must be an object with string keys"),
        ("nope", {}, "unknown host function 'nope'"),
    ],
)
def test_bridge_rejects_malformed_payloads(
    scripted_server: ScriptedServer, fn: str, payload: Any, message: str
) -> None:
    usage = UsageTracker()
    guard = LimitGuard(usage, max_concurrent=2)
    client = OpenAIClient("m", base_url=scripted_server.base_url, api_key="k")
    publish = Publisher(EventBus(), "r", 0, None)
    bridge = SubcallBridge(
        call_model=ModelCaller(client, guard=guard, usage=usage, publish=publish),
        run_child=None,
        choose_client=lambda model: client,
        publish=publish,
        record=lambda rec: None,
        guard=guard,
        max_concurrent=2,
        depth=0,
        tools={"t": lambda *a, **k: "tool ran"},
        max_prompt_chars=CAP,
    )
    with pytest.raises(BadHostCall, match=message) as info:
        bridge.call(fn, payload)
    assert isinstance(info.value, ValueError)
    assert scripted_server.model_requests() == []
    # The bridge still works after the bad call.
    assert bridge.call("llm_query", {"prompt": "fine"}) == "ok"

"""Model code against a kernel behind a Jupyter gateway (SPEC §8.1, docs/gateway.md).

Each attack runs through the real engine on a real Kernel Gateway (``gateway_helpers``):
the scripted model's first reply is the attack, which prints ``REPORT <json>``; its
second submits ``FINAL('survived')``. The wire format's decoder is checked on its own.
"""

from __future__ import annotations

import json

import pytest
from attack_helpers import RAW_CHANNELS, peak_growth
from gateway_helpers import (
    CANARY,
    SURVIVED,
    attack,
    gateway_fixture,
    no_kernel_left_fixture,
)
from gateway_server import GatewayServer

from lmrepl.repl import gateway_wire as wire
from lmrepl.repl.kernel_bounds import MAX_MESSAGE_BYTES
from lmrepl.repl.kernel_validate import BadMessage
from lmrepl.testing import ScriptedServer

pytestmark = pytest.mark.timeout(240)
__all__ = ["gateway_fixture", "no_kernel_left_fixture"]  # the fixtures, used by name


# -- model code is untrusted (SPEC §8.1) --------------------------------------------------
# The canary is searched for reversed, so the search itself never puts it in memory.
FIND_TOKEN = f"""
import gc, json, os, sys
found = []
backwards = {CANARY[::-1]!r}
def look(where, text):
    if isinstance(text, bytes):
        text = text.decode('latin-1')
    if isinstance(text, str) and backwards in text[::-1]:
        found.append(where)
look('environ', repr(dict(os.environ)))
for name in ('environ', 'cmdline'):
    with open(f'/proc/self/{{name}}', 'rb') as f:
        look(name, f.read())
for obj in gc.get_objects():
    if isinstance(obj, (dict, list, tuple)):
        look('object ' + type(obj).__name__, repr(obj)[:10**6])
for mod in list(sys.modules.values()):
    look('module ' + getattr(mod, '__name__', '?'), repr(getattr(mod, '__dict__', ''))[:10**6])
from ipykernel.connect import get_connection_file
roots = [os.getcwd(), os.path.dirname(get_connection_file())]
for root in roots:
    for folder, _, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            try:
                with open(path, 'rb') as f:
                    look(path, f.read(10**7))
            except OSError:
                pass
print('REPORT ' + json.dumps({{'found': found, 'roots': roots}}))
"""


def test_model_code_cannot_read_the_token(
    scripted_server: ScriptedServer, gateway: GatewayServer
) -> None:
    result, report, shown = attack(
        scripted_server, gateway, FIND_TOKEN, extra_env={"SOME_SETTING": "1"}
    )
    assert result.response == SURVIVED
    assert report.get("roots"), shown  # the search ran
    assert report["found"] == [], report


def test_the_gateway_api_refuses_model_code_without_the_token(
    scripted_server: ScriptedServer, gateway: GatewayServer
) -> None:
    code = f"""
import json, os, urllib.request, urllib.error
from ipykernel.connect import get_connection_file
me = os.path.basename(get_connection_file())[len('kernel-'):-len('.json')]
statuses = {{}}
for method, path in [('GET', '/api/kernels'), ('POST', '/api/kernels'),
                     ('DELETE', '/api/kernels/' + me), ('POST', f'/api/kernels/{{me}}/restart')]:
    req = urllib.request.Request({gateway.url!r} + path, method=method,
                                 data=b'{{}}' if method == 'POST' else None)
    key = method + ' ' + path.replace(me, 'me')
    try:
        statuses[key] = urllib.request.urlopen(req, timeout=10).status
    except urllib.error.HTTPError as exc:
        statuses[key] = exc.code
print('REPORT ' + json.dumps(statuses))
"""
    result, report, shown = attack(scripted_server, gateway, code)
    assert result.response == SURVIVED
    assert report == {
        "GET /api/kernels": 401,
        "POST /api/kernels": 401,
        "DELETE /api/kernels/me": 401,
        "POST /api/kernels/me/restart": 401,
    }, shown


def test_an_oversized_message_is_refused_unread(
    scripted_server: ScriptedServer, gateway: GatewayServer
) -> None:
    code = RAW_CHANNELS + "iopub('stream', {'name': 'stdout', 'text': 'y' * 80_000_000})\n"
    with peak_growth() as grew:
        result, _, shown = attack(scripted_server, gateway, code)
    assert grew[0] < 100  # the 80 MB message never landed in the host's memory
    assert result.response == SURVIVED
    assert f"over the {MAX_MESSAGE_BYTES:,}-byte limit" in shown, shown
    assert "A fresh kernel was started" in shown


def test_malformed_messages_are_faults_of_the_cell(
    scripted_server: ScriptedServer, gateway: GatewayServer
) -> None:
    code = RAW_CHANNELS + (
        "iopub('stream', {'name': 'stdout'})\n"
        "header = kernel.session.msg_header('stream')\n"
        "header['date'] = str(header['date'])\n"
        "kernel.iopub_socket.send_multipart([b'<IDS|MSG>', b'', json.dumps(header).encode(),"
        " json.dumps(parent, default=str).encode(), b'{}', b'{not json'])\n"
        "print('REPORT ' + json.dumps({'sent': True}))"
    )
    result, report, shown = attack(scripted_server, gateway, code)
    assert result.response == SURVIVED
    assert report == {"sent": True}, shown
    assert "[lmrepl] the kernel sent a malformed message" in shown
    assert "stream: text: Field required" in shown
    assert "content: not JSON" in shown
    assert "A fresh kernel was started" not in shown  # a bad message costs no restart


# -- the wire format on its own -----------------------------------------------------------
@pytest.mark.parametrize("v1", [True, False])
def test_the_wire_format_round_trips(v1: bool) -> None:
    header = wire.new_header("execute_request", "s")
    frame = wire.encode(
        "shell", header, {"code": "1"}, {"m": 1}, [b"abc", memoryview(b"de")], v1=v1
    )
    msg = wire.decode(frame, v1=v1)
    assert msg["channel"] == "shell" and msg["header"] == header
    assert msg["content"] == {"code": "1"} and msg["buffers"] == [b"abc", b"de"]


@pytest.mark.parametrize(
    "frame",
    [
        b"",
        b"\x01" * 7,
        (2**40).to_bytes(8, "little") + b"x" * 16,
        (3).to_bytes(8, "little") + (10**9).to_bytes(8, "little") * 3,
        "text on v1",
        wire.encode("nowhere", wire.new_header("x", "s"), {}, v1=True),
        wire.encode("iopub", wire.new_header("x", "s"), {}, v1=True)[:-1] + b"[",
    ],
)
def test_malformed_frames_are_bad_messages(frame: bytes | str) -> None:
    with pytest.raises(BadMessage):
        wire.decode(frame, v1=True)


def test_malformed_legacy_frames_are_bad_messages() -> None:
    for frame in ["[1]", "{", json.dumps({"channel": "x"}), b"\x00\x00\x00\x05"]:
        with pytest.raises(BadMessage):
            wire.decode(frame, v1=False)
    deep = "[" * 100_000 + "]" * 100_000
    with pytest.raises(BadMessage):
        wire.decode(deep, v1=False)

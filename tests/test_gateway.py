"""Kernels through a real Jupyter Kernel Gateway on loopback (docs/gateway.md).

One gateway per module (``gateway_helpers``: token auth, kernel listing on); after every
test the gateway must run no kernel. The REPL is never mocked: each test drives real
kernels on the gateway, through the engine and the scripted model server, or through a
``KernelREPL``. The attacks of model code are in ``test_gateway_attacks.py``.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from engine_helpers import is_root, last_user, make_rlm, make_srlm, repl, turns
from gateway_helpers import (
    SURVIVED,
    Bridge,
    attack,
    gateway_fixture,
    no_kernel_left_fixture,
    shown_after,
)
from gateway_server import GatewayServer, free_port

from lmrepl.errors import BackendError, ConfigurationError
from lmrepl.repl.kernel import KernelREPL
from lmrepl.scripted_api import ScriptedReply
from lmrepl.testing import ScriptedRequest, ScriptedServer

pytestmark = pytest.mark.timeout(240)
__all__ = ["gateway_fixture", "no_kernel_left_fixture"]  # the fixtures, used by name


# -- the engine through the gateway -------------------------------------------------------
def test_a_run_with_a_host_call(scripted_server: ScriptedServer, gateway: GatewayServer) -> None:
    code = "reply = llm_query('sub question')\nprint('GOT', reply, len(context))"
    result, _, shown = attack(scripted_server, gateway, code)
    assert result.response == SURVIVED
    assert "GOT sub 14" in shown, shown
    assert result.metadata["sandbox"] == "gateway"
    subcalls = [r for r in scripted_server.model_requests() if not is_root(r)]
    assert len(subcalls) == 1 and "sub question" in last_user(subcalls[0])


def test_a_child_rlm_in_a_namespace_of_the_same_kernel(
    scripted_server: ScriptedServer, gateway: GatewayServer
) -> None:
    # The child's namespace, context and cells reach the busy kernel as instructions
    # answering the parent's pending host call (stdin replies through the gateway).
    def responder(req: ScriptedRequest) -> str:
        if "CHILD-PROMPT" in req.messages[0]["content"]:
            return repl("FINAL(str('secret' in dir()) + ':' + context.upper())")
        return [repl("secret = 1\nr = rlm_query('sub task')"), repl("FINAL(r)")][turns(req)]

    scripted_server.script(responder=responder)
    rlm = make_rlm(
        scripted_server,
        environment="kernel",
        environment_kwargs=gateway.kwargs(),
        child_system_prompt="CHILD-PROMPT",
        max_depth=2,
    )
    assert rlm.completion("c", "q").response == "False:SUB TASK"


def test_an_srlm_search(scripted_server: ScriptedServer, gateway: GatewayServer) -> None:
    from lmrepl.repl import kernel_pool
    from lmrepl.repl.sandbox import GATEWAY

    def responder(req: ScriptedRequest) -> str:
        if turns(req) == 0:
            return repl("value = int(context) * 2\nprint(value)")
        return repl("FINAL(value)")

    scripted_server.script(responder=responder)
    srlm = make_srlm(
        scripted_server,
        environment="kernel",
        environment_kwargs=gateway.kwargs(),
        n_candidates=3,
        candidate_parallel=2,
    )
    result = srlm.completion("21", root_prompt="Twice the number?")
    assert result.response == "42"
    assert [c["status"] for c in result.metadata["candidates"]] == ["done"] * 3
    assert GATEWAY not in kernel_pool._pools  # no local pool was started for them


def test_a_large_context(scripted_server: ScriptedServer, gateway: GatewayServer) -> None:
    context = "é" + "abcdefghij" * 800_000 + "END"  # 8 MB, not ASCII: the UTF-8 path
    scripted_server.script(
        [
            repl("print(len(context), context[:2], context[-3:], context.count('j'))"),
            repl("FINAL('done')"),
        ]
    )
    rlm = make_rlm(scripted_server, environment="kernel", environment_kwargs=gateway.kwargs())
    assert rlm.completion(context, root_prompt="How long?").response == "done"
    assert f"{len(context)} éa END 800000" in shown_after(scripted_server, 1)


def test_the_legacy_websocket_format(scripted_server: ScriptedServer) -> None:
    # A gateway without the v1 subprotocol: JSON text frames, and binary frames for the
    # context's buffers.
    legacy = GatewayServer(ws_protocol="").start()
    try:
        code = "print('GOT', llm_query('q'), len(context), context[-3:])"
        scripted_server.script(
            responder=lambda req: (
                "sub"
                if not is_root(req)
                else repl(code)
                if turns(req) == 0
                else repl("FINAL('ok')")
            )
        )
        rlm = make_rlm(scripted_server, environment="kernel", environment_kwargs=legacy.kwargs())
        assert rlm.completion("x" * 4_000_000 + "END", root_prompt="q").response == "ok"
        assert "GOT sub 4000003 END" in shown_after(scripted_server, 1)
        with KernelREPL(**legacy.kwargs()) as r:
            r.start(Bridge())
            assert r.session.link.v1 is False  # type: ignore[attr-defined]
            assert r.execute("llm_query('x')").display == "'host:x'"
            r.close()
        assert legacy.wait_no_kernels() == []
    finally:
        legacy.stop()


# -- timeouts, restarts, deaths ---------------------------------------------------------
@pytest.fixture
def gw_repl(gateway: GatewayServer) -> Iterator[KernelREPL]:
    r = KernelREPL(**gateway.kwargs(cell_timeout=2.0, interrupt_grace=1.5))
    r.start(Bridge())
    r.add_context("the context")
    yield r
    r.close()


def test_a_timeout_interrupts_and_keeps_variables(gw_repl: KernelREPL) -> None:
    gw_repl.execute("kept = 41")
    res = gw_repl.execute("import time\nwhile True:\n    time.sleep(0.05)")
    assert res.status == "timeout"
    assert res.notice is not None and "Variables defined before the interrupt are kept" in (
        res.notice
    )
    assert gw_repl.execute("kept + 1").display == "42"
    assert gw_repl.pid is None  # no local process


def test_code_that_ignores_interrupts_is_restarted_through_the_gateway(
    scripted_server: ScriptedServer, gateway: GatewayServer
) -> None:
    swallow = "while True:\n    try:\n        while True:\n            pass\n" + (
        "    except KeyboardInterrupt:\n        pass"
    )
    cells = [
        repl("kept = 1"),
        repl(swallow),
        repl("print(len(context), 'kept' in globals(), llm_query('again'))"),
        repl("FINAL('after')"),
    ]
    scripted_server.script(responder=lambda req: cells[turns(req)] if is_root(req) else "sub")
    rlm = make_rlm(
        scripted_server,
        environment="kernel",
        # 3 s, not less: the restarted kernel's first cell makes a host call, and on a
        # loaded 2-core machine that cell must not be mistaken for a hang.
        environment_kwargs=gateway.kwargs(cell_timeout=3.0, interrupt_grace=1.0),
    )
    assert rlm.completion("the context", root_prompt="q").response == "after"
    notice = shown_after(scripted_server, 2)
    assert "ALL VARIABLES YOU DEFINED ARE LOST" in notice, notice
    assert "Still defined:" in notice and "context" in notice
    after = shown_after(scripted_server, 3)
    assert "11 False sub" in after, f"{after}\n--- gateway log ---\n{gateway.log()}"
    assert "/restart" in gateway.log()  # restarted in place through the REST API


def test_no_output_is_lost_while_a_new_websocket_starts_to_deliver_it() -> None:
    # Kernel Gateway 3 now and then forwarded nothing from IOPub during a new websocket's
    # first seconds (after a restart that killed a busy kernel): a cell run then lost its
    # output and end and seemed to hang. Here every new websocket is so, the first one
    # and the one after the restart: the REPL must wait until IOPub delivers.
    late = GatewayServer(iopub_delay=2.0).start()
    swallow = "while True:\n    try:\n        while True:\n            pass\n" + (
        "    except KeyboardInterrupt:\n        pass"
    )
    try:
        with KernelREPL(**late.kwargs(cell_timeout=10.0, interrupt_grace=1.0)) as r:
            r.start(Bridge())
            res = r.execute("print('first', llm_query('x'))")
            assert (res.status, res.stdout) == ("ok", "first host:x\n"), res
            assert r.execute(swallow, timeout=1.0).status == "restarted"
            res = r.execute("print('again', llm_query('y'))")
            assert (res.status, res.stdout) == ("ok", "again host:y\n"), res
            r.close()
        assert "/restart" in late.log()
        assert late.wait_no_kernels() == []
    finally:
        late.stop()


def test_a_kernel_that_dies_is_replaced(gw_repl: KernelREPL) -> None:
    gw_repl.execute("kept = 1")
    res = gw_repl.execute("import os\nos._exit(1)")
    assert res.status == "died"
    assert res.notice is not None and "ALL VARIABLES YOU DEFINED ARE LOST" in res.notice
    assert gw_repl.execute("len(context)").display == "11"
    assert gw_repl.execute("llm_query('x')").display == "'host:x'"
    assert gw_repl.execute("kept").error is not None


# -- no kernel is left behind -------------------------------------------------------------
def test_close_deletes_the_kernel(gateway: GatewayServer) -> None:
    from lmrepl import kernels

    r = KernelREPL(**gateway.kwargs())
    r.start(Bridge())
    assert len(gateway.kernels()) == 1
    assert kernels.stats().remote == 1  # the user sees it in lmrepl.kernels too
    assert r.session.link.v1 is True  # type: ignore[attr-defined]  # Jupyter Server 2's
    r.close()
    r.close()
    assert gateway.kernels() == []
    assert kernels.stats().remote == 0


def test_a_failed_run_deletes_its_kernel(
    scripted_server: ScriptedServer, gateway: GatewayServer
) -> None:
    scripted_server.script([repl("x = 1"), *[ScriptedReply(status=500, text="boom")] * 4])
    rlm = make_rlm(scripted_server, environment="kernel", environment_kwargs=gateway.kwargs())
    with pytest.raises(BackendError):
        rlm.completion("c", root_prompt="q")


INTERRUPTED = textwrap.dedent(
    """
    import os, signal, sys
    signal.signal(signal.SIGINT, signal.default_int_handler)
    from lmrepl import RLM
    url, token, base_url = sys.argv[1:4]
    code = "import os, signal\\nos.kill(int(context), signal.SIGINT)\\nwhile True: pass"
    rlm = RLM(backend="openai",
              backend_kwargs={"model_name": "m", "base_url": base_url, "api_key": "x"},
              environment="kernel",
              environment_kwargs={"gateway_url": url, "gateway_token": token})
    try:
        rlm.completion(str(os.getpid()), "q")
        print("NOT INTERRUPTED")
    except KeyboardInterrupt:
        print("INTERRUPTED")
    """
)


def test_keyboard_interrupt_deletes_the_kernel(
    scripted_server: ScriptedServer, gateway: GatewayServer
) -> None:
    # The cell sends its host Ctrl-C (the host's pid is the context), then spins.
    code = "import os, signal\nos.kill(int(context), signal.SIGINT)\nwhile True: pass"
    scripted_server.script([repl(code)])
    proc = subprocess.run(
        [sys.executable, "-c", INTERRUPTED, gateway.url, gateway.token, scripted_server.base_url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "INTERRUPTED" in proc.stdout, proc.stdout + proc.stderr
    assert gateway.kernels() == []  # deleted before the process ended


# -- bad settings ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"gateway_url": "ftp://127.0.0.1:1"}, "gateway_url'] must be an http:// or https://"),
        ({"gateway_url": "http://127.0.0.1:1?x=1"}, "gateway_url'] must be"),
        ({"gateway_url": "http://h:1", "sandbox": "bwrap"}, "sandbox']='bwrap' cannot be used"),
        ({"gateway_url": "http://h:1", "local_files": True}, "local_files']=True cannot"),
        ({"gateway_url": "http://h:1", "read_only_paths": ["/data"]}, "read_only_paths"),
        ({"gateway_token": "t"}, "gateway_token'] needs environment_kwargs['gateway_url']"),
    ],
)
def test_bad_settings_are_refused_at_construction(
    scripted_server: ScriptedServer, kwargs: dict[str, Any], words: str
) -> None:
    with pytest.raises(ConfigurationError, match=words.replace("[", r"\[").replace("?", r"\?")):
        make_rlm(scripted_server, environment="kernel", environment_kwargs=kwargs)


def test_an_unreachable_gateway_is_named(scripted_server: ScriptedServer) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    scripted_server.script([repl("x = 1"), repl("FINAL('x')")])
    rlm = make_rlm(scripted_server, environment="kernel", environment_kwargs={"gateway_url": url})
    with pytest.raises(ConfigurationError, match=f"gateway at {url} cannot be reached"):
        rlm.completion("c", root_prompt="q")


def test_a_wrong_token_is_named(scripted_server: ScriptedServer, gateway: GatewayServer) -> None:
    scripted_server.script([repl("x = 1"), repl("FINAL('x')")])
    kwargs = {"gateway_url": gateway.url, "gateway_token": "wrong"}
    rlm = make_rlm(scripted_server, environment="kernel", environment_kwargs=kwargs)
    with pytest.raises(ConfigurationError, match=r"HTTP 40[13].*gateway_token") as err:
        rlm.completion("c", root_prompt="q")
    assert "wrong" not in str(err.value) and gateway.token not in str(err.value)


def test_an_interrupt_from_another_thread(gateway: GatewayServer) -> None:
    # KernelREPL.interrupt (what a front end's stop button calls) goes through the gateway.
    r = KernelREPL(**gateway.kwargs(cell_timeout=60.0))
    try:
        r.start(Bridge())
        timer = threading.Timer(1.0, r.interrupt)
        timer.start()
        res = r.execute("import time\ntime.sleep(30)")
        timer.join()
        assert res.status == "error" and res.error is not None
        assert "KeyboardInterrupt" in res.error
    finally:
        r.close()

"""The embedded model's shared server and the ``local`` backend (real llama.cpp, slow).

No test here times the server: load time, tokens per second and how fast a stop cuts
off a generation are measured by ``benchmarks/local_server.py``. A stop "mid-generation"
waits until the server's ``/slots`` shows tokens being decoded, not for a fixed sleep.
"""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
import textwrap
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from lmrepl.clients import make_client, validate_backend
from lmrepl.clients.base import CallOptions, Completion
from lmrepl.clients.local import LocalClient
from lmrepl.errors import BackendError, ConfigurationError
from lmrepl.local.server import LocalServer, get_server, shutdown_servers

pytest.importorskip("xllamacpp")

PROMPT = [{"role": "user", "content": "Write a Python function that adds two numbers."}]


def wait_until_decoding(url: str, api_key: str | None, n: int = 1, bound: float = 120.0) -> None:
    """Poll the server's ``/slots`` until ``n`` slots have decoded a token.

    That is: ``n`` generations are under way. ``bound`` only reports a server that never
    starts generating; it times nothing.
    """
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    req = urllib.request.Request(url + "/slots", headers=headers)
    give_up = time.monotonic() + bound
    while time.monotonic() < give_up:
        with urllib.request.urlopen(req, timeout=10) as resp:
            slots = json.loads(resp.read())
        decoding = 0
        for slot in slots:
            nxt = slot.get("next_token") or {}
            nxt = nxt[0] if isinstance(nxt, list) and nxt else nxt
            decoding += bool(slot.get("is_processing") and nxt.get("n_decoded", 0) > 0)
        if decoding >= n:
            return
        time.sleep(0.05)
    raise AssertionError(f"no {n} generation(s) under way at {url} after {bound:g} s")


# The same function, for the subprocess scripts below.
DECODING = "import json, time, urllib.request\n" + inspect.getsource(wait_until_decoding)


def test_constructing_a_client_starts_nothing() -> None:
    client = LocalClient(n_parallel=2, max_tokens_default=16)
    assert client.backend == "local"
    assert client.model_name == "qwen2.5-coder-0.5b-instruct"
    assert client._bound is None
    client.close()
    # The local backend's own settings are accepted backend_kwargs.
    validate_backend(
        "local", {"model_path": None, "n_parallel": 2, "n_ctx": 4096, "max_tokens_default": 16}
    )


@pytest.mark.parametrize(
    "kwargs",
    [{"n_parallel": 0}, {"n_ctx": 10}, {"max_tokens_default": 0}, {"n_parallel": "4"}],
)
def test_bad_client_arguments_fail_before_a_client_exists(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError, match=f"backend_kwargs\\['{next(iter(kwargs))}'\\]"):
        make_client("local", kwargs)


def test_check_names_a_missing_model_file(tmp_path: object) -> None:
    client = LocalClient(model_path=f"{tmp_path}/nope.gguf")
    with pytest.raises(ConfigurationError, match=r"nope\.gguf"):
        client.check()


def test_bad_server_arguments() -> None:
    with pytest.raises(ValueError):
        LocalServer(n_parallel=0)
    with pytest.raises(ConfigurationError):
        _ = LocalServer().base_url  # not started


@pytest.fixture(scope="module")
def server() -> Iterator[LocalServer]:
    srv = get_server()
    try:
        yield srv
    finally:
        shutdown_servers()


@pytest.fixture(scope="module")
def client(server: LocalServer) -> Iterator[LocalClient]:
    c = LocalClient()
    try:
        yield c
    finally:
        c.close()


def _get(url: str, key: str | None = None) -> int:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"} if key else {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.mark.model
def test_one_shared_server_on_loopback_with_a_key(server: LocalServer) -> None:
    assert get_server() is server
    assert get_server(n_parallel=8) is server  # more slots asked: the running one is kept
    assert server.base_url.startswith("http://127.0.0.1:") and server.base_url.endswith("/v1")
    assert server.model_name == "qwen2.5-coder-0.5b-instruct"
    assert server.api_key
    assert _get(server.base_url + "/models") == 401
    assert _get(server.base_url + "/models", server.api_key) == 200


@pytest.mark.model
def test_chat_completion_through_the_local_client(client: LocalClient) -> None:
    reply = client.complete(PROMPT, CallOptions(temperature=0, max_tokens=32))
    assert reply.text.strip()
    assert reply.usage_reported
    assert reply.input_tokens > 10
    assert 0 < reply.output_tokens <= 32
    assert reply.model == "qwen2.5-coder-0.5b-instruct"
    again = client.complete(PROMPT, CallOptions(temperature=0, max_tokens=32))
    assert again.text == reply.text  # greedy decoding is repeatable


@pytest.mark.model
def test_default_reply_cap_applies_when_the_caller_sets_none(server: LocalServer) -> None:
    capped = LocalClient(max_tokens_default=5)
    try:
        reply = capped.complete(PROMPT, CallOptions(temperature=0))
    finally:
        capped.close()
    assert 0 < reply.output_tokens <= 5


@pytest.mark.model
def test_two_concurrent_requests_are_both_answered(client: LocalClient) -> None:
    results: list[Completion | BaseException] = []

    def ask(i: int) -> None:
        try:
            results.append(
                client.complete(
                    [{"role": "user", "content": f"Name {i + 2} prime numbers."}],
                    CallOptions(temperature=0, max_tokens=24),
                )
            )
        except BaseException as exc:
            results.append(exc)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert len(results) == 2
    assert all(isinstance(r, Completion) and r.text.strip() for r in results), results


@pytest.mark.model
def test_stop_cuts_off_a_request_in_flight(server: LocalServer) -> None:
    # Runs last in this module: it stops the shared server (the fixture's stop is then a no-op).
    slow = LocalClient(max_retries=0)
    outcome: list[BaseException | Completion] = []

    def long_request() -> None:
        try:
            outcome.append(
                slow.complete(
                    [{"role": "user", "content": "Write a long essay about compilers."}],
                    CallOptions(max_tokens=2000),
                )
            )
        except BaseException as exc:
            outcome.append(exc)

    worker = threading.Thread(target=long_request, daemon=True)
    worker.start()
    wait_until_decoding(server.url, server.api_key)
    # Liveness bounds, not speed (a 2000-token essay would take far longer than a stop).
    stopper = threading.Thread(target=shutdown_servers, daemon=True)
    stopper.start()
    stopper.join(timeout=60)
    assert not stopper.is_alive(), "shutdown_servers() hung with a request in flight"
    worker.join(timeout=60)
    assert not worker.is_alive(), "the request in flight was not cut off"
    assert not server.running
    # Cut off, not answered: the client sees the hang-up as a backend error.
    assert len(outcome) == 1 and isinstance(outcome[0], BackendError)
    slow.close()


@pytest.mark.model
def test_interpreter_exit_mid_generation_neither_hangs_nor_crashes() -> None:
    script = DECODING + textwrap.dedent(
        """
        import threading
        from lmrepl.clients.base import CallOptions
        from lmrepl.clients.local import LocalClient
        from lmrepl.local.server import get_server
        client = LocalClient(max_retries=0)
        client.complete([{"role": "user", "content": "hi"}], CallOptions(max_tokens=2))
        def work():
            try:
                client.complete([{"role": "user", "content": "Write a long essay."}],
                                CallOptions(max_tokens=2000))
            except Exception:
                pass
        for _ in range(2):
            threading.Thread(target=work, daemon=True).start()
        srv = get_server()  # the client's shared server
        wait_until_decoding(srv.url, srv.api_key, n=2)
        print("exiting", flush=True)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "exiting" in proc.stdout


def test_cli_rejects_bad_serve_options_without_loading(capsys: pytest.CaptureFixture[str]) -> None:
    from lmrepl.cli import main

    assert main(["serve", "--parallel", "0"]) == 1
    assert "n_parallel must be an integer >= 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["model"])  # a subcommand is required


@pytest.mark.model
def test_cli_serve_stops_on_sigterm_with_an_external_request_in_flight() -> None:
    import signal

    proc = subprocess.Popen(
        [sys.executable, "-m", "lmrepl.local", "serve", "--parallel", "1", "--ctx", "2048"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(4)]
        base_url = lines[1].split()[-1]
        assert base_url.startswith("http://127.0.0.1:") and base_url.endswith("/v1")
        # A random key by default, printed: whoever can reach the port still needs it.
        assert lines[2].startswith("API key: ")
        api_key = lines[2].split()[-1]
        assert len(api_key) >= 24
        assert _get(base_url + "/models") == 401
        assert _get(base_url + "/models", api_key) == 200
        essay = [{"role": "user", "content": "Write a long essay about compilers."}]
        body = {"model": "m", "messages": essay, "max_tokens": 2000}
        request = urllib.request.Request(
            base_url + "/chat/completions",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {api_key}"},
        )
        errors: list[BaseException] = []

        def call() -> None:
            try:
                urllib.request.urlopen(request, timeout=60).read()
            except BaseException as exc:
                errors.append(exc)

        worker = threading.Thread(target=call)
        worker.start()
        wait_until_decoding(base_url.removesuffix("/v1"), api_key)
        proc.send_signal(signal.SIGTERM)
        # Liveness bounds, not speed: a hang is reported, the stop's time is benchmarked.
        assert proc.wait(timeout=60) == 0
        worker.join(timeout=60)
        assert not worker.is_alive()
        # The external client was cut off, not served its 2000-token essay.
        assert len(errors) == 1, errors
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

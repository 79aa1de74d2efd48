"""Attacks on the host from model code in a sandboxed kernel (SPEC §8.1, issue: isolation).

A prompt injection in the context steers the code the model writes; each test here is
such code, run through the real engine in a bubblewrap-sandboxed kernel. Each asserts
the secure outcome, that the run goes on (the model's next turn submits an answer),
and that no kernel or kernel child is left afterwards.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import uuid

import pytest
from attack_helpers import (
    SURVIVED,
    no_leftover_kernels,
    processes_with,
    requires_sandbox,
    run_attack,
    wait_gone,
)
from engine_helpers import make_rlm, make_srlm, repl, turns

from lmrepl.testing import ScriptedRequest, ScriptedServer

pytestmark = [requires_sandbox, pytest.mark.usefixtures("no_leftover_kernels")]
__all__ = ["no_leftover_kernels"]  # the fixture, used through pytestmark

_READ_ALL_ENVIRON = """
import json, os
found, readable = [], 0
for pid in os.listdir('/proc'):
    if not pid.isdigit():
        continue
    for name in ('environ', 'cmdline'):
        try:
            data = open(f'/proc/{pid}/{name}', 'rb').read()
        except OSError:
            continue
        readable += 1
        if SECRET.encode() in data:
            found.append(f'{pid}/{name}')
for path in (f'/proc/{os.getppid()}/environ', f'/proc/{HOST}/environ'):
    try:
        if SECRET.encode() in open(path, 'rb').read():
            found.append(path)
    except OSError:
        pass
try:  # the host's memory: every writable mapping (the secret is on its heap)
    with open(f'/proc/{HOST}/maps') as maps, open(f'/proc/{HOST}/mem', 'rb') as mem:
        for line in maps:
            span, perms = line.split()[:2]
            start, end = (int(x, 16) for x in span.split('-'))
            if perms.startswith('rw') and end - start < 1 << 28:
                try:
                    mem.seek(start)
                    if SECRET.encode() in mem.read(end - start):
                        found.append(f'/proc/{HOST}/mem')
                        break
                except OSError:
                    pass
except OSError:
    pass
print('REPORT', json.dumps({'found': found, 'readable': readable}))
"""


def _attack(code: str, **values: object) -> str:
    head = "".join(f"{name} = {value!r}\n" for name, value in values.items())
    return head + textwrap.dedent(code)


@pytest.mark.parametrize("sandbox", ["bwrap", "none"])
def test_host_secrets_are_not_readable(
    scripted_server: ScriptedServer, monkeypatch: pytest.MonkeyPatch, sandbox: str
) -> None:
    """With ``sandbox="none"`` (the control) the same attack finds the secret: the attack
    is real, and a plain kernel is no boundary."""
    secret = "sk-attack-" + uuid.uuid4().hex
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    code = _attack(_READ_ALL_ENVIRON, SECRET=secret, HOST=os.getpid())
    result, report, _ = run_attack(scripted_server, code, sandbox=sandbox)
    assert report["readable"] > 0  # the attack ran and could read its own /proc
    assert bool(report["found"]) == (sandbox == "none"), report["found"]
    assert result.response == SURVIVED
    assert result.record is not None and result.record.sandbox == sandbox
    assert result.metadata["sandbox"] == sandbox


def test_no_network_not_even_the_hosts_model_server(scripted_server: ScriptedServer) -> None:
    code = _attack(
        """
        import json, socket, urllib.request
        out = {}
        try:
            urllib.request.urlopen(URL, timeout=3).read()
            out['loopback'] = 'reached'
        except Exception as exc:
            out['loopback'] = type(exc).__name__
        try:
            socket.create_connection(('1.1.1.1', 53), timeout=3)
            out['internet'] = 'reached'
        except Exception as exc:
            out['internet'] = type(exc).__name__
        print('REPORT', json.dumps(out))
        """,
        URL=scripted_server.url + "/v1/models",
    )
    result, report, _ = run_attack(scripted_server, code)
    assert report["loopback"] != "reached" and report["internet"] != "reached"
    # The host's server saw only the engine's two model requests, nothing from the kernel.
    assert len(scripted_server.requests) == len(scripted_server.model_requests()) == 2
    assert result.response == SURVIVED


def test_network_true_reaches_the_loopback(scripted_server: ScriptedServer) -> None:
    """The opt-in: ``network=True`` shares the host's network (loopback included)."""
    code = _attack(
        """
        import json, urllib.request
        try:
            urllib.request.urlopen(URL, timeout=5).read()
            print('REPORT', json.dumps({'loopback': 'reached'}))
        except Exception as exc:
            print('REPORT', json.dumps({'loopback': repr(exc)}))
        """,
        URL=scripted_server.url + "/v1/models",
    )
    result, report, _ = run_attack(scripted_server, code, network=True)
    assert report["loopback"] == "reached"
    assert result.record is not None and result.record.sandbox == "bwrap+network"


def test_users_files_are_hidden_and_the_host_is_read_only(
    scripted_server: ScriptedServer, monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    home = str(tmp_path)
    with open(os.path.join(home, ".netrc"), "w") as f:
        f.write("machine example.com login me password hunter2\n")
    monkeypatch.setenv("HOME", home)
    project = os.getcwd()
    code = _attack(
        """
        import json, os
        out = {'home': os.path.expanduser('~'), 'read': [], 'wrote': []}
        for path in (os.path.expanduser('~/.netrc'), HOST_HOME + '/.netrc', '/etc/shadow',
                     '/root/.bash_history', PROJECT + '/pyproject.toml'):
            try:
                open(path).read()
                out['read'].append(path)
            except OSError:
                pass
        for folder in (PROJECT, '/usr', '/etc', os.path.dirname(os.__file__)):
            try:
                with open(os.path.join(folder, 'pwned'), 'w') as f:
                    f.write('x')
                out['wrote'].append(folder)
            except OSError:
                pass
        with open('scratch.txt', 'w') as f:  # the private working folder is writable
            f.write('mine')
        with open('/tmp/scratch.txt', 'w') as f:
            f.write('mine')
        out['scratch'] = open('scratch.txt').read() + open('/tmp/scratch.txt').read()
        print('REPORT', json.dumps(out))
        """,
        HOST_HOME=home,
        PROJECT=project,
    )
    result, report, _ = run_attack(scripted_server, code)
    assert report["read"] == []
    # A write may "succeed" only into the sandbox's own private /tmp (a project under
    # /tmp appears there as an empty mount point): none reaches the host.
    assert all(w.startswith("/tmp/") for w in report["wrote"]), report["wrote"]
    for folder in (project, "/usr", "/etc", os.path.dirname(os.__file__)):
        assert not os.path.exists(os.path.join(folder, "pwned"))
    assert report["home"] != home and report["scratch"] == "minemine"
    assert result.response == SURVIVED


def test_candidates_and_pool_kernels_cannot_see_each_other(
    scripted_server: ScriptedServer,
) -> None:
    from lmrepl.repl.kernel_pool import default_pool
    from lmrepl.repl.sandbox import choose

    # Warm kernels a later run would take: the attack must not reach them either.
    assert default_pool(choose("bwrap")).wait_ready(2, timeout=120)
    code = textwrap.dedent(
        """
        import glob, json, os
        own = os.environ.get('JPY_SESSION_NAME', '')
        files = [p for p in glob.glob('/tmp/**/*.json', recursive=True)]
        files += glob.glob('/dev/shm/**', recursive=True)
        files += glob.glob('/run/**/*.json', recursive=True)
        procs = {}
        for pid in os.listdir('/proc'):
            if pid.isdigit():
                try:
                    procs[pid] = open(f'/proc/{pid}/cmdline', 'rb').read().split(b'\\0')[0].decode()
                except OSError:
                    pass
        print('REPORT', json.dumps({'files': files, 'procs': procs}))
        """
    )
    scripted_server.script(responder=lambda req: _two_turns(req, code))
    srlm = make_srlm(
        scripted_server,
        environment="kernel",
        environment_kwargs={"sandbox": "bwrap"},
        n_candidates=2,
        candidate_parallel=2,
    )
    result = srlm.completion("attack context", root_prompt="What is in the context?")
    assert result.response == SURVIVED
    reports = [
        line
        for req in scripted_server.model_requests()
        for m in req.messages
        if m.get("role") == "user"
        for line in str(m.get("content")).splitlines()
        if line.startswith("REPORT ")
    ]
    # Each candidate that got to run the attack reports; on a loaded machine one may
    # still be starting when the other has answered, so at least one must.
    assert reports, [c.status for c in result.record.candidates] if result.record else None
    import json

    for line in set(reports):
        report = json.loads(line[len("REPORT ") :])
        # Only the kernel's own connection file is in its folder.
        assert len([f for f in report["files"] if f.endswith("kernel.json")]) == 1, report
        # bwrap's reaper, the kernel, and nothing of the host or other kernels.
        assert len(report["procs"]) <= 3, report["procs"]


def _two_turns(req: ScriptedRequest, code: str) -> str:
    return repl(code) if turns(req) == 0 else repl(f"FINAL({SURVIVED!r})")


def test_limits_cannot_be_raised(scripted_server: ScriptedServer) -> None:
    code = textwrap.dedent(
        """
        import json, resource
        out = {}
        for name in ('RLIMIT_AS', 'RLIMIT_NPROC', 'RLIMIT_NOFILE', 'RLIMIT_FSIZE'):
            which = getattr(resource, name)
            soft, hard = resource.getrlimit(which)
            try:
                resource.setrlimit(which, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
                raised = 'raised'
            except (ValueError, OSError) as exc:
                raised = type(exc).__name__
            out[name] = [soft, hard, raised]
        print('REPORT', json.dumps(out))
        """
    )
    result, report, _ = run_attack(scripted_server, code, memory_limit_mb=4096)
    assert report["RLIMIT_AS"][:2] == [4096 * 2**20] * 2
    for name, (soft, hard, raised) in report.items():
        assert soft == hard != -1, name
        assert raised != "raised", name
    assert result.response == SURVIVED


@pytest.mark.skipif(
    os.geteuid() == 0,
    reason="Linux does not enforce RLIMIT_NPROC for uid 0 (the limit is set; see "
    "test_limits_cannot_be_raised); a host running as an ordinary user is covered",
)
def test_a_fork_bomb_hits_the_process_limit(scripted_server: ScriptedServer) -> None:
    code = textwrap.dedent(
        """
        import json, os, subprocess
        started, error = [], None
        try:
            for _ in range(2000):
                started.append(subprocess.Popen(['sleep', '600']))
        except OSError as exc:
            error = type(exc).__name__
        for p in started:
            p.kill()
            p.wait()
        print('REPORT', json.dumps({'started': len(started), 'error': error}))
        """
    )
    result, report, _ = run_attack(scripted_server, code)
    assert report["error"] is not None and report["started"] < 2000
    assert result.response == SURVIVED


def test_signals_cannot_reach_the_host_or_stop_the_timeout() -> None:
    """SIGSTOP to every process the kernel can name; the host runs in a child process so
    that a broken sandbox shows as a failed run, not a frozen test session."""
    script = textwrap.dedent(
        """
        import os, sys
        sys.path.insert(0, 'tests')
        from engine_helpers import make_rlm, repl
        from lmrepl.testing import ScriptedServer
        attack = (
            "import os, signal\\n"
            f"targets = [os.getppid(), 1, {os.getpid()}]\\n"
            "targets += [int(p) for p in os.listdir('/proc') if p.isdigit()]\\n"
            "for pid in targets:\\n"
            "    if pid != os.getpid():\\n"
            "        try: os.kill(pid, signal.SIGSTOP)\\n"
            "        except OSError: pass\\n"
            "print('stopped what it could')\\n"
        )
        # Then the kernel stops itself: only the host's hard timeout can end that cell.
        selfstop = "import os, signal\\nos.kill(os.getpid(), signal.SIGSTOP)"
        with ScriptedServer() as srv:
            srv.script([repl(attack), repl(selfstop), repl("FINAL('survived')")])
            rlm = make_rlm(srv, environment="kernel", environment_kwargs={
                "sandbox": "bwrap", "cell_timeout": 3, "interrupt_grace": 1, "use_pool": False})
            result = rlm.completion("ctx", root_prompt="q")
            steps = result.record.candidates[0].steps
            print("STATUSES", [c.status for s in steps for c in s.cells])
            print("ANSWER", result.response)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=180
    )
    out = done.stdout + done.stderr
    assert "ANSWER survived" in out, out
    assert "STATUSES ['ok', 'restarted', 'ok']" in out, out


def test_kernel_children_end_with_the_kernel(scripted_server: ScriptedServer) -> None:
    """Children in their own session survive neither a kill-and-restart nor close()."""
    marker = f"lmrepl-attack-{uuid.uuid4().hex}"
    spawn = textwrap.dedent(
        f"""
        import subprocess, sys
        for _ in range(3):
            subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(3600)', {marker!r}],
                             start_new_session=True)
        print('spawned')
        """
    )
    stuck = "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True: pass"
    seen: list[list[int]] = []

    def responder(req: ScriptedRequest) -> str:
        n = turns(req)
        seen.append(processes_with(marker))
        if n in (0, 2):
            return repl(spawn)
        if n == 1:
            return repl(stuck)  # killed after its timeout: the kernel is replaced
        return repl(f"FINAL({SURVIVED!r})")

    scripted_server.script(responder=responder)
    rlm = make_rlm(
        scripted_server,
        environment="kernel",
        environment_kwargs={"sandbox": "bwrap", "cell_timeout": 3, "interrupt_grace": 1},
    )
    result = rlm.completion("ctx", root_prompt="q")
    assert result.response == SURVIVED
    assert len(seen[1]) == 3  # the children were running before the kernel was killed
    assert not wait_gone(lambda: processes_with(marker))
    steps = result.record.candidates[0].steps if result.record else []
    assert [c.status for s in steps for c in s.cells][:2] == ["ok", "restarted"]


def test_kernel_children_end_with_a_sigkilled_host() -> None:
    marker = f"lmrepl-attack-{uuid.uuid4().hex}"
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, 'tests')
        from engine_helpers import make_rlm, repl
        from lmrepl.testing import ScriptedServer
        spawn = (
            "import subprocess, sys, time\\n"
            "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(3600)', "
            "{marker!r}], start_new_session=True)\\n"
            "print('spawned', flush=True)\\n"
            "time.sleep(3600)"
        )
        with ScriptedServer() as srv:
            srv.script([repl(spawn)])
            make_rlm(srv, environment="kernel", environment_kwargs={{
                "sandbox": "bwrap", "cell_timeout": None, "use_pool": False}}
            ).completion("ctx", root_prompt="q")
        """
    )
    host = subprocess.Popen([sys.executable, "-c", script])
    try:
        assert wait_gone(lambda: not processes_with(marker), bound=120) is False
        os.kill(host.pid, signal.SIGKILL)
        host.wait(10)
        assert not wait_gone(lambda: processes_with(marker))
    finally:
        if host.poll() is None:
            host.kill()
            host.wait(10)


@pytest.mark.model
def test_the_embedded_model_server_is_unreachable_even_with_its_key(
    scripted_server: ScriptedServer,
) -> None:
    """Calls straight to llama.cpp would bypass max_tokens and max_budget: none get through,
    even when the attacker somehow knows the server's address and bearer key."""
    pytest.importorskip("xllamacpp")
    from lmrepl.local.server import get_server, shutdown_servers

    server = get_server(n_parallel=1, n_ctx=2048)
    try:
        code = _attack(
            """
            import json, urllib.request
            request = urllib.request.Request(URL + '/models',
                                             headers={'Authorization': 'Bearer ' + KEY})
            try:
                urllib.request.urlopen(request, timeout=5).read()
                print('REPORT', json.dumps({'server': 'reached'}))
            except Exception as exc:
                print('REPORT', json.dumps({'server': type(exc).__name__}))
            """,
            URL=server.base_url,
            KEY=server.api_key,
        )
        result, report, _ = run_attack(scripted_server, code)
        assert report["server"] != "reached"
        assert result.response == SURVIVED
    finally:
        shutdown_servers()

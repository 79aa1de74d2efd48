"""The magics' user-facing contract: messages, contradictions, failures, terminal output,
help and where each default comes from (issue 14).

Each test drives the magics the way a user does: a real ``InteractiveShell`` running
cells, or a real terminal IPython process talking to the loopback scripted server.
"""

from __future__ import annotations

import inspect
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output
from magic_helpers import magics, shell_on

from lmrepl.rlm import RLM
from lmrepl.srlm import SRLM
from lmrepl.testing import ScriptedRequest, ScriptedServer
from lmrepl_jupyter import SRLMMagics, SRLMResult

ROOT = Path(__file__).resolve().parent.parent

#: An exception class name in a message ("ValueError:", "ConfigurationError").
CLASS_NAME = re.compile(r"\b[A-Z][A-Za-z]*(Error|Exception)\b")

STEP = 'Let me look.\n```repl\nprint(len(context))\n```\n{"confidence": 90}'
FINAL = '```repl\nFINAL("42")\n```\n{"confidence": 90}'


def answer_42(req: ScriptedRequest) -> str:
    """First turn inspects the context, the second answers 42."""
    return STEP if len(req.messages) <= 2 else FINAL


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with ScriptedServer(responder=answer_42) as srv:
        yield srv


@pytest.fixture
def ip(server: ScriptedServer) -> Iterator[InteractiveShell]:
    """The extension loaded, the openai backend on the scripted server, the local REPL."""
    yield from shell_on(server)


def usage_error(call: Callable[[], Any]) -> str:
    with pytest.raises(UsageError) as info:
        call()
    return str(info.value)


def cell(shell: InteractiveShell, name: str, line: str, body: str = "q") -> Callable[[], Any]:
    return lambda: shell.run_cell_magic(name, line, body)  # type: ignore[no-untyped-call]


def test_every_usage_message_starts_with_the_magic_and_names_no_class(
    ip: InteractiveShell,
) -> None:
    cases: list[tuple[Callable[[], Any], str, list[str]]] = [
        (cell(ip, "srlm", "-k abc doc"), "%%srlm: ", ["-k/--candidates", "integer >= 1", "abc"]),
        (cell(ip, "srlm", "-b nonsense doc"), "%%srlm: ", ["'openai'", "'local'", "nonsense"]),
        (cell(ip, "rlm", "-k 2 doc"), "%%rlm: ", ["%%srlm option", "one trajectory", "accepts"]),
        (cell(ip, "rlm", "--no-confidence doc"), "%%rlm: ", ["--no-confidence", "%%srlm"]),
        (cell(ip, "srlm", "--bogus doc"), "%%srlm: ", ["--bogus", "accepted:", "-k/--candidates"]),
        (cell(ip, "srlm", "doc extra"), "%%srlm: ", ["'extra'", "one VAR"]),
        (cell(ip, "srlm", "-k"), "%%srlm: ", ["-k/--candidates needs a value"]),
        (cell(ip, "srlm", "docs"), "%%srlm: ", ["'docs'", "did you mean 'doc'"]),
        (lambda: ip.run_line_magic("lmrepl", "bogus"), "%lmrepl: ", ["kernels shutdown"]),
    ]
    for call, prefix, needles in cases:
        msg = usage_error(call)
        assert msg.startswith(prefix), msg
        assert not CLASS_NAME.search(msg), msg
        assert "\n" not in msg.strip(), msg
        for needle in needles:
            assert needle in msg, (needle, msg)

    # Any ValueError/TypeError of the engine's constructor: its text, the prefix, no class.
    def refuse(kind: str, kwargs: dict[str, Any]) -> Any:
        raise ValueError("unknown backend 'nonsense'\n  (more detail)")

    magics(ip).engine_factory = refuse
    assert usage_error(cell(ip, "srlm", "doc")) == "%%srlm: unknown backend 'nonsense'"


@pytest.mark.parametrize(
    ("line", "names"),
    [
        ("-p 5 -k 2 doc", ["-p/--parallel 5", "-k/--candidates"]),
        ("-p 4 doc", ["-p/--parallel 4", "SRLMMagics.n_candidates"]),  # K from %config
        ("--confidence --no-confidence doc", ["--confidence", "--no-confidence"]),
        ("--no-early-stop --early-stop doc", ["--no-early-stop", "--early-stop"]),
        ("-k 1 --early-stop doc", ["--early-stop", "-k/--candidates"]),
        ("-o doc doc", ["-o doc", "VAR doc"]),
        ("-b local --base-url http://127.0.0.1:9/v1 doc", ["--base-url", "-b/--backend"]),
        ("-k 0 doc", ["-k/--candidates", ">= 1", "got 0"]),
        ("--max-iterations -1 doc", ["--max-iterations", "got -1"]),
        ("--cell-timeout 0 doc", ["--cell-timeout", "positive"]),
    ],
)
def test_contradictory_or_impossible_options_are_refused(
    ip: InteractiveShell, server: ScriptedServer, line: str, names: list[str]
) -> None:
    msg = usage_error(cell(ip, "srlm", line))
    assert msg.startswith("%%srlm: ")
    for name in names:
        assert name in msg, (name, msg)
    assert server.model_requests() == []  # refused before any run


def test_contradictory_config_is_refused_and_kept_out(ip: InteractiveShell) -> None:
    m = magics(ip)
    for line in (
        "SRLMMagics.panel_output_lines = 0",
        "SRLMMagics.refresh_interval = -1",
        "SRLMMagics.max_output_chars = 0",
    ):
        ip.run_line_magic("config", line)
    assert (m.panel_output_lines, m.refresh_interval, m.max_output_chars) == (12, 0.08, None)


def test_a_failed_run_is_reported_once(ip: InteractiveShell) -> None:
    # No kernel here: the text view, as in terminal IPython.
    for line, kept in [("-o r", "the result is in r"), ("", "-o NAME keeps the result")]:
        src = f"%%srlm -k 2 --base-url http://127.0.0.1:9/v1 {line} doc\nq"
        with capture_output() as cap:
            outcome = ip.run_cell(src, store_history=False)  # type: ignore[no-untyped-call]
        assert outcome.result is None  # no Out[] value
        assert cap.stdout == ""  # no text view, no Out[] prompt
        lines = cap.stderr.splitlines()
        assert len(lines) == 1, cap.stderr
        assert lines[0].startswith("%%srlm: the run failed: model server at")
        assert lines[0].endswith(f"({kept})") and not CLASS_NAME.search(lines[0])
    res = ip.user_ns["r"]
    assert isinstance(res, SRLMResult) and res.status == "failed" and res.answer is None
    assert "unreachable" in (res.error or "")


def _screen(raw: str) -> list[str]:
    """The lines a terminal shows after ``raw``: CR, LF, cursor up and erase line applied
    (what rich's live display uses), other escape sequences dropped."""
    lines, row, col = [""], 0, 0
    for tok in re.findall(r"\x1b\][^\x07]*\x07|\x1b\[[0-9;?]*[A-Za-z]|\r|\n|[^\x1b\r\n]", raw):
        if tok == "\r":
            col = 0
        elif tok == "\n":
            row, col = row + 1, 0
            if row == len(lines):
                lines.append("")
        elif tok.startswith("\x1b[") and tok.endswith("A"):
            row = max(0, row - int(tok[2:-1] or 1))
        elif tok == "\x1b[2K":
            lines[row] = ""
        elif not tok.startswith("\x1b"):
            text = lines[row].ljust(col)
            lines[row] = text[:col] + tok + text[col + 1 :]
            col += 1
    return lines


def _setup_lines(server: ScriptedServer) -> list[str]:
    kw = {"model_name": "m", "base_url": server.base_url, "api_key": "x"}
    return [
        "%load_ext lmrepl_jupyter",
        '%config SRLMMagics.backend = "openai"',
        f"%config SRLMMagics.backend_kwargs = {kw!r}",
        '%config SRLMMagics.environment = "local"',
        'doc = "hello world"',
    ]


def _ipython(tmp_path: Path) -> tuple[list[str], dict[str, str]]:
    env = {**os.environ, "IPYTHONDIR": str(tmp_path / "ipython"), "TERM": "xterm"}
    env.pop("OPENAI_API_KEY", None)
    argv = [sys.executable, "-m", "IPython", "--simple-prompt", "--no-banner", "--colors=NoColor"]
    return argv, env


@pytest.mark.parametrize("stdin", ["pty", "pipe"])
def test_terminal_ipython_shows_the_result_once(
    server: ScriptedServer, tmp_path: Path, stdin: str
) -> None:
    argv, env = _ipython(tmp_path)
    setup = _setup_lines(server)
    magic = ["%%srlm -k 2 -o res doc", "How long is the text?", "", ""]  # "" "" ends a cell
    if stdin == "pty":
        pexpect = pytest.importorskip("pexpect")
        child = pexpect.spawn(
            argv[0], argv[1:], cwd=str(ROOT), env=env, encoding="utf-8", timeout=90
        )
        seen: list[str] = []
        for text in [*setup, "\r".join(magic), "1+1"]:
            child.expect(r"In \[\d+\]: ")
            seen.append(child.before + child.after)
            child.send(text + "\r")
        child.expect(r"In \[8\]: ")
        seen.append(child.before + child.after)
        child.send("exit\r")
        child.expect(pexpect.EOF)
        shown = _screen("".join(seen))
    else:
        script = "\n".join([*setup, *magic, "1+1", ""])
        proc = subprocess.run(
            argv, input=script, capture_output=True, text=True, cwd=ROOT, env=env, timeout=90
        )
        assert proc.returncode == 0, proc.stderr
        shown = proc.stdout.split("\n")
    summaries = [i for i, s in enumerate(shown) if "[lmrepl] srlm done" in s]
    assert len(summaries) == 1, "\n".join(shown)
    at = summaries[0]
    assert shown[at].startswith("[lmrepl] srlm done · K=2") and "In [" not in shown[at]
    assert sum("Out[6]: 42" in s for s in shown) == 1, "\n".join(shown)
    # The live view is gone: its header and winner line are not left above the result.
    assert not any("%%srlm done" in s or "winner: candidate" in s for s in shown)
    # The next prompt starts its own line.
    following = [s for s in shown[at + 1 :] if s.strip()]
    assert following and following[0].startswith("In [7]: "), "\n".join(shown)


def test_help_usage_lines_name_the_magic_as_typed(ip: InteractiveShell) -> None:
    for name, usage in [("%%srlm", "%%srlm [-k K]"), ("%%rlm", "%%rlm [-b NAME]")]:
        with capture_output() as cap:
            ip.run_cell(f"{name}?")  # type: ignore[no-untyped-call]
        text = cap.stdout
        assert usage in text, text
        assert not re.search(rf"^\s*{name[1:]} ", text, re.M), text  # never one "%"
    with capture_output() as cap:
        ip.run_cell("%lmrepl?")  # type: ignore[no-untyped-call]
    assert "%lmrepl [kernels [shutdown]]" in cap.stdout
    assert "magic default" in cap.stdout and "API default" in cap.stdout


def test_lmrepl_shows_every_setting_its_value_and_source(ip: InteractiveShell) -> None:
    ip.run_line_magic("config", "SRLMMagics.n_candidates = 5")
    ip.run_line_magic("config", "SRLMMagics.engine_kwargs = {'max_timeout': 60}")
    with capture_output() as cap:
        ip.run_line_magic("lmrepl", "")
    rows = {
        m.group(1): (m.group(2), m.group(3))
        for m in re.finditer(r"^\s+(?:SRLMMagics\.)?(\w+) = (.*?)\s+# (.*)$", cap.stdout, re.M)
    }
    traits = SRLMMagics.class_trait_names(config=True)
    api = {
        n: p.default
        for cls in (RLM, SRLM)
        for n, p in inspect.signature(cls.__init__).parameters.items()
        if p.default is not inspect.Parameter.empty and n != "depth"
    }
    assert set(traits) | set(api) <= set(rows), set(traits) | set(api) - set(rows)
    assert rows["n_candidates"] == ("5", "%%srlm only; set by %config")
    assert rows["max_iterations"] == ("8", "magic default (API default: 30)")
    assert rows["candidate_parallel"] == ("3", "%%srlm only; magic default (API default: 1)")
    assert rows["environment"] == ("'local'", "set by %config")
    assert rows["direct_threshold"] == ("0", "%%srlm only; API default")
    assert rows["max_depth"] == ("1", "API default")
    assert rows["max_timeout"] == ("60", "set by %config (engine_kwargs)")
    assert rows["backend"][1] == "set by %config"
    assert all(src.split("; ")[-1].split(" (")[0] in SOURCES for _, src in rows.values())
    # The traits' own help says the magic's default is not the API's, and why.
    help_of = SRLMMagics.class_traits()
    for name, api_value in [("n_candidates", "1"), ("max_iterations", "30")]:
        text = help_of[name].help
        assert f"API default {api_value}" in text and ":" in text.split("API default")[1]
    with capture_output() as cap:
        ip.run_line_magic("config", "SRLMMagics")
    assert "Magic default 3, API default 1" in " ".join(cap.stdout.split())


SOURCES = {"magic default", "set by %config", "API default"}

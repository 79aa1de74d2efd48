"""Choosing a kernel sandbox, and what the bwrap command line grants (no kernel runs)."""

from __future__ import annotations

import os
import sys
import warnings

import pytest

from lmrepl import RLM
from lmrepl.errors import ConfigurationError
from lmrepl.repl import sandbox
from lmrepl.repl.kernel_command import kernel_argv
from lmrepl.repl.sandbox import Sandbox

REPLAY = {"backend": "replay", "backend_kwargs": {"replies": ["FINAL(1)"]}}


@pytest.fixture
def no_bwrap(monkeypatch: pytest.MonkeyPatch) -> None:
    """A machine without bubblewrap: the probe finds no ``bwrap`` on PATH."""
    monkeypatch.setattr(sandbox, "bwrap_path", lambda: None)
    monkeypatch.setattr(sandbox, "_warned", type(sandbox._warned)())
    sandbox._probe.cache_clear()
    yield
    sandbox._probe.cache_clear()


@pytest.mark.usefixtures("no_bwrap")
def test_bwrap_required_but_missing_is_a_clear_error() -> None:
    with pytest.raises(ConfigurationError, match="bubblewrap") as err:
        sandbox.choose("bwrap")
    assert "apt-get install bubblewrap" in str(err.value)
    # At construction, before any run or kernel.
    with pytest.raises(ConfigurationError, match="sandbox='bwrap': bwrap is not installed"):
        RLM(**REPLAY, environment_kwargs={"sandbox": "bwrap"})


@pytest.mark.usefixtures("no_bwrap")
def test_auto_without_bwrap_warns_once_and_runs_plain_kernels() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = sandbox.choose("auto")
        second = sandbox.choose("auto")
    assert first == second == Sandbox("none")
    assert len(caught) == 1
    assert "WITHOUT a sandbox" in str(caught[0].message)
    assert "sandbox': 'none'" in str(caught[0].message)  # how to silence it


def test_none_never_probes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox, "_probe", lambda network: pytest.fail("probed"))
    assert sandbox.choose("none", network=True).label == "none"


def test_bad_sandbox_settings_are_refused() -> None:
    with pytest.raises(
        ConfigurationError,
        match=r"\['sandbox'\] must be one of 'auto', 'bwrap', 'none', got 'docker'",
    ):
        RLM(**REPLAY, environment_kwargs={"sandbox": "docker"})
    with pytest.raises(ConfigurationError, match=r"\['network'\] must be True or False"):
        RLM(**REPLAY, environment_kwargs={"network": "yes"})
    with pytest.raises(
        ConfigurationError, match=r"\['read_only_paths'\] must be a list of absolute paths"
    ):
        RLM(**REPLAY, environment_kwargs={"read_only_paths": ["data"]})


def test_bwrap_command_line_grants_only_what_the_interpreter_needs(tmp_path: object) -> None:
    kernel_dir, home = f"{tmp_path}/k", f"{tmp_path}/h"
    argv = kernel_argv(Sandbox("bwrap"), kernel_dir, home)
    for flag in ("--unshare-all", "--unshare-user", "--die-with-parent", "--new-session"):
        assert flag in argv
    assert "--share-net" not in argv
    binds = {argv[i + 2]: argv[i] for i, a in enumerate(argv) if a in ("--bind", "--ro-bind")}
    writable = sorted(dest for dest, how in binds.items() if how == "--bind")
    assert writable == sorted([kernel_dir, sandbox.SANDBOX_HOME])
    home_dir = os.path.expanduser("~")
    # Nothing of the user's home or the project folder, except the interpreter itself.
    for dest in binds:
        if dest.startswith(home_dir) or dest.startswith(os.getcwd()):
            assert any(dest.startswith(p) or p.startswith(dest) for p in sandbox.python_paths())
    assert os.getcwd() not in binds and home_dir not in binds
    assert sys.executable in argv  # the same interpreter, its venv bound read-only
    network = kernel_argv(Sandbox("bwrap", network=True), kernel_dir, home)
    assert "--share-net" in network


def test_plain_kernels_are_not_wrapped(tmp_path: object) -> None:
    argv = kernel_argv(Sandbox("none"), f"{tmp_path}/k", None)
    assert argv[0] == sys.executable and "bwrap" not in " ".join(argv[:1])

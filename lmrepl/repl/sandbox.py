"""Kernel sandboxes: what a kernel process may see and do (SPEC §8.1).

A sandboxed kernel runs under bubblewrap (``bwrap``) in new user, PID, IPC, UTS, cgroup
and network namespaces, with a fresh ``/proc`` (the host and other kernels are not
there), a minimal ``/dev``, a private ``/tmp``, a private writable home that is also
its working directory, and read-only views of only what the interpreter needs: ``/usr``,
a short list of ``/etc`` files and the Python installation. The kernel's runtime folder
(its connection file, ipc sockets and context FIFOs) is bound at the same path, so the
host and the kernel name the same files. With no network namespace shared, model code
reaches nothing over TCP, not even the host's loopback (the embedded model server).

When the sandbox's first process (bwrap's reaper, PID 1 inside) exits, Linux kills every
process left in the namespace, so the kernel's whole tree, ``setsid`` children included,
ends with it; ``--die-with-parent`` makes that happen when the host dies too.

``sandbox="auto"`` (the default) uses bubblewrap when it works on this machine and
otherwise warns once and starts unsandboxed kernels; ``"bwrap"`` refuses to start
without it; ``"none"`` starts plain kernels (no boundary, like ``environment="local"``
in all but the process).
"""

from __future__ import annotations

import functools
import os
import shutil
import site
import subprocess
import sys
import sysconfig
import threading
import warnings
from dataclasses import dataclass
from typing import Literal

from lmrepl.errors import ConfigurationError

#: The values ``environment_kwargs["sandbox"]`` accepts.
SANDBOX_MODES = ("auto", "bwrap", "none")
#: The Debian/Ubuntu/Fedora package that provides ``bwrap``.
BWRAP_PACKAGE = "bubblewrap"
#: Where the kernel's private writable home (and working directory) appears inside.
SANDBOX_HOME = "/home/lmrepl"

# Files and folders of /etc the interpreter and common libraries read (dynamic linker,
# time zone, certificates, name service, MIME types); nothing else of /etc is visible.
_ETC = (
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "localtime",
    "timezone",
    "ssl",
    "ca-certificates",
    "ca-certificates.conf",
    "pki",
    "alternatives",
    "nsswitch.conf",
    "hosts",
    "host.conf",
    "resolv.conf",
    "gai.conf",
    "passwd",
    "group",
    "mime.types",
    "os-release",
    "fonts",
    "matplotlibrc",
)
# Top-level names that are symlinks into /usr on merged-/usr systems.
_USR_LINKS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")


@dataclass(frozen=True)
class Sandbox:
    """How kernels are launched: ``kind`` "bwrap" or "none", and whether they have network.

    Kernels of different sandboxes never share a warm pool. ``kind="gateway"`` stands for
    kernels a Jupyter gateway runs (``GATEWAY``): isolation is the gateway's, and no
    local process, pool or sandbox is involved.
    """

    kind: Literal["bwrap", "none", "gateway"] = "none"
    network: bool = False
    read_only_paths: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        """What records and panels show: "bwrap", "bwrap+network", "none" or "gateway"."""
        if self.kind in ("none", "gateway"):
            return self.kind
        return "bwrap+network" if self.network else "bwrap"


@dataclass(frozen=True)
class ResourceLimits:
    """Hard limits (soft = hard) a sandboxed kernel sets on itself before IPython starts.

    A process can lower its hard limits but never raise them again without
    ``CAP_SYS_RESOURCE``, which no process in the sandbox has. ``RLIMIT_NPROC`` counts
    threads too, and inside a new user namespace only that namespace's tasks.
    """

    open_files: int = 1024
    processes: int = 512
    file_size_mb: int = 1024
    tmp_size_mb: int = 512

    def as_rlimits(self) -> dict[str, int]:
        """``resource`` constant name -> limit, for the kernel's launch code."""
        return {
            "RLIMIT_NOFILE": self.open_files,
            "RLIMIT_NPROC": self.processes,
            "RLIMIT_FSIZE": self.file_size_mb * 2**20,
            "RLIMIT_CORE": 0,
        }


LIMITS = ResourceLimits()

#: Where kernels run with ``environment_kwargs["gateway_url"]``: on the gateway.
GATEWAY = Sandbox("gateway")


def bwrap_path() -> str | None:
    """The ``bwrap`` executable on PATH, or None."""
    return shutil.which("bwrap")


def _covered(path: str, by: list[str]) -> bool:
    return any(path == p or path.startswith(p.rstrip("/") + "/") for p in by)


def python_paths() -> list[str]:
    """The interpreter's folders: prefixes, the stdlib and every site-packages folder."""
    found: list[str] = []
    candidates = [
        sys.prefix,
        sys.base_prefix,
        sys.exec_prefix,
        sys.base_exec_prefix,
        os.path.dirname(os.path.realpath(sys.executable)),
        *sysconfig.get_paths().values(),
        *site.getsitepackages(),
    ]
    if site.ENABLE_USER_SITE and site.USER_SITE:
        candidates.append(site.USER_SITE)
    candidates += [p for p in os.environ.get("LD_LIBRARY_PATH", "").split(":") if p]
    for path in candidates:
        real = os.path.realpath(path)
        for p in {path, real}:
            if os.path.isdir(p) and not _covered(p, found):
                found = [f for f in found if not _covered(f, [p])] + [p]
    return sorted(found)


def bwrap_argv(
    sandbox: Sandbox, *, kernel_dir: str, home_dir: str, limits: ResourceLimits = LIMITS
) -> list[str]:
    """The ``bwrap ...`` prefix that runs a command inside ``sandbox``.

    ``kernel_dir`` (connection file, ipc sockets, context FIFOs) is bound read-write at
    the same path; ``home_dir`` becomes the writable home and working directory.
    """
    exe = bwrap_path() or "bwrap"
    argv = [exe, "--unshare-all", "--unshare-user", "--disable-userns"]
    argv += ["--die-with-parent", "--new-session"]
    if sandbox.network:
        argv.append("--share-net")
    argv += ["--ro-bind", "/usr", "/usr"]
    for name in _USR_LINKS:
        top = "/" + name
        if os.path.islink(top):
            argv += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            argv += ["--ro-bind", top, top]
    for name in _ETC:
        path = "/etc/" + name
        if os.path.exists(path):
            argv += ["--ro-bind", path, path]
    argv += ["--proc", "/proc", "--dev", "/dev"]
    argv += ["--size", str(limits.tmp_size_mb * 2**20), "--tmpfs", "/tmp"]
    # After the private /tmp: an interpreter or venv that lives under /tmp stays visible.
    bound = ["/usr"]
    for path in [*python_paths(), *sandbox.read_only_paths]:
        if not _covered(path, bound) and os.path.exists(path):
            argv += ["--ro-bind", path, path]
            bound.append(path)
    argv += ["--bind", kernel_dir, kernel_dir]
    argv += ["--bind", home_dir, SANDBOX_HOME, "--chdir", SANDBOX_HOME]
    # The sandbox's own root (a tmpfs holding the mount points) is read-only too.
    argv += ["--remount-ro", "/"]
    argv += ["--setenv", "HOME", SANDBOX_HOME, "--setenv", "TMPDIR", "/tmp"]
    # Inside, the kernel's parent is bwrap's reaper, PID 1: telling ipykernel so turns
    # off its parent poller (which would see "parent is init" and quit). Death with the
    # host is bwrap's job (--die-with-parent).
    argv += ["--setenv", "JPY_PARENT_PID", "1"]
    argv.append("--")
    return argv


@functools.lru_cache(maxsize=4)
def _probe(network: bool) -> str | None:
    """None when a bwrap sandbox starts here, else why not (run once per process)."""
    exe = bwrap_path()
    if exe is None:
        return f"bwrap is not installed (package {BWRAP_PACKAGE!r})"
    import tempfile

    with tempfile.TemporaryDirectory(prefix="lmrepl-probe-") as tmp:
        kernel_dir = os.path.join(tmp, "k")
        home = os.path.join(tmp, "h")
        os.mkdir(kernel_dir, 0o700)
        os.mkdir(home, 0o700)
        argv = bwrap_argv(Sandbox("bwrap", network), kernel_dir=kernel_dir, home_dir=home)
        try:
            done = subprocess.run(
                [*argv, os.path.realpath(sys.executable), "-c", "pass"],
                capture_output=True,
                timeout=30,
                env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"bwrap could not run: {exc}"
    if done.returncode != 0:
        why = done.stderr.decode("utf-8", "replace").strip() or f"exit {done.returncode}"
        return f"bwrap failed on this machine: {why}"
    return None


def unavailable_reason(network: bool = False) -> str | None:
    """None when bubblewrap sandboxes work on this machine, else the reason."""
    return _probe(network)


_warned = threading.Event()


def choose(mode: str, network: bool = False, read_only_paths: tuple[str, ...] = ()) -> Sandbox:
    """The sandbox a kernel REPL with these settings runs in.

    ``"bwrap"`` raises ``ConfigurationError`` when bubblewrap does not work here;
    ``"auto"`` then warns once per process and falls back to no sandbox.
    """
    if mode == "none":
        return Sandbox("none", network, read_only_paths)
    why = unavailable_reason(network)
    if why is None:
        return Sandbox("bwrap", network, read_only_paths)
    hint = (
        f"install the {BWRAP_PACKAGE!r} package (apt-get install {BWRAP_PACKAGE}, "
        f"dnf install {BWRAP_PACKAGE}) and allow unprivileged user namespaces"
    )
    if mode == "bwrap":
        raise ConfigurationError(f"environment_kwargs sandbox='bwrap': {why}; {hint}")
    if not _warned.is_set():
        _warned.set()
        warnings.warn(
            f"lmrepl: kernels run WITHOUT a sandbox ({why}). Model code can then read "
            f"this process's secrets and files. To sandbox them, {hint}; to silence this, "
            "pass environment_kwargs={'sandbox': 'none'}.",
            RuntimeWarning,
            stacklevel=3,
        )
    return Sandbox("none", network, read_only_paths)

"""Waiting for a freshly started kernel to answer, without idle waits.

jupyter_client's ``wait_for_ready`` ends by draining IOPub until 0.2 s pass with no
message: every kernel start paid that 0.2 s (about 40 % of a cold start, measured by
``benchmarks/kernel.py``'s breakdown). The driver never needs that drain: it matches each
message to its request by ``msg_id``, so a late status message of the handshake is
ignored there. What the handshake must establish is only that the shell reply came back
and that IOPub delivers (a SUB socket may miss messages until its subscription reached
the kernel), and ``await_kernel_info`` checks exactly those two.
"""

from __future__ import annotations

import time
from collections.abc import Container
from typing import Any

import zmq

from lmrepl.repl.kernel_channels import Kernel, Link
from lmrepl.repl.kernel_messages import KernelGone
from lmrepl.repl.kernel_validate import BadMessage, recv

#: How often to look at the process while waiting, in milliseconds.
_TICK_MS = 50
#: Resend ``kernel_info_request`` when no reply came for this long (as jupyter_client).
_RESEND_S = 1.0
#: How long IOPub may stay silent after the reply before the handshake is redone.
_IOPUB_S = 0.2


def await_kernel_info(handle: Any, timeout: float) -> None:
    """Return once ``handle``'s kernel answered ``kernel_info`` on shell and IOPub.

    Raises ``TimeoutError`` after ``timeout`` seconds and ``RuntimeError`` when the
    kernel process ends first.
    """
    kc = handle.kc
    deadline = time.monotonic() + timeout
    while True:
        msg_id = kc.kernel_info()
        if _shell_reply(handle, msg_id, min(deadline, time.monotonic() + _RESEND_S)) and (
            kc.iopub_channel.socket.poll(int(_IOPUB_S * 1000))
        ):
            return
        if time.monotonic() >= deadline:
            raise TimeoutError(f"the kernel did not answer within {timeout:.1f} s")


def _shell_reply(handle: Any, msg_id: str, until: float) -> bool:
    """True once the reply to ``msg_id`` arrived; False at ``until``."""
    shell = handle.kc.shell_channel
    while True:
        if not handle.alive():
            raise RuntimeError("the kernel process ended before it answered kernel_info")
        left_ms = int((until - time.monotonic()) * 1000)
        if left_ms <= 0:
            return False
        if not shell.socket.poll(min(_TICK_MS, left_ms)):
            continue
        try:
            msg = recv(shell)
        except BadMessage:
            continue  # nothing but the kernel's own code runs yet; not our reply
        if msg is not None and msg.get("parent_header", {}).get("msg_id") == msg_id:
            return True


_PROBE = {
    "code": "input()",
    "silent": True,
    "store_history": False,
    "user_expressions": {},
    "allow_stdin": True,
    "stop_on_error": False,
}


def await_stdin(kernel: Kernel, link: Link, timeout: float) -> None:
    """Return once an ``input_request`` of the kernel reached the host.

    The probe runs ``input()``. Its request may be lost; the host's reply never is (a
    DEALER queues it until connected), so the host replies either way, exactly once per
    probe, and probes again until one request arrives.
    """
    deadline = time.monotonic() + timeout
    while True:
        msg_id = link.execute(dict(_PROBE), {}, None)
        asked = _awaits(kernel, link, {msg_id}, "input_request", time.monotonic() + _RESEND_S)
        link.input("")
        if not _awaits(kernel, link, {msg_id}, "execute_reply", deadline):
            raise TimeoutError(f"the kernel's stdin channel did not answer within {timeout:.1f} s")
        if asked:
            return


_NOOP = {**_PROBE, "code": "", "allow_stdin": False}


def await_iopub(kernel: Kernel, link: Link, timeout: float) -> None:
    """Return once IOPub delivers: a ``status`` of one of the host's requests arrived.

    Each try is an empty silent request (the kernel still publishes its busy and idle
    status); one is sent every ``_RESEND_S`` until a status of any of them comes, so
    IOPub is noticed within a tick of starting to deliver. Raises ``TimeoutError``.
    """
    deadline = time.monotonic() + timeout
    sent: set[str] = set()
    while True:
        sent.add(link.execute(dict(_NOOP), {}, None))
        if _awaits(kernel, link, sent, "status", min(deadline, time.monotonic() + _RESEND_S)):
            return
        if time.monotonic() >= deadline:
            raise TimeoutError(f"the kernel's IOPub channel did not deliver within {timeout:.1f} s")


def _awaits(kernel: Kernel, link: Link, msg_ids: Container[str], kind: str, until: float) -> bool:
    """Read ``link`` until a ``kind`` message of a request in ``msg_ids`` came (True) or
    ``until`` passed (False); other messages are dropped."""
    sources = {s.pollable: s for s in link.sources()}
    while True:
        if not kernel.alive():
            raise KernelGone("died")
        left = until - time.monotonic()
        if left <= 0:
            return False
        readable, _, _ = zmq.select(list(sources), [], [], min(left, _TICK_MS / 1000))
        for pollable in readable:
            if _drain_for(sources[pollable], msg_ids, kind):
                return True


def _drain_for(source: Any, msg_ids: Container[str], kind: str) -> bool:
    """Read what ``source`` holds; True if a ``kind`` message of ``msg_ids`` was among it."""
    found = False
    while True:
        try:
            msg = source.recv()
        except BadMessage:
            continue
        if msg is None:
            return found
        header, parent = msg.get("header"), msg.get("parent_header")
        parent_id = parent.get("msg_id") if isinstance(parent, dict) else None
        found = found or (
            isinstance(header, dict)
            and header.get("msg_type") == kind
            and isinstance(parent_id, str)  # kernel data: may be unhashable
            and parent_id in msg_ids
        )

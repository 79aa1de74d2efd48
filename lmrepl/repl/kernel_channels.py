"""How the host reaches one kernel: the ``Kernel`` and ``Link`` interfaces, and zmq's link.

The driver (``kernel_session``), a request's state (``kernel_run``) and ``run_silent``
never touch sockets: they use a ``Kernel`` (interrupt it, is it alive, kill it) and its
``Link`` (send an execute request, answer a stdin request, read checked messages, learn
that the connection is gone). Two implementations:

* a local kernel (``kernel_launch.KernelHandle``) is reached through jupyter_client's
  blocking client: ``ZmqLink`` polls its shell, IOPub and stdin sockets, reads them
  bounded (``kernel_validate.recv``) and watches them with socket monitors, since libzmq
  drops a connection for good when a frame is over ``MAX_MESSAGE_BYTES``;
* a kernel behind a Jupyter gateway (``gateway.GatewayKernel``) is reached through one
  websocket: ``gateway_channels.GatewayLink``.

Every ``Source`` has a ``pollable`` (a zmq socket or a file descriptor) that the driver
registers with ``zmq.Poller``, and a non-blocking ``recv`` returning the next message
(or None), raising ``BadMessage`` for one it refused.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Protocol

import zmq
from zmq.utils.monitor import recv_monitor_message

from lmrepl.repl.kernel_validate import MAX_MESSAGE_BYTES, recv

__all__ = ["Kernel", "Link", "Lost", "Source", "ZmqLink", "disconnected", "link_of"]


class Kernel(Protocol):
    """A started kernel, local or remote, as the driver and the REPL use it."""

    @property
    def pid(self) -> int | None:
        """The kernel's process id on this machine (None for a remote kernel)."""

    @property
    def kernel_dir(self) -> str | None:
        """The kernel's private folder on this machine (None for a remote kernel)."""

    def alive(self) -> bool:
        """True while the kernel may still answer (cheap: the driver asks every tick)."""

    def interrupt(self) -> None:
        """Interrupt the running cell (KeyboardInterrupt in the kernel)."""

    def kill(self) -> None:
        """End the kernel for good (safe to call twice)."""


@dataclass(frozen=True)
class Lost:
    """A connection to a kernel that is gone for good.

    ``fault`` says why when the kernel caused it (a message over the size limit, a flood),
    told to the model as a fault of the cell; None when the kernel simply died.
    """

    fault: str | None = None


class Source(Protocol):
    """Where messages of a kernel arrive: one channel, or several multiplexed."""

    @property
    def pollable(self) -> Any:
        """A zmq socket or a file descriptor, readable while a message may be waiting."""

    def recv(self) -> dict[str, Any] | None:
        """The next message if one is waiting, else None; ``BadMessage`` for a refused one."""


class Link(Protocol):
    """The host's connection to one kernel."""

    def execute(
        self,
        content: dict[str, Any],
        metadata: dict[str, Any],
        buffers: list[bytes | memoryview] | None,
    ) -> str:
        """Send an ``execute_request`` on the shell channel; returns its ``msg_id``."""

    def input(self, text: str) -> None:
        """Answer the kernel's pending ``input_request`` with ``text``."""

    def sources(self) -> list[Source]:
        """Where messages arrive; replies to requests come in the first one."""

    def watchers(self) -> list[Any]:
        """More pollables the driver registers so that ``lost`` is noticed at once."""

    def lost(self, ready: Collection[Any] | None) -> Lost | None:
        """Whether the connection is gone (None: not lost).

        ``ready`` holds what the last poll found readable; None checks everything now,
        before a request is sent.
        """

    def close(self) -> None:
        """Release what the link holds (not the kernel itself)."""


def link_of(kernel: Kernel) -> Link:
    """The link to ``kernel``: a remote kernel's own, or a new one over zmq."""
    remote: Link | None = getattr(kernel, "link", None)
    return remote if remote is not None else ZmqLink(kernel)


def disconnected(monitor: Any) -> bool:
    """True when ``monitor`` reported a lost connection (its events are consumed)."""
    lost = False
    while True:
        try:
            event = recv_monitor_message(monitor, zmq.NOBLOCK)
        except zmq.Again:
            return lost
        lost = lost or event.get("event") == zmq.EVENT_DISCONNECTED


class _ZmqChannel:
    """One of jupyter_client's channels as a ``Source``."""

    def __init__(self, channel: Any) -> None:
        self.channel = channel
        self.pollable = channel.socket

    def recv(self) -> dict[str, Any] | None:
        """The channel's next message, read bounded (``kernel_validate.recv``)."""
        return recv(self.channel)


class ZmqLink:
    """A local kernel's link: jupyter_client's blocking client ``kernel.kc``."""

    _NAMES = ("shell", "iopub", "stdin")

    def __init__(self, kernel: Any) -> None:
        self.kernel = kernel
        self.kc = kernel.kc
        self._sources = [_ZmqChannel(getattr(self.kc, f"{n}_channel")) for n in self._NAMES]
        self._watch: dict[Any, str] | None = None

    def execute(
        self,
        content: dict[str, Any],
        metadata: dict[str, Any],
        buffers: list[bytes | memoryview] | None,
    ) -> str:
        """Sign and send the request with the client's session."""
        request = self.kc.session.msg("execute_request", content, metadata=metadata)
        if buffers:
            request["buffers"] = buffers
        self.kc.shell_channel.send(request)
        return str(request["header"]["msg_id"])

    def input(self, text: str) -> None:
        """Send an ``input_reply`` on the stdin channel."""
        self.kc.input(text)

    def sources(self) -> list[Source]:
        """Shell first (replies), then IOPub and stdin."""
        return list(self._sources)

    def watchers(self) -> list[Any]:
        """The channels' socket monitors (made on first use)."""
        return list(self._monitors())

    def lost(self, ready: Collection[Any] | None) -> Lost | None:
        """A monitor reported a dropped connection: an oversized frame, or a dead kernel."""
        names = [
            name
            for mon, name in self._monitors().items()
            if (ready is None or mon in ready) and disconnected(mon)
        ]
        if not names:
            return None
        if _exits(self.kernel):
            return Lost()
        # libzmq dropped a frame over MAXMSGSIZE and, treating it as a protocol error,
        # closed that connection for good: nothing more can be heard on that channel.
        return Lost(
            f"the kernel sent a message over the {MAX_MESSAGE_BYTES:,}-byte limit on its "
            f"{names[0]} channel; the host dropped it and lost the connection, so the "
            "kernel was stopped"
        )

    def close(self) -> None:
        """Close the monitors (the client's sockets are the kernel handle's).

        Each monitor is disabled first: an event libzmq sent to a closed monitor would
        block its IO thread for good (see ``KernelHandle.kill``).
        """
        if self._watch:
            for source in self._sources:
                with contextlib.suppress(Exception):
                    source.pollable.disable_monitor()
        for mon in self._watch or {}:
            with contextlib.suppress(Exception):
                mon.close(linger=0)
        self._watch = None

    def _monitors(self) -> dict[Any, str]:
        if self._watch is None:
            self._watch = {}
            for name, source in zip(self._NAMES, self._sources, strict=True):
                # Own inproc names: pyzmq's default reuses the socket's fd number, which a
                # new socket may get while the old monitor is still being torn down.
                addr = f"inproc://lmrepl-monitor-{uuid.uuid4().hex}"
                try:
                    mon = source.pollable.get_monitor_socket(zmq.EVENT_DISCONNECTED, addr)
                except zmq.ZMQError:
                    continue  # unwatched: a lost connection then ends at the deadline
                self._watch[mon] = name
        return self._watch


def _exits(kernel: Kernel, within: float = 0.5) -> bool:
    """True when the kernel process ends within ``within`` seconds (it is dying)."""
    end = time.monotonic() + within
    while kernel.alive():
        if time.monotonic() >= end:
            return False
        time.sleep(0.02)
    return True

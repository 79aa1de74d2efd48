"""A Kernel Gateway websocket whose IOPub starts late: loaded into the gateway process.

``GatewayServer(iopub_delay=S)`` runs the gateway with this connection class. Each new
websocket forwards nothing from IOPub during its first ``S`` seconds (what the kernel
publishes then is lost), while shell and stdin work at once: what Kernel Gateway 3 did,
now and then, on the websocket opened after a restart that killed a busy kernel (its
"nudge", which waits for IOPub, is skipped for a kernel it believes busy).
"""

from __future__ import annotations

import os
import time
from typing import Any

from jupyter_server.services.kernels.connection.channels import ZMQChannelsWebsocketConnection

#: The environment variable that carries the delay into the gateway process.
DELAY_ENV = "LMREPL_TEST_IOPUB_DELAY"


class LateIOPubConnection(ZMQChannelsWebsocketConnection):
    """Drops IOPub messages during a new websocket's first seconds."""

    _muted_until = 0.0

    def connect(self) -> Any:
        """Start the muted period, then connect as usual."""
        self._muted_until = time.monotonic() + float(os.environ.get(DELAY_ENV, "0"))
        return super().connect()

    def handle_outgoing_message(self, stream: Any, outgoing_msg: list[Any]) -> None:
        """Forward a kernel message, except IOPub while muted."""
        channel = stream if isinstance(stream, str) else getattr(stream, "channel", None)
        if channel == "iopub" and time.monotonic() < self._muted_until:
            return
        super().handle_outgoing_message(stream, outgoing_msg)

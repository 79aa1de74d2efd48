"""The embedded default model (SPEC §10): verified weights and a shared llama.cpp server.

Nothing here imports ``xllamacpp`` until a server starts, so importing is cheap.
"""

from __future__ import annotations

from lmrepl.local.server import LocalServer, get_server, shutdown_servers
from lmrepl.local.weights import (
    MODEL_FILENAME,
    MODEL_NAME,
    MODEL_SHA256,
    MODEL_SIZE,
    ModelFileError,
    ensure_model,
    model_path,
    verify_model,
)

__all__ = [
    "MODEL_FILENAME",
    "MODEL_NAME",
    "MODEL_SHA256",
    "MODEL_SIZE",
    "LocalServer",
    "ModelFileError",
    "ensure_model",
    "get_server",
    "model_path",
    "shutdown_servers",
    "verify_model",
]

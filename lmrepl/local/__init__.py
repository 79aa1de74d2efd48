"""The embedded default model (SPEC §10): verified weights and a shared llama.cpp server."""

from __future__ import annotations

from lmrepl.local.weights import (
    MODEL_FILENAME,
    MODEL_NAME,
    MODEL_SHA256,
    MODEL_SIZE,
    ModelFileError,
    ensure_model,
    model_path,
)

__all__ = [
    "MODEL_FILENAME",
    "MODEL_NAME",
    "MODEL_SHA256",
    "MODEL_SIZE",
    "ModelFileError",
    "ensure_model",
    "model_path",
]

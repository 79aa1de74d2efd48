"""Which setting and variable names hold credentials.

One rule, used where secrets must not travel: environment variables kept out of a
kernel, and configuration values masked in records and ``%lmrepl`` output.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["is_secret_name", "mask_secrets"]

# Words that mark a credential wherever they appear in a name (MAX_TOKENS is not one:
# "TOKENS" is a count).
_SECRET_WORDS = frozenset(
    {
        "TOKEN",
        "SECRET",
        "SECRETS",
        "PASSWORD",
        "PASSWD",
        "CREDENTIAL",
        "CREDENTIALS",
        "AUTHORIZATION",
        "BEARER",
        "APIKEY",
        "COOKIE",
    }
)
# Names of these services' variables are kept out of kernels whole (OPENAI_BASE_URL too).
_VENDORS = frozenset(
    {"AWS", "GOOGLE", "GCLOUD", "AZURE", "OPENAI", "ANTHROPIC", "HF", "HUGGINGFACE"}
)
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def is_secret_name(name: str) -> bool:
    """True for names that may hold a credential: ``OPENAI_API_KEY``, ``api_key``,
    ``x-api-key``, ``HF_TOKEN``, ``password`` — not ``max_tokens`` or ``base_url``."""
    words = [w for w in re.split(r"[^A-Z0-9]+", _CAMEL.sub("_", name).upper()) if w]
    if not words:
        return False
    if _SECRET_WORDS.intersection(words) or words[-1] == "KEY":
        return True
    return len(words) > 1 and (words[0] in _VENDORS or "".join(words[:2]) == "HUGGINGFACE")


def mask_secrets(value: Any) -> Any:
    """A copy of ``value`` with every credential-named entry replaced by ``'***'``."""
    if isinstance(value, dict):
        return {
            k: ("***" if isinstance(k, str) and is_secret_name(k) and v else mask_secrets(v))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [mask_secrets(v) for v in value]
    return value

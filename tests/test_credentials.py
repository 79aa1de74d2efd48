"""One rule for credential names: kept out of kernels, masked in records and %lmrepl."""

from __future__ import annotations

import pytest

from lmrepl.credentials import is_secret_name, mask_secrets


@pytest.mark.parametrize(
    "name",
    [
        "OPENAI_API_KEY",
        "ANTHROPIC_API_KEY",
        "api_key",
        "apiKey",
        "x-api-key",
        "key",
        "HF_TOKEN",
        "HUGGING_FACE_HUB_TOKEN",
        "JUPYTER_TOKEN",
        "access_token",
        "password",
        "DB_PASSWD",
        "authorization",
        "AWS_REGION",  # a vendor's variables stay out of kernels whole
        "OPENAI_BASE_URL",
        "GITHUB_SECRET",
    ],
)
def test_credential_names(name: str) -> None:
    assert is_secret_name(name)


@pytest.mark.parametrize(
    "name",
    ["max_tokens", "max_tokens_default", "base_url", "model_name", "PATH", "HOME", "LC_ALL", ""],
)
def test_ordinary_names(name: str) -> None:
    assert not is_secret_name(name)


def test_masking_walks_nested_config() -> None:
    config = {
        "backend_kwargs": {"model_name": "m", "api_key": "sk-1", "max_tokens": 5},
        "other_backend_kwargs": [{"api_key": "sk-2"}, {"token": ""}],
    }
    assert mask_secrets(config) == {
        "backend_kwargs": {"model_name": "m", "api_key": "***", "max_tokens": 5},
        "other_backend_kwargs": [{"api_key": "***"}, {"token": ""}],  # nothing to hide
    }

"""Shared fixtures. Stage-specific session fixtures (the one engine, the one Ray
cluster) live in tests/fixtures/ and are registered below."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import pytest

# Ray reads its auth mode once per process, when it is first imported. Several test
# modules import ray (building Serve apps) before the session's cluster starts, so
# decide it here, before any of them: token auth, one random token for the session
# (subprocesses such as `codetailor serve --attach` inherit it).
os.environ.setdefault("RAY_AUTH_MODE", "token")
# Likewise the node address: `start_stack` pins Ray to loopback with this variable, which Ray
# also reads at import (the product sets it before importing ray; tests import ray earlier).
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
if os.environ["RAY_AUTH_MODE"] == "token":
    os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(32))

pytest_plugins: list[str] = [
    "tests.fixtures.engine",
    "tests.fixtures.serving",
]

# The test command fetches the base model here once (scripts/test.sh).
TEST_HOME = Path(os.environ.get("CODETAILOR_TEST_HOME", Path(__file__).resolve().parents[1] / ".home" / "test"))


@pytest.fixture
def tmp_home(tmp_path, monkeypatch) -> Path:
    """An empty artifact home for one test; settings read it from the environment."""
    from codetailor.config import get_settings

    home = tmp_path / "home"
    monkeypatch.setenv("CODETAILOR_HOME", str(home))
    monkeypatch.delenv("CODETAILOR_CONFIG", raising=False)
    get_settings.cache_clear()
    yield home
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def base_model_path() -> Path:
    """The fetched SmolLM2 checkpoint; tests using it are marked `model`."""
    path = TEST_HOME / "models" / "smollm2-135m-instruct"
    if not (path / "codetailor-model.json").is_file():
        pytest.skip("base model not fetched: run `make test` (it fetches it) or `codetailor model fetch`")
    return path


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory) -> Path:
    """A tiny random Llama checkpoint with SmolLM2's tokenizer when available (seconds to load)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    out = tmp_path_factory.mktemp("tiny-llama")
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=49152, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                      tie_word_embeddings=True)
    LlamaForCausalLM(cfg).save_pretrained(out)
    tok_src = TEST_HOME / "models" / "smollm2-135m-instruct"
    if (tok_src / "tokenizer.json").is_file():
        from transformers import AutoTokenizer

        AutoTokenizer.from_pretrained(tok_src).save_pretrained(out)
    return out

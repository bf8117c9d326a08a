from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.engine.lora_helpers import adapters_with_references, load_base

MAX_TOKENS = 16
ADAPTER_TENANTS = ("engine-ta", "engine-tb")  # max_loras=2: these two fill every slot


@dataclass
class LoraSet:
    home: Path
    reference: dict[str, list[str]]  # "base" or tenant -> HF(+PEFT) greedy completions of PROMPTS


@pytest.fixture(scope="session")
def lora_set(base_model_path, engine_home) -> LoraSet:
    """Two tenants with an active random adapter each, and HF+PEFT reference outputs."""
    from transformers import AutoTokenizer

    from codetailor.home import Home

    tok = AutoTokenizer.from_pretrained(base_model_path)
    reference = adapters_with_references(load_base(base_model_path), tok, Home(engine_home), ADAPTER_TENANTS,
                                         MAX_TOKENS, b_std=0.05)
    return LoraSet(engine_home, reference)

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.engine.lora_helpers import PROMPTS, hf_greedy, load_base, write_adapter

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

    from codetailor.adapters import AdapterStore
    from codetailor.home import Home

    home = Home(engine_home)
    tok = AutoTokenizer.from_pretrained(base_model_path)
    base = load_base(base_model_path)
    reference = {"base": hf_greedy(base, tok, PROMPTS, MAX_TOKENS)}
    for seed, tenant in enumerate(ADAPTER_TENANTS, start=1):
        store = AdapterStore(home.tenant(tenant))
        version = write_adapter(base, store, seed=seed, b_std=0.05)
        store.set_active(version)
        reference[tenant] = hf_greedy(base, tok, PROMPTS, MAX_TOKENS, store.path(version))
    return LoraSet(engine_home, reference)

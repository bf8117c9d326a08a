"""The mixed-batch LoRA regression for the Qwen2 family: a tiny random Qwen2 (q/k/v with bias,
separate output head, GQA) served by its own vLLM engine in float32, two adapters filling every
max_loras slot next to base rows, token for token against HF + PEFT."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from engine.protocol import GenerationRequest
from tests.engine.lora_helpers import PROMPTS, adapters_with_references, load_base
from tests.fixtures.engine import ENGINE_TEST_CONFIG

pytestmark = [pytest.mark.engine, pytest.mark.model]
MAX_TOKENS = 12
TENANTS = ("qwen-ta", "qwen-tb")


def tiny_qwen2(out: Path, tokenizer_src: Path) -> Path:
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    tok = AutoTokenizer.from_pretrained(tokenizer_src)
    cfg = Qwen2Config(vocab_size=len(tok), hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=4096,
                      tie_word_embeddings=False, initializer_range=0.2,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(cfg)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("q_proj.bias", "k_proj.bias", "v_proj.bias")):
                p.normal_(0.0, 0.5)  # HF initialises biases to zero: make them count
    assert model.lm_head.weight.data_ptr() != model.model.embed_tokens.weight.data_ptr()
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def qwen_world(base_model_path, tmp_path_factory):
    from transformers import AutoTokenizer

    from codetailor.config import EngineConfig
    from codetailor.home import Home
    from engine.vllm_engine import VllmEngine

    ckpt = tiny_qwen2(tmp_path_factory.mktemp("tiny-qwen2"), base_model_path)
    home = Home(tmp_path_factory.mktemp("qwen-home"))
    reference = adapters_with_references(load_base(ckpt), AutoTokenizer.from_pretrained(ckpt), home, TENANTS,
                                         MAX_TOKENS, b_std=0.2)
    engine = VllmEngine.start(EngineConfig(**ENGINE_TEST_CONFIG), ckpt, home=home.root)
    yield engine, reference
    engine.close()


def test_qwen2_mixed_batch_matches_hf_peft_token_for_token(qwen_world):
    engine, reference = qwen_world
    for tenant in TENANTS:  # the adapters change the output, or a leak could not be seen
        assert sum(a != b for a, b in zip(reference[tenant], reference["base"])) >= len(PROMPTS) // 2
    refs = {t: engine.resolver.ref_for(t) for t in TENANTS}
    assert len(refs) == engine.config.max_loras
    jobs, expected = [], []
    for i, prompt in enumerate(PROMPTS):
        for who in ("base", *TENANTS):
            jobs.append(GenerationRequest(prompt, MAX_TOKENS, adapter=refs.get(who)))
            expected.append((who, reference[who][i]))

    async def run():
        return await asyncio.gather(*(engine.generate(j) for j in jobs))

    results = asyncio.run(run())
    mismatches = [(who, r.text, want) for (who, want), r in zip(expected, results) if r.text != want]
    assert not mismatches, mismatches

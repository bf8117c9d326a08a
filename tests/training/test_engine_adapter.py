"""A trained adapter, served by the real vLLM engine, generates what HF+PEFT generates."""

from __future__ import annotations

import asyncio

import pytest
import torch

from codetailor.adapters import AdapterStore
from codetailor.home import Home
from codetailor.prompt_format import PromptParts, build, cursor_parts

from tests.training.conftest import _MODULE, tiny_settings, write_repo

pytestmark = [pytest.mark.engine, pytest.mark.model]
TENANT = "training-engine"


@torch.no_grad()
def _hf_greedy(base_path, adapter_dir, prompt: str, max_tokens: int) -> str:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(base_path)
    model = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32)
    model = PeftModel.from_pretrained(model, str(adapter_dir)).eval()
    ids = tok(prompt, return_tensors="pt", add_special_tokens=False).input_ids
    out = model.generate(ids, max_new_tokens=max_tokens, do_sample=False, num_beams=1,
                         pad_token_id=tok.eos_token_id)
    return tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True)


def test_trained_adapter_through_the_engine_equals_hf_peft(engine, engine_home, base_model_path, tmp_path):
    from codetailor.tenants import Registry
    from engine.protocol import GenerationRequest
    from training import TrainOptions, train_tenant
    from transformers import AutoTokenizer

    torch.set_num_threads(1)
    repo = write_repo(tmp_path / "repo", n=3)
    reg = Registry(Home(engine_home), pepper="t")
    paths, _ = reg.create_tenant(TENANT)
    reg.add_source(paths.tenant, "main", str(repo))
    # A short, hot run: enough steps to move greedy outputs, few enough for a test.
    settings = tiny_settings(engine_home, base_model_path, threads=1, lr=2e-3, seq_len=96, target_tokens=32,
                             grad_accum=2, eval_examples=2)
    summary = train_tenant(settings, paths, TrainOptions(rank=8, alpha=16, epochs=1.0, replay_ratio=0.0,
                                                         progress=False))
    version = summary["adapter_version"]
    ref = engine.resolver.ref_for(paths.tenant, version)

    tok = AutoTokenizer.from_pretrained(base_model_path)
    text = _MODULE.format(i=7)
    prefix, suffix = cursor_parts(text, 14)
    prompt = build(PromptParts("pkg/mod7.py", prefix, suffix), lambda s: len(tok(s, add_special_tokens=False).input_ids),
                   1024).text
    got = asyncio.run(engine.generate(GenerationRequest(prompt=prompt, max_tokens=12, adapter=ref))).text
    want = _hf_greedy(base_model_path, AdapterStore(paths).path(version), prompt, 12)
    assert got == want

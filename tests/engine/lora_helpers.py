"""Build real PEFT adapters on the base model and compute HF+PEFT reference outputs.

Adapters get random LoRA B weights (PEFT initialises B to zero, which would make
every adapter a no-op) large enough that each one changes greedy outputs; the
tests assert that it does.
"""

from __future__ import annotations

from pathlib import Path

import torch

from codetailor.adapters import AdapterStore

PROMPTS = (
    "def fibonacci(n):\n    ",
    "import os\n\ndef list_files(path):\n",
    "class Stack:\n    def __init__(self):\n        self.items = []\n\n    def push(self, item):\n",
    "# Compute the mean of a list\ndef mean(xs):\n",
    "for i in range(10):\n    print(",
    "def add(a, b):\n    return",
)


def load_base(base_path: Path):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32)
    model.eval()
    return model


def write_adapter(base_model, store: AdapterStore, seed: int, rank: int = 8, b_std: float = 0.02) -> str:
    """Publish a random all-linear LoRA as the store's next version; returns the version.
    `base_model` is left unchanged (the LoRA layers are unloaded again)."""
    from peft import LoraConfig, get_peft_model

    cfg = LoraConfig(r=rank, lora_alpha=2 * rank, target_modules="all-linear", lora_dropout=0.0,
                     task_type="CAUSAL_LM")
    torch.manual_seed(seed)
    peft_model = get_peft_model(base_model, cfg)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, b_std)
    with store.new_version() as staged:
        peft_model.save_pretrained(staged.dir)
        # PEFT saves under the adapter name's folder only for non-default names.
    version = staged.version
    peft_model.unload()
    return version


def adapters_with_references(base_model, tokenizer, home, tenants, max_tokens: int,
                             b_std: float) -> dict[str, list[str]]:
    """Publish and activate one random adapter per tenant under `home`; returns HF(+PEFT) greedy
    completions of PROMPTS for "base" and each tenant."""
    reference = {"base": hf_greedy(base_model, tokenizer, PROMPTS, max_tokens)}
    for seed, tenant in enumerate(tenants, start=1):
        store = AdapterStore(home.tenant(tenant))
        version = write_adapter(base_model, store, seed=seed, b_std=b_std)
        store.set_active(version)
        reference[tenant] = hf_greedy(base_model, tokenizer, PROMPTS, max_tokens, store.path(version))
    return reference


@torch.no_grad()
def hf_greedy(base_model, tokenizer, prompts, max_tokens: int, adapter_dir: Path | None = None) -> list[str]:
    """Greedy completions with HF (+ PEFT adapter when given), one prompt at a time."""
    from peft import PeftModel

    model = PeftModel.from_pretrained(base_model, str(adapter_dir)) if adapter_dir else base_model
    outs = []
    try:
        for p in prompts:
            ids = tokenizer(p, return_tensors="pt", add_special_tokens=False).input_ids
            gen = model.generate(ids, max_new_tokens=max_tokens, do_sample=False, num_beams=1,
                                 pad_token_id=tokenizer.eos_token_id)
            outs.append(tokenizer.decode(gen[0, ids.shape[1]:], skip_special_tokens=True))
    finally:
        if adapter_dir:
            model.unload()
    return outs

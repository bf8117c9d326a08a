"""The base model with LoRA on every linear layer of its Llama blocks, and the adapter files.

Frozen base weights are kept in the dtype codetailor/hardware.py chose for this CPU
(the autocast dtype where that is native, so autocast does not re-cast 135M
parameters on every forward); the LoRA matrices stay float32 for the optimizer. The
adapter is saved in the PEFT layout vLLM loads, in hardware.ADAPTER_STORAGE.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from codetailor.hardware import ADAPTER_STORAGE, FP32, torch_dtype
from training.corpus import TrainingError

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
_WHERE = {"q_proj": "self_attn", "k_proj": "self_attn", "v_proj": "self_attn", "o_proj": "self_attn",
          "gate_proj": "mlp", "up_proj": "mlp", "down_proj": "mlp"}


class BaseModelError(TrainingError):
    pass


def check_layers(model) -> int:
    """Raise BaseModelError unless every decoder block has Llama's seven linear projections."""
    layers = getattr(getattr(model, "model", None), "layers", None)
    if not layers:
        raise BaseModelError(f"base model {type(model).__name__} has no Llama-style decoder layers (model.layers)")
    for i, layer in enumerate(layers):
        for name, parent in _WHERE.items():
            mod = getattr(getattr(layer, parent, None), name, None)
            if not isinstance(mod, torch.nn.Linear):
                raise BaseModelError(f"base model layer {i} has no linear {parent}.{name}: LoRA needs Llama-style "
                                     f"q/k/v/o and gate/up/down projections")
    return len(layers)


def load_base(path: Path, weights: str = FP32):
    """(model, tokenizer) from a local checkpoint directory, checked for the expected layers;
    `weights` names the frozen weights' dtype (a resolved choice, never "auto")."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    try:
        config = AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as e:
        raise BaseModelError(f"cannot read the base model config at {path}: {e}") from None
    if not hasattr(config, "num_hidden_layers"):
        raise BaseModelError(f"base model at {path} ({config.model_type}) is not a decoder-only transformer")
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype(weights))
    check_layers(model)
    tokenizer = AutoTokenizer.from_pretrained(path)
    return model, tokenizer


def attach_lora(model, rank: int, alpha: int, seed: int):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)  # LoRA's A matrices are random: same seed, same start
    cfg = LoraConfig(r=rank, lora_alpha=alpha, target_modules=list(LORA_TARGETS), lora_dropout=0.0,
                     bias="none", task_type="CAUSAL_LM")
    pm = get_peft_model(model, cfg)
    for p in pm.parameters():
        if p.requires_grad:
            p.data = p.data.float()
    return pm


def trainable(pm) -> list[torch.nn.Parameter]:
    return [p for p in pm.parameters() if p.requires_grad]


def lora_state(pm) -> dict[str, torch.Tensor]:
    from peft import get_peft_model_state_dict

    return {k: v.detach().clone() for k, v in get_peft_model_state_dict(pm).items()}


def load_lora_state(pm, state: dict[str, torch.Tensor]) -> None:
    from peft import set_peft_model_state_dict

    result = set_peft_model_state_dict(pm, state)
    unexpected = getattr(result, "unexpected_keys", [])
    if unexpected:
        raise TrainingError(f"checkpoint does not match the model: unexpected keys {unexpected[:3]}")


def save_adapter(pm, out: Path, base_path: Path) -> int:
    """Write adapter_config.json + adapter_model.safetensors (ADAPTER_STORAGE) into `out`; returns the bytes
    written."""
    from safetensors.torch import load_file, save_file

    pm.save_pretrained(out, safe_serialization=True)
    weights = out / "adapter_model.safetensors"
    storage = torch_dtype(ADAPTER_STORAGE)
    tensors = {k: v.to(storage).contiguous() for k, v in load_file(weights).items()}
    save_file(tensors, weights, metadata={"format": "pt"})
    cfg_path = out / "adapter_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["base_model_name_or_path"] = str(base_path)
    cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True))
    readme = out / "README.md"   # peft's model card template: not part of the contract
    if readme.exists():
        readme.unlink()
    return sum(p.stat().st_size for p in out.iterdir() if p.is_file())

"""The architecture of each catalog model, for building it with random weights.

A GPU bench needs the models' shapes, not their weights (nothing large travels to
the GPU machine, and it has no configuration stack to read the catalog with).
tests/training/test_gpu_bench.py checks that each shape has its catalog entry's
parameter count.
"""

from __future__ import annotations

SHAPES: dict[str, dict] = {
    "smollm2-135m-instruct": dict(
        model_type="llama", vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
        num_attention_heads=9, num_key_value_heads=3, head_dim=64, max_position_embeddings=8192,
        rms_norm_eps=1e-5, tie_word_embeddings=True),
    "qwen2.5-coder-0.5b": dict(
        model_type="qwen2", vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
        num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=32768, rms_norm_eps=1e-6,
        tie_word_embeddings=False),   # the converted GGUF keeps its output head apart
    "qwen2.5-coder-1.5b": dict(
        model_type="qwen2", vocab_size=151936, hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
        num_attention_heads=12, num_key_value_heads=2, max_position_embeddings=32768, rms_norm_eps=1e-6,
        tie_word_embeddings=True),
}

# HF + PEFT alone (LoRA r16 on all linear layers, bf16, 8 x 1,024 packed tokens, random weights) on one
# H200: the product's loop must reach at least half of these there.
H200_ANCHOR_TOKENS_PER_S = {"smollm2-135m-instruct": 53_516, "qwen2.5-coder-0.5b": 50_301,
                            "qwen2.5-coder-1.5b": 25_586}


def build_config(name: str):
    from transformers import AutoConfig

    shape = dict(SHAPES[name])
    return AutoConfig.for_model(shape.pop("model_type"), **shape)

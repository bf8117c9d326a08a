"""The CPU LoRA op alone (engine/cpu_lora_plugin.py): stock vLLM torch ops vs the plugin's
grouped matmuls, one decode step of SmolLM2's 30 layers, in the engine's dtype.

    CODETAILOR_CPU_LORA=off .venv/bin/python bench/engine_bench.py --ops-only [--dtype auto]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from codetailor.hardware import choose_dtypes, detect, torch_dtype  # noqa: E402
from engine import cpu_lora_grouped as grouped  # noqa: E402
from engine import cpu_lora_plugin as plugin  # noqa: E402


def op_microbench(tokens: int = 16, slots: int = 8, adapters: int = 8, rank: int = 16,
                  repeats: int = 20, dtype: str = "auto") -> dict:
    """The LoRA op alone, one decode step of SmolLM2's 30 layers (qkv, o, gate_up, down), with
    `tokens` spread over `adapters` of the `slots`: stock vLLM torch ops (gather a weight
    matrix per token) vs the plugin's grouped matmuls. In-process and short, so far less sensitive to machine load than the engine.
    Each of the 30 layers has its own weights, as in the model: with many adapters a decode step
    is bound by reading them from memory (reusing one layer's weights 30 times hid that)."""
    import time

    import torch
    from vllm.lora.punica_wrapper.punica_cpu import PunicaWrapperCPU

    dt = torch_dtype(choose_dtypes(detect(), engine=dtype).engine.value)   # the engine's dtype on this machine

    shapes = [(576, (576, 192, 192)), (576, (576,)), (576, (1536, 1536)), (1536, (576,))]
    torch.manual_seed(0)
    layers = []
    for _ in range(30):
        for d_in, outs in shapes:
            a = tuple(torch.randn(slots, 1, rank, d_in, dtype=dt) for _ in outs)
            b = tuple(torch.randn(slots, 1, o, rank, dtype=dt) for o in outs)
            layers.append((torch.randn(tokens, d_in, dtype=dt), a, b, outs))
    idx = torch.arange(tokens) % adapters  # every token on an adapter

    def wrapper():
        w = PunicaWrapperCPU(256, 64, "cpu")
        w._token_lora_indices[:tokens] = idx
        w.indices_len = [tokens] * 4
        w.is_prefill = False
        w._ct_groups = grouped.groups(w.token_lora_indices)
        return w

    def step(fn, w):
        for x, a, b, outs in layers:
            y = torch.zeros(tokens, sum(outs), dtype=dt)
            fn(w, y, x, a, b, 1.0, outs)

    stock = PunicaWrapperCPU.add_lora_linear
    plugin._install_masked_ops()
    plugin._install_segment_wrapper()
    segment = PunicaWrapperCPU.add_lora_linear
    if stock is segment:
        raise RuntimeError("op_microbench needs the stock op: set CODETAILOR_CPU_LORA=off before importing vllm")
    w = wrapper()
    out = {"tokens": tokens, "slots": slots, "adapters": adapters, "rank": rank, "dtype": str(dt).removeprefix("torch.")}
    for name, fn in (("stock_ms_per_step", stock), ("segment_ms_per_step", segment)):
        step(fn, w)
        t = time.perf_counter()
        for _ in range(repeats):
            step(fn, w)
        out[name] = round((time.perf_counter() - t) / repeats * 1000, 2)
    out["speedup"] = round(out["stock_ms_per_step"] / out["segment_ms_per_step"], 1)
    # Bytes of the float32 fused weights the grouped op reads per step (the tokens' slots only).
    used = sorted(set(idx.tolist()))
    fused = [grouped.fused(a, b, outs) for _, a, b, outs in layers]
    out["fused_weights_mb_read_per_step"] = round(sum(f.a[used].nbytes + f.b[used].nbytes for f in fused) / 1e6, 1)
    return out

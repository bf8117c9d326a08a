"""KV cache sizing: from the dtype, the model's bytes per token, the prompt budget and free memory."""

from engine.kv_budget import GIB, bytes_per_token, plan_kv_cache

SMOLLM2 = {"num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3, "hidden_size": 576}
QWEN25_05B = {"num_hidden_layers": 24, "num_attention_heads": 14, "num_key_value_heads": 2, "hidden_size": 896}


def test_bytes_per_token():
    assert bytes_per_token(SMOLLM2, "bfloat16") == 30 * 3 * 64 * 2 * 2 == 23_040
    assert bytes_per_token(SMOLLM2, "float32") == 46_080
    assert bytes_per_token(QWEN25_05B, "bfloat16") == 24 * 2 * 64 * 2 * 2
    assert bytes_per_token({**SMOLLM2, "head_dim": 128}, "float32") == 30 * 3 * 128 * 2 * 4
    assert 2 * GIB // bytes_per_token(SMOLLM2, "bfloat16") == 93_206   # "a 2 GiB cache holds ~93k tokens"


def test_auto_size_holds_every_sequence_when_memory_allows():
    bpt = bytes_per_token(SMOLLM2, "float32")
    plan = plan_kv_cache(bytes_per_token=bpt, seq_tokens=2304, max_model_len=4096, max_num_seqs=64,
                         available_bytes=20 * GIB)
    assert plan.seq_tokens == 2304   # 18 blocks of 128
    assert plan.gib == 7             # 64 x 2304 x 46080 B = 6.3 GiB, rounded up
    assert plan.max_num_seqs == 64
    bf16 = plan_kv_cache(bytes_per_token=bpt // 2, seq_tokens=2304, max_model_len=4096, max_num_seqs=64,
                         available_bytes=20 * GIB)
    assert bf16.gib == 4 and bf16.max_num_seqs == 64


def test_short_memory_caps_the_cache_and_the_running_sequences():
    bpt = bytes_per_token(SMOLLM2, "float32")
    plan = plan_kv_cache(bytes_per_token=bpt, seq_tokens=2304, max_model_len=4096, max_num_seqs=64,
                         available_bytes=5 * GIB)
    assert plan.gib == 2                                   # 40% of 5 GiB
    assert plan.max_num_seqs == 2 * GIB // (2304 * bpt) == 20
    assert plan.max_num_seqs * plan.seq_tokens * bpt <= plan.gib * GIB   # what runs fits: no preemption
    assert "queue" in plan.reason


def test_explicit_size_is_kept_and_bounds_the_sequences():
    bpt = bytes_per_token(SMOLLM2, "float32")
    plan = plan_kv_cache(bytes_per_token=bpt, seq_tokens=1024, max_model_len=1024, max_num_seqs=64,
                         available_bytes=100 * GIB, requested_gib=1)
    assert plan.gib == 1 and plan.max_num_seqs == GIB // (1024 * bpt) == 22
    small = plan_kv_cache(bytes_per_token=bpt, seq_tokens=1024, max_model_len=1024, max_num_seqs=8,
                          available_bytes=100 * GIB, requested_gib=1)
    assert small.max_num_seqs == 8


def test_cache_always_holds_one_full_length_sequence():
    bpt = bytes_per_token(SMOLLM2, "float32")
    plan = plan_kv_cache(bytes_per_token=bpt, seq_tokens=100, max_model_len=32768, max_num_seqs=1,
                         available_bytes=100 * GIB)
    assert plan.gib * GIB >= 32768 * bpt


def test_unknown_memory_still_gives_a_cache():
    plan = plan_kv_cache(bytes_per_token=23_040, seq_tokens=2048, max_model_len=2048, max_num_seqs=64,
                         available_bytes=0)
    assert plan.gib == 1 and plan.max_num_seqs >= 1


def test_engine_plan_resolves_auto_itself(tmp_path, monkeypatch):
    import json

    from codetailor.config import EngineConfig
    from codetailor.hardware import Capability
    from engine import vllm_engine

    (tmp_path / "config.json").write_text(json.dumps(SMOLLM2))
    monkeypatch.setattr(vllm_engine, "available_memory", lambda: 20 * GIB)
    monkeypatch.setattr(vllm_engine, "detect", lambda: Capability(flags=("avx2",)))
    plan = vllm_engine.plan_engine(EngineConfig(), tmp_path, seq_tokens=2304)
    assert plan.dtype.value == "float32" and plan.kv.gib == 7 and plan.kv.max_num_seqs == 64
    monkeypatch.setattr(vllm_engine, "detect", lambda: Capability(flags=("avx512_bf16", "avx512f")))
    plan = vllm_engine.plan_engine(EngineConfig(), tmp_path, seq_tokens=2304)
    assert plan.dtype.value == "bfloat16" and plan.kv.gib == 4
    plan = vllm_engine.plan_engine(EngineConfig(dtype="float32", kv_cache_gib=1), tmp_path, seq_tokens=2304)
    assert plan.dtype.value == "float32" and plan.kv.gib == 1 and plan.kv.max_num_seqs == 10


def test_engine_env_sets_the_openmp_wait_policy(monkeypatch, tmp_path):
    import json
    import os

    from codetailor.config import EngineConfig
    from engine import vllm_engine

    (tmp_path / "config.json").write_text(json.dumps(SMOLLM2))
    monkeypatch.setattr(os, "environ", {})   # the test's process keeps its own environment
    cfg = EngineConfig(kv_cache_gib=3)
    vllm_engine._engine_env(cfg, vllm_engine.plan_engine(cfg, tmp_path))
    assert os.environ["VLLM_CPU_KVCACHE_SPACE"] == "3"
    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE" and os.environ["KMP_BLOCKTIME"] == "0"
    os.environ["OMP_WAIT_POLICY"] = "ACTIVE"   # a user's own setting wins
    vllm_engine._engine_env(cfg, vllm_engine.plan_engine(cfg, tmp_path))
    assert os.environ["OMP_WAIT_POLICY"] == "ACTIVE"


def test_available_memory_respects_a_container_limit(tmp_path):
    from engine.kv_budget import available_memory

    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       24000000 kB\nMemAvailable:   20000000 kB\n")
    host = 20_000_000 * 1024
    assert available_memory(str(meminfo), str(tmp_path / "nocgroup")) == host
    cg = tmp_path / "cg"
    cg.mkdir()
    (cg / "memory.max").write_text("max\n")
    (cg / "memory.current").write_text("1000\n")
    assert available_memory(str(meminfo), str(cg)) == host                  # no limit
    (cg / "memory.max").write_text(f"{4 * GIB}\n")
    (cg / "memory.current").write_text(f"{1 * GIB}\n")
    assert available_memory(str(meminfo), str(cg)) == 3 * GIB              # the pod's limit binds
